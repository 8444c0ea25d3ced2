"""The weekly check of owners with ``users.info``: catches a deactivation whose
``user_change`` event was missed (``bot.services.departed`` decides; this asks Slack).
At most once per 7 days per team across processes, paced within ``users.info``'s rate
tier (Tier 4, about 100 a minute), with no transaction open while Slack is asked."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Final

from slack_sdk import WebClient

from bot.config import Settings
from bot.db import Database
from bot.services import departed, outbox

log = logging.getLogger("bot.alerts")

#: users.info is Tier 4 (100+ a minute): the first calls go at once, then one each 0.6 s.
USERS_INFO_INTERVAL: Final = 0.6
USERS_INFO_BURST: Final = 10


def is_deactivated(client: WebClient, user_id: str) -> bool:
    """Whether Slack says ``user_id`` is deactivated; anything else (an error, a user it
    cannot find) is not taken as a departure: next week asks again."""
    try:
        user = client.users_info(user=user_id).get("user")
    except Exception as error:  # noqa: BLE001 - one user unanswered does not stop the check
        log.warning("users.info failed for one owner (%s): not taken as deactivated",
                    type(error).__name__)
        return False
    return isinstance(user, dict) and user.get("deleted") is True


def check_departed_owners(*, settings: Settings, database: Database, client: WebClient,
                          now: dt.datetime, interval: float = USERS_INFO_INTERVAL,
                          sleep: Callable[[float], None] = time.sleep) -> int:
    """The weekly hygiene pass's owner check: each team whose check is due (claimed for
    7 days), each owner of active tokens not yet known to have left, asked with
    ``users.info``; a deactivated one is treated as a ``user_change`` event (recorded, their
    tokens posted once to the alert channel through the outbox, which the caller then
    delivers). Returns how many departed owners were found."""
    with database.sessions.begin() as session:
        teams = departed.teams(session)
    found = 0
    for team in teams:
        with database.sessions.begin() as session:
            if not departed.claim_check(session, team_id=team, now=now):
                continue
            owners = departed.owners_to_check(session, team_id=team, now=now)
        gone: set[str] = set()
        for number, user in enumerate(owners):
            if number >= USERS_INFO_BURST:
                sleep(interval)
            if is_deactivated(client, user):
                gone.add(user)
        if not gone:
            continue
        with database.sessions.begin() as session:
            found += len(departed.check_owners(session, team_id=team, lookup=gone.__contains__,
                                               now=now,
                                               channel=settings.tokenbot_alert_channel))
            outbox.take_queued(session)  # the pass delivers it, not the app's drain
    if found:
        log.info("owner check: %d deactivated owner(s) found", found)
    return found
