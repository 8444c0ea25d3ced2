"""Acknowledgements wait for no Web API call: whatever Slack does (slow, 429, 5xx), every
command, click, submission and event is acknowledged at once, and when the work after
the acknowledgement cannot be taken on, the user is told "busy" and nothing is done."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.config import Settings
from bot.db import Database
from bot.models import Token, TokenStatus
from bot.slack.app import WORK_THREADS, create_app
from bot.slack.background import Background
from bot.slack.ids import ActionId
from bot.slack.listeners.errors import BUSY_TEXT
from bot.slack.state import ModalMetadata, Origin, OriginKind, TableState
from bot.slack.views.modals import FormMode, token_form
from tests.slack.conftest import (
    HttpSlackBot,
    SlackBot,
    form_values,
    load,
    row_buttons,
    seed,
    texts,
)
from tests.support.slack_standin import Failure, SlackStandIn
from tests.support.policy import NO_POLICY

REFRESH = {"action_id": ActionId.REFRESH, "value": TableState().encode()}


def create_view(settings: Settings) -> dict[str, Any]:
    metadata = ModalMetadata(origin=Origin(kind=OriginKind.HOME))
    return token_form(mode=FormMode.CREATE, scopes=settings.tokenbot_scopes,
                      metadata=metadata, policy=NO_POLICY).to_dict()


def created(db: Database) -> int:
    with db.sessions.begin() as session:
        return session.scalar(select(func.count()).select_from(Token)) or 0


SLOW_SLACKS = {
    "slow": [],
    "rate-limited": [Failure(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "8"})],
    "failing": [Failure(503, {"ok": False, "error": "service_unavailable"})],
}


@pytest.mark.slow
@pytest.mark.parametrize("slack", SLOW_SLACKS)
def test_fifty_concurrent_requests_are_acknowledged_at_once_whatever_slack_does(
    served: HttpSlackBot, slack_settings: Settings, db: Database, standin: SlackStandIn,
    slack: str,
) -> None:
    """Every Web API call and response_url takes 6 s (and, but for "slow", first answers
    429 or 503): 50 concurrent commands, clicks, Home openings and submissions are all
    acknowledged within a second, the submissions' tokens are created, and the drawing
    after the acknowledgements goes on."""
    seed(db, label="already here")
    standin.slow_down(6.0)
    for method in ("views.open", "views.publish"):
        standin.fail_next(method, *SLOW_SLACKS[slack] * 20)
    view = create_view(slack_settings)
    requests = [
        lambda: served.command("", settle=False),
        lambda: served.command("create", settle=False),
        lambda: served.click(REFRESH, settle=False),
        lambda: served.home_opened(),
        lambda: served.submit(view, form_values(label=f"new {time.monotonic()}"), settle=False),
    ]
    with ThreadPoolExecutor(max_workers=50) as clients:
        answers = list(clients.map(lambda i: requests[i % len(requests)](), range(50)))

    assert [a.status for a in answers] == [200] * 50
    assert max(served.seconds) < 1.0, sorted(served.seconds)[-5:]
    assert created(db) == 1 + 10  # a submission's write is done before its ack
    assert all(BUSY_TEXT not in (a.body or "") for a in answers)
    # Meanwhile the work goes on, each of the pool's threads on its own call.
    deadline = time.monotonic() + 5
    while len(standin.calls) < WORK_THREADS and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(standin.calls) >= WORK_THREADS


@pytest.fixture
def tiny_pool() -> Iterator[Background]:
    # (Not a full pool's 8 threads and 64 waiting: the same rule, with less to fill.)
    pool = Background(workers=1, queue=1, name="test-work")
    yield pool
    pool.close(timeout=10)


@pytest.fixture
def busy_bot(slack_settings: Settings, db: Database, standin: SlackStandIn,
             tiny_pool: Background) -> SlackBot:
    return SlackBot(create_app(settings=slack_settings, database=db, work=tiny_pool),
                    standin, tiny_pool)


def busy_notices(standin: SlackStandIn, method: str, count: int) -> list[Any]:
    """The calls to ``method`` that tell the user Tokenbot is busy, once ``count`` came."""
    deadline = time.monotonic() + 10
    while True:
        told = [c for c in standin.calls_to(method)
                if BUSY_TEXT in texts((c.body.get("view") or c.body).get("blocks") or [])]
        if len(told) >= count or time.monotonic() > deadline:
            return told
        time.sleep(0.02)


def test_a_full_pool_tells_the_user_busy_where_they_look_and_does_nothing(
    busy_bot: SlackBot, slack_settings: Settings, db: Database, standin: SlackStandIn,
) -> None:
    """One thread, one waiting: two `/tokens create` whose modals Slack is slow to open
    fill it. Then every kind of request is answered "busy" where the user looks and
    changes nothing; once Slack answers, the same click works."""
    token = seed(db, label="keep me").token
    busy_bot.command("")
    disable = row_buttons(standin.calls_to("response_url")[-1].body["blocks"],
                          token.public_id)[ActionId.DISABLE]
    standin.clear()
    standin.hold("views.open")
    busy_bot.command("create", settle=False)  # runs, waiting on Slack
    busy_bot.command("create", settle=False)  # waits for the thread
    standin.wait_for("views.open")

    command = busy_bot.command("", settle=False)
    assert BUSY_TEXT in command.body  # the answer is the acknowledgement itself

    submission = busy_bot.submit(create_view(slack_settings), form_values(label="not now"),
                                 settle=False)
    assert BUSY_TEXT in submission.body
    assert '"response_action": "push"' in submission.body  # the form stays underneath

    assert busy_bot.click(disable, settle=False).status == 200
    (on_table,) = busy_notices(standin, "response_url", 1)  # the table, with the notice
    assert on_table.body["replace_original"] is True

    busy_bot.click(disable, home=True, settle=False)
    busy_notices(standin, "views.publish", 1)
    busy_bot.home_opened()
    busy_notices(standin, "views.publish", 2)

    assert load(db, token.public_id).status == TokenStatus.ACTIVE  # nothing was done
    assert created(db) == 1

    standin.release()
    busy_bot.settle()
    busy_bot.click(disable)  # room again: the same click now does its work
    assert load(db, token.public_id).status == TokenStatus.DISABLED
