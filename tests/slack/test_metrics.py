"""``GET /metrics`` of the served app: a scripted session moves each counter by what it
did (Slack requests, introspection, an alert pass with a destination refusing its post);
the gauges come from the database; the endpoint can be restricted. The same session
against ``tokenbot serve`` processes (one and two workers): tests/test_operations.py."""

from __future__ import annotations

import datetime as dt
import http.client
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import update

from bot.alerts.scheduler import run_pass
from bot.config import Settings
from bot.db import Database
from bot.http.server import build_asgi_app
from bot.models import Audience, MessageKind, Token
from bot.services import outbox
from bot.services import tokens
from bot.slack.client import make_web_client
from tests.slack.conftest import INTROSPECTION_SECRET, OWNER, TEAM, HttpSlackBot, utcnow
from tests.support.scrape import get, moved, scrape, value
from tests.support.session import API_CALLS, EXPECTED, introspect_each_result, play_session
from tests.support.serving import serving
from tests.support.signing import signed_headers
from tests.support.slack_standin import Failure, SlackStandIn
from tests.support.policy import NO_POLICY

ALERTS = "CALERTS"


def owned(db: Database, label: str, **extra: Any) -> tokens.CreatedToken:
    """A token made by its owner (nobody else acted: no owner notice is queued)."""
    with db.sessions.begin() as session:
        return tokens.create_token(session,
                                   box=db.box, actor=tokens.Actor(team_id=TEAM, user_id=OWNER),
                                   label=label, scope="read", scopes=["read", "write", "admin"],
                                   now=utcnow(), **extra, policy=NO_POLICY)


def test_a_session_moves_each_counter_by_what_was_done(
    served: HttpSlackBot, standin: SlackStandIn, db: Database, slack_settings: Settings,
) -> None:
    mine = owned(db, "deploy")
    soon = owned(db, "expires in a week", expires_on=utcnow().date() + dt.timedelta(days=7),
                 alert_channel=ALERTS)
    before = scrape(served.address)

    play_session(served, standin, mine.token.public_id)
    introspect_each_result(served.address, mine.secret)
    standin.fail_next("chat.postMessage", Failure(200, {"ok": False, "error": "not_in_channel"}))
    report = run_pass(settings=slack_settings, database=db, now=utcnow(), post_interval=0,
                      client=make_web_client(slack_settings), owner_check=False)  # as served
    assert (report.sent, report.failed) == (1, 1), report.to_dict()

    status, headers, text = get(served.address)
    assert status == 200 and headers["content-type"].startswith("text/plain; version=")
    after = scrape(served.address)
    for name, expected in EXPECTED.items():
        assert moved(before, after, name) == expected, name
    assert moved(before, after, "tokenbot_slack_api_calls_total") == API_CALLS
    # Bounded labels: no secret, token id, user, team or label in any of it.
    for private in (mine.secret, soon.secret, mine.token.public_id, soon.token.public_id,
                    OWNER, TEAM, ALERTS, "deploy", "renamed", INTROSPECTION_SECRET):
        assert private not in text


def test_the_gauges_are_read_from_the_database_at_most_once_a_minute(
    served: HttpSlackBot, db: Database,
) -> None:
    now = utcnow()
    owned(db, "one")
    owned(db, "two")
    disabled = owned(db, "three")
    expired = owned(db, "four", expires_on=now.date() + dt.timedelta(days=3))
    with db.sessions.begin() as session:
        tokens.disable_token(session, actor=tokens.Actor(team_id=TEAM, user_id=OWNER),
                             public_id=disabled.token.public_id,
                             expected_version=disabled.token.version, now=now)
        session.execute(update(Token).where(Token.public_id == expired.token.public_id)
                        .values(expires_at=now - dt.timedelta(days=1)))
        for minutes in (120, 5):
            outbox.queue(session, kind=MessageKind.OWNER_NOTICE, team_id=TEAM,
                         audience=Audience.OWNER, destination=OWNER,
                         now=now - dt.timedelta(minutes=minutes), payload={})
        outbox.take_queued(session)  # left for the scheduled pass: no drain after the commit

    first = scrape(served.address)
    counts = {status: value(first, "tokenbot_tokens", status=status)
              for status in ("active", "disabled", "expired")}
    assert counts == {"active": 2, "disabled": 1, "expired": 1}
    pending = {kind.value: value(first, "tokenbot_outbox_pending", kind=kind.value)
               for kind in MessageKind}
    assert pending == {kind.value: 2 if kind == MessageKind.OWNER_NOTICE else 0
                       for kind in MessageKind}
    oldest = value(first, "tokenbot_outbox_oldest_pending_seconds", kind="owner_notice")
    assert oldest is not None and 120 * 60 <= oldest < 125 * 60
    assert value(first, "tokenbot_outbox_oldest_pending_seconds", kind="expiry") == 0

    owned(db, "five")  # within the minute, the figures read stand
    assert value(scrape(served.address), "tokenbot_tokens", status="active") == 2


@pytest.fixture
def metrics_app(make_settings: Callable[..., Settings], standin: SlackStandIn
                ) -> Iterator[Callable[..., tuple[str, int]]]:
    """The served app with these settings (METRICS_TOKEN, METRICS_ALLOW)."""
    stack: list[Any] = []

    def start(host: str = "127.0.0.1", **overrides: str) -> tuple[str, int]:
        settings = make_settings(SLACK_API_URL=standin.api_url, SLACK_BOT_TOKEN="xoxb-test",
                                 SLACK_SIGNING_SECRET="s" * 32, TOKENBOT_SCHEDULER="off",
                                 **overrides)
        database = Database(settings, auto_upgrade=False)
        context = serving(build_asgi_app(settings=settings, database=database), host)
        stack.append((context, database))
        return context.__enter__()

    yield start
    for context, database in reversed(stack):
        context.__exit__(None, None, None)
        database.dispose()


def test_metrics_need_the_bearer_credential_when_one_is_set(metrics_app: Any) -> None:
    address = metrics_app(METRICS_TOKEN="scrape-credential-0123")
    status, headers, _ = get(address)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert get(address, {"Authorization": "Bearer another-credential"})[0] == 401
    assert get(address, {"Authorization": "Basic c2NyYXBlLWNyZWRlbnRpYWwtMDEyMw=="})[0] == 401
    status, _, text = get(address, {"Authorization": "Bearer scrape-credential-0123"})
    assert status == 200 and "tokenbot_slack_requests_total" in text


def test_metrics_are_served_only_to_the_allowed_networks(metrics_app: Any) -> None:
    assert get(metrics_app(METRICS_ALLOW="10.0.0.0/8, 192.168.0.0/16"))[0] == 403
    assert get(metrics_app(METRICS_ALLOW="10.0.0.0/8,127.0.0.1/32"))[0] == 200
    both = metrics_app(METRICS_ALLOW="127.0.0.0/8", METRICS_TOKEN="scrape-credential-0123")
    assert get(both)[0] == 401
    assert get(both, {"Authorization": "Bearer scrape-credential-0123"})[0] == 200


def test_an_ipv4_scraper_reaching_a_dual_stack_listener_is_in_its_ipv4_network(
    metrics_app: Any,
) -> None:
    """HOST=:: : an IPv4 client arrives as ::ffff:127.0.0.1, still in 127.0.0.0/8."""
    _, port = metrics_app("::", METRICS_ALLOW="127.0.0.0/8")[:2]
    assert get(("127.0.0.1", port))[0] == 200
    _, port = metrics_app("::", METRICS_ALLOW="10.0.0.0/8")[:2]
    assert get(("127.0.0.1", port))[0] == 403


def test_a_credential_read_from_a_file_with_its_newline_still_matches(metrics_app: Any) -> None:
    """METRICS_TOKEN from a mounted secret file ends with a newline; the scraper's doesn't."""
    address = metrics_app(METRICS_TOKEN="scrape-credential-0123\n")
    assert get(address, {"Authorization": "Bearer scrape-credential-0123"})[0] == 200
    assert get(address)[0] == 401


SLOW_BODY_SECONDS = 0.6


def send_slowly(bot: HttpSlackBot, body: str, *, content_type: str = "", **_: Any) -> Any:
    """As HttpSlackBot.send, but the body follows the headers only after a pause (a slow
    client; the time a request waits before Bolt sees it, as when every thread is busy)."""
    from slack_bolt import BoltResponse

    data = body.encode()
    headers = signed_headers(bot.verifier.signing_secret, body,
                             content_type=content_type or "application/x-www-form-urlencoded")
    connection = http.client.HTTPConnection(*bot.address, timeout=10)
    try:
        connection.putrequest("POST", "/slack/events")
        for name, header in {**headers, "content-length": str(len(data))}.items():
            connection.putheader(name, header)
        connection.endheaders()
        time.sleep(SLOW_BODY_SECONDS)
        connection.send(data)
        response = connection.getresponse()
        return BoltResponse(status=response.status, body=response.read().decode())
    finally:
        connection.close()


def test_the_acknowledgement_time_counts_from_the_requests_arrival(
    served: HttpSlackBot, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What Slack waits for starts when the request reaches the server, not when Bolt gets
    it: a request whose body took 0.6 s to arrive is acknowledged no sooner than that."""
    before = scrape(served.address)
    monkeypatch.setattr(served, "send", lambda body, **kw: send_slowly(served, body, **kw))
    assert served.command("").status == 200
    after = scrape(served.address)
    assert moved(before, after, "tokenbot_slack_ack_seconds_count") == {("command",): 1}
    fast = moved(before, after, "tokenbot_slack_ack_seconds_bucket")
    assert fast.get(("command", "0.5"), 0) == 0 and fast[("command", "1.0")] == 1


def test_a_stuck_database_read_neither_holds_the_scrape_nor_slack(
    served: HttpSlackBot, db: Database,
) -> None:
    """A gauge read that cannot finish (another session holds the outbox table): the scrape
    still answers, with the counters and the age of the figures it has, and so does Slack."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite (WAL) readers never wait for a writer")
    from sqlalchemy import text

    with db.engine.connect() as locker:
        locker.execute(text("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE"))
        stuck = scrape(served.address)
        assert value(stuck, "tokenbot_metrics_db_read_timestamp_seconds") == 0
        assert value(stuck, "tokenbot_outbox_pending", kind="expiry") is None
        assert "tokenbot_slack_requests_total" in get(served.address)[2]
        assert served.command("").status == 200
        locker.rollback()
    deadline = time.monotonic() + 10
    while not value(fresh := scrape(served.address), "tokenbot_metrics_db_read_timestamp_seconds"):
        assert time.monotonic() < deadline, "the read never finished"
    assert value(fresh, "tokenbot_outbox_pending", kind="expiry") == 0
