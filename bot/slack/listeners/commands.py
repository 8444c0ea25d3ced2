"""``/tokens``: the table (optionally filtered by label), ``create``, ``help``."""

from __future__ import annotations

from typing import Any

from slack_bolt import BoltContext
from slack_sdk import WebClient

from bot.models import utcnow
from bot.slack.listeners.common import actor_from, deps, draw_table, show
from bot.slack.views.formatting import truncate
from bot.slack.views.messages import help_message
from bot.slack.views.modals import FormMode, token_form
from bot.slack.state import ModalMetadata, Origin, OriginKind, TableState

COMMAND = "/tokens"
LIST, CREATE, HELP = "list", "create", "help"
# Words that look like a subcommand but are not one: answered with help, not a search.
NOT_SUBCOMMANDS = frozenset(
    {
        "add", "new", "show", "get", "copy", "reveal", "edit", "update", "disable", "enable",
        "delete", "remove", "rm", "revoke", "rotate", "regenerate", "audit", "alerts",
        "?", "-h", "--help", "usage",
    }
)


def parse(text: str) -> tuple[str, str]:
    """``(subcommand, argument)``; plain text is a label filter (subcommand ``list``)."""
    text = " ".join(text.split())
    word, _, rest = text.partition(" ")
    lowered = word.lower()
    if not text or lowered == LIST:
        return LIST, rest
    if lowered in (CREATE, HELP) and not rest:
        return lowered, ""
    if lowered in NOT_SUBCOMMANDS:
        return HELP, text
    return LIST, text


def answer(command: dict[str, Any]) -> dict[str, Any] | None:
    """The acknowledgement's own content, which is the whole answer (help), or None when
    the command has work to do after a plain acknowledgement."""
    subcommand, argument = parse(command.get("text") or "")
    if subcommand == HELP:
        return help_message(unknown=truncate(argument, 60) if argument else None).payload()
    return None


def handle_tokens(command: dict[str, Any], body: dict[str, Any], context: BoltContext,
                  client: WebClient) -> None:
    """``/tokens``, ``/tokens <filter>``, ``/tokens create`` (``help`` is ``answer``'s)."""
    subcommand, argument = parse(command.get("text") or "")
    d = deps(context)
    actor = actor_from(command, d.settings)
    response_url = command.get("response_url")
    if subcommand == CREATE:
        # views.open as the first Web API call after ack(), while the trigger id is fresh.
        metadata = ModalMetadata(origin=Origin(kind=OriginKind.COMMAND, response_url=response_url))
        view = token_form(mode=FormMode.CREATE, scopes=d.settings.tokenbot_scopes,
                          metadata=metadata)
        client.views_open(trigger_id=command["trigger_id"], view=view)
        return
    origin = Origin(
        kind=OriginKind.COMMAND, state=TableState(query=argument), response_url=response_url
    )
    with d.sessions.begin() as session:
        drawing = draw_table(session, actor=actor, origin=origin, now=utcnow())
    if drawing.message is not None and drawing.total == 0 and argument and " " not in argument:
        # `/tokens frobnicate` matched no label: it may be a mistyped subcommand.
        drawing.message.blocks.extend(help_message().blocks)
    show(drawing, client)
