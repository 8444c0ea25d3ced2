"""Validation of every Block Kit payload the tests see.

Three checks, as the founders require: slack_sdk.models round-trip (which enforces most of
Slack's length limits), the JSON schemas in tests/schemas/ (generated from @slack/types;
unknown keys, wrong types and enums are rejected) and the per-surface block counts.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
MESSAGE_BLOCK_LIMIT = 50
VIEW_BLOCK_LIMIT = 100


@lru_cache(maxsize=None)
def _validator(name: str) -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(schema)


def _schema_errors(name: str, instance: Any) -> list[str]:
    errors = sorted(_validator(name).iter_errors(instance), key=lambda e: list(e.path))
    return [f"{list(e.path)}: {e.message[:300]}" for e in errors]


def _strip_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_none(v) for v in value]
    return value


def validate_message_blocks(blocks: list[dict[str, Any]]) -> None:
    """Blocks of chat.postMessage / postEphemeral / update / respond()."""
    assert isinstance(blocks, list), f"blocks must be a list, got {type(blocks)}"
    assert len(blocks) <= MESSAGE_BLOCK_LIMIT, f"{len(blocks)} blocks > {MESSAGE_BLOCK_LIMIT}"
    for block in blocks:
        parsed = Block.parse(block)
        assert parsed is not None, f"unknown block type: {block.get('type')}"
        assert _strip_none(parsed.to_dict()) == _strip_none(block), (
            f"block does not round-trip through slack_sdk.models:\n{block}\n{parsed.to_dict()}"
        )
    problems = _schema_errors("blocks", blocks)
    assert not problems, "blocks fail the Block Kit schema:\n" + "\n".join(problems[:10])


def validate_view(view: dict[str, Any]) -> None:
    """A modal or Home tab of views.open / update / push / publish."""
    blocks = view.get("blocks", [])
    assert len(blocks) <= VIEW_BLOCK_LIMIT, f"{len(blocks)} blocks > {VIEW_BLOCK_LIMIT}"
    # The stand-in adds "id"/"hash" to answers only; requests are validated as sent.
    parsed = View(**view)
    parsed.validate_json()
    assert _strip_none(parsed.to_dict()) == _strip_none(view), (
        f"view does not round-trip through slack_sdk.models:\n{view}\n{parsed.to_dict()}"
    )
    problems = _schema_errors("view", view)
    assert not problems, "view fails the Block Kit schema:\n" + "\n".join(problems[:10])


def validate_slack_call(method: str, body: dict[str, Any]) -> None:
    """Validate whatever Block Kit a recorded Web API / response_url call carries."""
    if method in ("views.open", "views.update", "views.push", "views.publish"):
        validate_view(body["view"])
    elif "blocks" in body and body["blocks"] is not None:
        validate_message_blocks(body["blocks"])
