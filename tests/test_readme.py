"""The README states the numbers the code uses; it and docs/OPERATIONS.md name every
setting and every metric, and their links lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

from bot import metrics
from bot.config import Settings
from bot.db import Database
from bot.http.metrics import DatabaseGauges
from bot.services.alerts import EXPIRED_NOTICE_WINDOW

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_the_expired_reminders_window_is_written_beside_the_thresholds() -> None:
    days = f"{EXPIRED_NOTICE_WINDOW.days} days"
    (row,) = [line for line in README.splitlines() if line.startswith("| `TOKENBOT_ALERT_DAYS`")]
    assert '"expired" reminder' in row and days in row
    reminders = README.split("### Expiry reminders\n", 1)[1].split("\n#", 1)[0]
    assert f"from the expiry date for {days}" in reminders


OPERATIONS = (Path(__file__).resolve().parent.parent / "docs" / "OPERATIONS.md").read_text(
    encoding="utf-8")


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors for the headings of ``markdown`` (a repeated one gets ``-1``…)."""
    seen: dict[str, int] = {}
    anchors = set()
    for line in markdown.splitlines():
        if not line.startswith("#") or line.startswith("#!"):
            continue
        text = line.lstrip("#").strip().lower()
        slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_the_readme_stays_short_and_its_links_to_operations_lead_somewhere() -> None:
    assert len(README.splitlines()) <= 450
    links = re.findall(r"\(docs/OPERATIONS\.md#([^)]+)\)", README)
    assert links and set(links) <= _anchors(OPERATIONS)
    inner = set(re.findall(r"\]\(#([^)]+)\)", OPERATIONS))
    assert inner <= _anchors(OPERATIONS)


def test_every_setting_is_in_the_configuration_table() -> None:
    rows = [line for line in README.split("## Configuration\n", 1)[1].split("\n## ", 1)[0]
            .splitlines() if line.startswith("| `")]
    named = {name for row in rows for name in re.findall(r"`([A-Z_]+)`", row.split(" | ")[0])}
    aliases = {field.alias for field in Settings.model_fields.values()}
    assert aliases <= named, aliases - named


def test_every_metric_is_described_in_operations(db: Database) -> None:
    families = {line.split()[2] for line in metrics.exposition()[0].decode().splitlines()
                if line.startswith("# TYPE tokenbot_")}
    families |= {family.name for family in DatabaseGauges(db).collect()}
    assert len(families) == 13
    table = OPERATIONS.split("## Metrics\n", 1)[1].split("\n## ", 1)[0]
    for name in families:  # (a counter's TYPE line names it with its _total)
        assert f"| `{name}` |" in table, name
