"""The README states the numbers the code uses."""

from __future__ import annotations

from pathlib import Path

from bot.services.alerts import EXPIRED_NOTICE_WINDOW

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_the_expired_reminders_window_is_written_beside_the_thresholds() -> None:
    days = f"{EXPIRED_NOTICE_WINDOW.days} days"
    (row,) = [line for line in README.splitlines() if line.startswith("| `TOKENBOT_ALERT_DAYS`")]
    assert '"expired" reminder' in row and days in row
    reminders = README.split("### Expiry reminders\n", 1)[1].split("\n#", 1)[0]
    assert f"from the expiry date for {days}" in reminders
