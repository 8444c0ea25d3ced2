"""Token hygiene (issue 21, items 3 and 5) through the scheduled pass, the outbox and the
Slack stand-in: dormant tokens after N days (never used, used once then idle, used
recently), notify vs disable, at most one notice per 30 days; the hygiene digest at most
once per 7 days per destination, exactly once with three passes racing, nothing posted
when there is nothing to say, within Slack's block limits; Disable from the digest through
Bolt, and the digest redrawn."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.alerts.scheduler import PassReport, run_pass
from bot.config import Settings
from bot.db import Database
from bot.models import AuditEvent, MessageKind, OutboxMessage, Token, TokenStatus
from bot.services import departed
from bot.services import tokens
from bot.services.usage import Use, record_uses
from bot.slack.client import make_web_client
from tests.alerts_support import ALERTS, TEAM, alert_settings, cli_environment, seed_token
from tests.slack.conftest import SIGNING_SECRET, running_bot, texts
from tests.support.blockkit import validate_message_blocks
from tests.support.slack_standin import SlackStandIn

UTC = dt.timezone.utc
DAY = dt.timedelta(days=1)
# Every pass runs in the past of the real clock (the stand-in stamps messages with it).
T0 = (dt.datetime.now(UTC) - 200 * DAY).replace(hour=12, minute=0, second=0, microsecond=0)


@pytest.fixture
def make(make_settings: Callable[..., Settings], standin: SlackStandIn,
         ) -> Iterator[Callable[..., tuple[Settings, Database]]]:
    """Settings (alert channel, Slack as the stand-in) with the given extras, and their
    database."""
    opened: list[Database] = []

    def build(**extra: object) -> tuple[Settings, Database]:
        settings = alert_settings(make_settings, standin, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                                  **extra)
        opened.append(Database(settings, auto_upgrade=False))
        return settings, opened[-1]

    yield build
    for database in opened:
        database.dispose()


def _pass(settings: Settings, db: Database, at: dt.datetime) -> PassReport:
    report = run_pass(settings=settings, database=db, client=make_web_client(settings),
                      now=at, post_interval=0.0)
    assert report.failed == 0
    return report


def _hygiene_posts(standin: SlackStandIn, start: int = 0) -> list[dict[str, Any]]:
    """The hygiene digests Slack received (each validated Block Kit), in order."""
    posts = [call.body for call in standin.calls_to("chat.postMessage")[start:]
             if any(b.get("block_id") == "hygiene_header" for b in call.body["blocks"])]
    for body in posts:
        validate_message_blocks(body["blocks"])
        assert len(body["blocks"]) <= 50
    return posts


def _listed(body: dict[str, Any]) -> set[tuple[str, str]]:
    """(section, public id) of every token a digest lists in its full layout."""
    out = set()
    for block in body["blocks"]:
        parts = block.get("block_id", "").split(":")
        if parts[0] == "hygiene_item":
            out.add((parts[1], parts[2]))
    return out


def _use(db: Database, token: Token, at: dt.datetime) -> None:
    """The token is presented to /introspect at ``at`` (what the usage writer records)."""
    with db.engine.begin() as connection:
        record_uses(connection, uses=[Use(token_id=token.id, at=at, caller="ci-runner")])


def _token(db: Database, public_id: str) -> Token:
    with db.sessions() as session:
        token = session.scalars(select(Token).where(Token.public_id == public_id)).one()
        session.expunge(token)
        return token


def test_dormant_after_n_days_never_used_used_once_or_used_recently(
    make: Callable[..., tuple[Settings, Database]], standin: SlackStandIn,
) -> None:
    settings, db = make(TOKENBOT_DORMANT_DAYS="90")
    never = seed_token(db, now=T0, expires_on=None, label="never used", owner="U1").token
    once = seed_token(db, now=T0, expires_on=None, label="used once", owner="U2").token
    recent = seed_token(db, now=T0, expires_on=None, label="in use", owner="U1").token
    _use(db, once, T0 + 10 * DAY)
    for day in (0, 30, 60, 80):
        _use(db, recent, T0 + day * DAY)

    # Day 89: nothing is dormant yet: nothing is posted.
    assert _pass(settings, db, T0 + 89 * DAY).hygiene_digests == 0
    assert _hygiene_posts(standin) == []
    # Day 90: the never-used token (90 days since its creation), to the channel and its owner.
    report = _pass(settings, db, T0 + 90 * DAY)
    assert report.hygiene_digests == 2
    posts = _hygiene_posts(standin)
    assert {p["channel"] for p in posts} == {ALERTS, "U1"}
    assert all(_listed(p) == {("dormant", never.public_id)} for p in posts)
    channel = next(p for p in posts if p["channel"] == ALERTS)
    assert "never used" in texts(channel["blocks"]) and "Never used" in texts(channel["blocks"])
    assert _token(db, never.public_id).status == TokenStatus.ACTIVE  # notify: only listed
    # Day 100: the token used once on day 10 is dormant; a week has passed for the channel.
    seen = len(standin.calls_to("chat.postMessage"))
    _pass(settings, db, T0 + 100 * DAY)
    posts = _hygiene_posts(standin, seen)
    by = {p["channel"]: _listed(p) for p in posts}
    assert by == {ALERTS: {("dormant", once.public_id)}, "U2": {("dormant", once.public_id)}}
    # the one in use (last used day 80) is in no digest
    assert all(recent.public_id not in str(p["blocks"]) for p in _hygiene_posts(standin))


def test_a_dormant_token_is_noticed_at_most_once_in_30_days(
    make: Callable[..., tuple[Settings, Database]], standin: SlackStandIn,
) -> None:
    settings, db = make(TOKENBOT_DORMANT_DAYS="30")
    idle = seed_token(db, now=T0, expires_on=None, label="idle", owner="U1").token
    _pass(settings, db, T0 + 30 * DAY)
    assert len(_hygiene_posts(standin)) == 2  # channel and owner
    # Weekly passes after it: still dormant, but told of 30 days ago at most: nothing.
    for day in (37, 44, 51, 58):
        assert _pass(settings, db, T0 + day * DAY).hygiene_digests == 0
    assert len(_hygiene_posts(standin)) == 2
    # 30 days after the notice it is listed again.
    _pass(settings, db, T0 + 60 * DAY)
    posts = _hygiene_posts(standin)
    assert len(posts) == 4 and all(_listed(p) == {("dormant", idle.public_id)} for p in posts)


def test_disable_mode_warns_then_disables_audits_and_tells_the_owner_once(
    make: Callable[..., tuple[Settings, Database]], standin: SlackStandIn,
) -> None:
    settings, db = make(TOKENBOT_DORMANT_DAYS="60", TOKENBOT_DORMANT_ACTION="disable")
    idle = seed_token(db, now=T0, expires_on=None, label="idle <bot>", owner="U1").token
    busy = seed_token(db, now=T0, expires_on=None, label="busy", owner="U1").token
    _use(db, busy, T0 + 50 * DAY)
    # Day 60: dormant; the first notice is a warning (channel and owner), nothing is cut.
    report = _pass(settings, db, T0 + 60 * DAY)
    assert (report.dormant_disabled, report.hygiene_digests) == (0, 2)
    assert _token(db, idle.public_id).status == TokenStatus.ACTIVE
    warnings = _hygiene_posts(standin)
    assert all(_listed(p) == {("dormant", idle.public_id)} for p in warnings)
    assert all("disables it a week after this notice" in texts(p["blocks"]) for p in warnings)
    # Still dormant a week after the warning: disabled.
    assert _pass(settings, db, T0 + 66 * DAY).dormant_disabled == 0
    assert _pass(settings, db, T0 + 67 * DAY).dormant_disabled == 1
    assert _token(db, idle.public_id).status == TokenStatus.DISABLED
    assert _token(db, busy.public_id).status == TokenStatus.ACTIVE
    with db.sessions() as session:
        event = session.scalars(select(AuditEvent).where(
            AuditEvent.token_public_id == idle.public_id, AuditEvent.action == "disable")).one()
    assert (event.source, event.details["reason"]) == ("policy", "dormant")
    dm = next(c.body for c in standin.calls_to("chat.postMessage")
              if c.body["channel"] == "U1" and "dormant_disabled" in str(c.body["blocks"]))
    validate_message_blocks(dm["blocks"])
    words = texts(dm["blocks"])
    assert "idle &lt;bot&gt;" in words and "60 days" in words and "never used" in words
    assert "enable it again from `/tokens`" in words
    # The channel's digest says it was disabled (no Disable button left for it); the owner,
    # told by that DM, gets no digest repeating it.
    later = _hygiene_posts(standin)[len(warnings):]
    assert [p["channel"] for p in later] == [ALERTS]
    assert "Disabled by the token policy" in texts(later[0]["blocks"])
    assert "hygiene_disable" not in str(later[0]["blocks"])

    # The owner enables it again (29 days after the policy disabled it); still unused, it
    # is dormant again 60 days after that enable, warned of, and disabled a week later.
    enabled = _token(db, idle.public_id)
    with db.sessions.begin() as session:
        tokens.enable_token(session, actor=tokens.Actor(team_id=TEAM, user_id="U1"),
                            public_id=idle.public_id, expected_version=enabled.version,
                            now=T0 + 96 * DAY)
    _use(db, busy, T0 + 120 * DAY)
    for day in (97, 120, 155, 156, 162):
        assert _pass(settings, db, T0 + day * DAY).dormant_disabled == 0
    assert _token(db, idle.public_id).status == TokenStatus.ACTIVE
    assert _pass(settings, db, T0 + 163 * DAY).dormant_disabled == 1
    assert _token(db, idle.public_id).status == TokenStatus.DISABLED


def test_the_digest_goes_to_each_destination_at_most_once_in_7_days(
    make: Callable[..., tuple[Settings, Database]], standin: SlackStandIn,
) -> None:
    """A token over policy stays over it: every pass has something to say, but a
    destination hears it once a week, whatever the calendar week."""
    settings, db = make(TOKENBOT_MAX_LIFETIME_DAYS="write=90")
    forever = seed_token(db, now=T0, expires_on=None, label="forever", owner="U1").token
    start = T0 + 3 * DAY + 11 * dt.timedelta(hours=1)  # any weekday, late in the day
    _pass(settings, db, start)
    assert {p["channel"] for p in _hygiene_posts(standin)} == {ALERTS, "U1"}
    assert all(_listed(p) == {("over_policy", forever.public_id)}
               for p in _hygiene_posts(standin))
    # (the registry is scanned at most once an hour, whichever pass comes first)
    for later in (dt.timedelta(hours=1), DAY, 6 * DAY, 7 * DAY - dt.timedelta(hours=1)):
        assert _pass(settings, db, start + later).hygiene_digests == 0
    assert len(_hygiene_posts(standin)) == 2
    assert _pass(settings, db, start + 7 * DAY).hygiene_digests == 2
    assert len(_hygiene_posts(standin)) == 4
    # What the owner is told to do ("*Edit* an expiry"), the digest offers.
    owner = next(p for p in _hygiene_posts(standin) if p["channel"] == "U1")
    buttons = {e["text"]["text"] for b in owner["blocks"] if b["type"] == "actions"
               for e in b["elements"]}
    assert buttons == {"Disable", "Edit", "Open table"}
    assert "*Edit* an expiry" in texts(owner["blocks"])


def test_nothing_to_report_posts_nothing(
    make: Callable[..., tuple[Settings, Database]], standin: SlackStandIn,
) -> None:
    settings, db = make(TOKENBOT_MAX_LIFETIME_DAYS="write=90")
    used = seed_token(db, now=T0, expires_on=(T0 + 80 * DAY).date(), label="fine").token
    _use(db, used, T0 + 60 * DAY)
    seed_token(db, now=T0, expires_on=None, label="gone", owner="U3")  # then deleted
    with db.sessions.begin() as session:
        gone = session.scalars(select(Token).where(Token.label == "gone")).one()
        tokens.delete_token(session, actor=tokens.Actor(team_id=TEAM, user_id="U3"),
                            public_id=gone.public_id, expected_version=gone.version,
                            now=T0 + DAY)
    for day in (7, 14, 70):
        assert _pass(settings, db, T0 + day * DAY).hygiene_digests == 0
    assert _hygiene_posts(standin) == []
    with db.sessions() as session:
        assert session.scalars(select(OutboxMessage).where(
            OutboxMessage.kind == MessageKind.HYGIENE)).all() == []


def test_three_passes_racing_post_each_digest_exactly_once(
    make: Callable[..., tuple[Settings, Database]], standin: SlackStandIn,
) -> None:
    settings, db = make(TOKENBOT_MAX_LIFETIME_DAYS="write=90", TOKENBOT_DORMANT_DAYS="30")
    for number in range(12):
        seed_token(db, now=T0, expires_on=None, label=f"svc {number}", owner=f"U{number % 3}")
    barrier = threading.Barrier(3)

    def one(at: dt.datetime) -> PassReport:
        barrier.wait()
        return _pass(settings, db, at)

    queued = []
    for at in (T0 + 40 * DAY, T0 + 40 * DAY + dt.timedelta(minutes=5)):
        with ThreadPoolExecutor(3) as pool:
            reports = list(pool.map(one, [at] * 3))
        queued.append(sum(r.hygiene_digests for r in reports))
    assert queued == [4, 0]
    posts = _hygiene_posts(standin)
    assert sorted(p["channel"] for p in posts) == sorted([ALERTS, "U0", "U1", "U2"])
    channel = next(p for p in posts if p["channel"] == ALERTS)
    assert len(_listed(channel)) == 0  # 12 tokens: the compact layout
    # each is dormant and over policy: listed (and counted) once, the other reason noted
    assert channel["text"].endswith(": 12 dormant tokens")
    assert texts(channel["blocks"]).count(":warning: Over policy") == 12


@pytest.mark.slow
def test_three_processes_racing_post_each_digest_exactly_once(
    make: Callable[..., tuple[Settings, Database]], standin: SlackStandIn, tmp_path: Path,
) -> None:
    from tests.test_alerts_cli import _run_processes

    settings, db = make(TOKENBOT_MAX_LIFETIME_DAYS="write=90")
    for number in range(6):
        seed_token(db, now=T0, expires_on=None, label=f"svc {number}", owner=f"U{number % 2}")
    env = {**cli_environment(settings), "TOKENBOT_MAX_LIFETIME_DAYS": "write=90"}
    reports = _run_processes(env, T0 + DAY, tmp_path)
    assert sum(int(r["hygiene_digests"]) for r in reports) == 3  # type: ignore[call-overload]
    _run_processes(env, T0 + 6 * DAY, tmp_path)
    assert sorted(p["channel"] for p in _hygiene_posts(standin)) == [ALERTS, "U0", "U1"]
    _run_processes(env, T0 + 8 * DAY, tmp_path)
    assert len(_hygiene_posts(standin)) == 6


def test_many_tokens_stay_within_one_message_and_say_how_many_more(
    make: Callable[..., tuple[Settings, Database]], standin: SlackStandIn,
) -> None:
    settings, db = make(TOKENBOT_DORMANT_DAYS="30")
    for number in range(85):
        seed_token(db, now=T0, expires_on=None, label=f"idle {number}", owner="U1")
    _pass(settings, db, T0 + 31 * DAY)
    posts = _hygiene_posts(standin)
    assert [p["channel"] for p in posts].count(ALERTS) == 1
    channel = next(p for p in posts if p["channel"] == ALERTS)
    assert channel["text"].endswith("85 dormant tokens")
    assert "…and 15 more" in texts(channel["blocks"])
    menus = [e for b in channel["blocks"] if b["type"] == "actions" for e in b["elements"]
             if e["action_id"] == "hygiene_disable"]
    assert sum(len(menu["options"]) for menu in menus) == 70
    # a menu's one confirmation does not name a token it cannot know
    assert {menu["confirm"]["title"]["text"] for menu in menus} == {"Disable token?"}


def test_disable_from_the_digest_through_bolt_redraws_it(
    make: Callable[..., tuple[Settings, Database]], standin: SlackStandIn,
) -> None:
    from tests.test_alerts_actions import _click

    settings, db = make(TOKENBOT_DORMANT_DAYS="30", TOKENBOT_MAX_LIFETIME_DAYS="write=90")
    idle = seed_token(db, now=T0, expires_on=None, label="idle", owner="U1").token
    other = seed_token(db, now=T0, expires_on=None, label="other", owner="U2").token
    _pass(settings, db, T0 + 31 * DAY)
    channel = next(p for p in _hygiene_posts(standin) if p["channel"] == ALERTS)
    # dormant and over policy: each listed once (one Disable button), both reasons given
    assert _listed(channel) == {("dormant", idle.public_id), ("dormant", other.public_id)}
    assert channel["text"].endswith(": 2 dormant tokens")
    idle_text = next(texts([b]) for b in channel["blocks"]
                     if b.get("block_id") == f"hygiene_item:dormant:{idle.public_id}")
    assert ":zzz: Unused for 30 days" in idle_text and ":warning: Over policy" in idle_text
    with db.sessions() as session:
        ts = session.scalar(select(OutboxMessage.message_ts).where(
            OutboxMessage.kind == MessageKind.HYGIENE, OutboxMessage.destination == ALERTS))
    button = next(e for b in channel["blocks"]
                  if b.get("block_id") == f"hygiene_item_actions:dormant:{idle.public_id}"
                  for e in b["elements"] if e["action_id"] == "hygiene_disable")
    assert button["confirm"]["confirm"]["text"] == "Disable Token"
    with running_bot(settings, db, standin) as bot:
        # Someone who neither owns it nor is an admin is refused, and nothing changes.
        _click(bot, button, ts=ts, user="U2")
        assert "Only the token's owner" in standin.calls_to("chat.postEphemeral")[-1].body["text"]
        assert _token(db, idle.public_id).status == TokenStatus.ACTIVE
        _click(bot, button, ts=ts, user="U1")
    assert _token(db, idle.public_id).status == TokenStatus.DISABLED
    update = standin.calls_to("chat.update")[-1].body
    assert (update["channel"], update["ts"]) == (ALERTS, ts)
    validate_message_blocks(update["blocks"])
    redrawn = {b["block_id"]: b for b in update["blocks"]}
    assert "*Disabled*" in texts([redrawn[f"hygiene_item:dormant:{idle.public_id}"]])
    assert not any(e.get("action_id") == "hygiene_disable"
                   for b in update["blocks"] if b.get("block_id", "").endswith(idle.public_id)
                   for e in b.get("elements", []))
    assert any(e.get("action_id") == "hygiene_disable"
               for e in redrawn[f"hygiene_item_actions:dormant:{other.public_id}"]["elements"])
    told = standin.calls_to("chat.postEphemeral")[-1].body
    assert told["user"] == "U1" and "Disabled *idle*" in told["text"]


def test_alerts_run_dry_run_and_json_tell_of_the_hygiene_digest(
    make: Callable[..., tuple[Settings, Database]], standin: SlackStandIn,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from bot.cli import main

    settings, db = make(TOKENBOT_DORMANT_DAYS="30", TOKENBOT_DORMANT_ACTION="disable")
    idle = seed_token(db, now=T0, expires_on=None, label="idle", owner="U1").token
    for name, value in {**cli_environment(settings), "TOKENBOT_DORMANT_DAYS": "30",
                        "TOKENBOT_DORMANT_ACTION": "disable"}.items():
        monkeypatch.setenv(name, value)
    used = T0 + DAY + dt.timedelta(hours=3)
    _use(db, idle, used)
    _pass(settings, db, T0 + 32 * DAY)  # the warning (to the channel and the owner)
    seen = len(standin.calls)
    at = (T0 + 39 * DAY).isoformat()
    assert main(["alerts", "run", "--dry-run", "--now", at]) == 0
    out = capsys.readouterr().out
    assert "Token hygiene: would queue 1 digest(s); would disable 1 dormant token(s)" in out
    assert f"#{ALERTS}: would post 1 message(s)" in out and "hygiene: Token hygiene: 1 dormant" in out
    assert len(standin.calls) == seen and _token(db, idle.public_id).status == TokenStatus.ACTIVE

    assert main(["alerts", "run", "--now", at, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["hygiene_digests"], report["dormant_disabled"]) == (1, 1)
    kinds = sorted(t["kind"] for d in report["destinations"] for t in d["tokens"])
    assert kinds == ["dormant_disabled", "hygiene"]
    assert _token(db, idle.public_id).status == TokenStatus.DISABLED
    dm = next(c.body for c in standin.calls_to("chat.postMessage")
              if "dormant_disabled" in str(c.body["blocks"]))
    # the instant it was last used, in the reader's time zone
    assert f"last used <!date^{int(used.timestamp())}^" in texts(dm["blocks"])


def test_a_table_drawn_before_the_policy_disabled_a_token_names_the_policy(
    make: Callable[..., tuple[Settings, Database]], standin: SlackStandIn,
) -> None:
    from bot.slack.ids import ActionId
    from tests.slack.conftest import row_buttons

    settings, db = make(TOKENBOT_DORMANT_DAYS="30", TOKENBOT_DORMANT_ACTION="disable")
    idle = seed_token(db, now=T0, expires_on=None, label="idle", owner="U1").token
    with running_bot(settings, db, standin) as bot:
        bot.command("", user="U1")
        blocks = standin.wait_for("response_url", 1)[-1].body["blocks"]
        _pass(settings, db, T0 + 31 * DAY)  # the warning
        _pass(settings, db, T0 + 38 * DAY)
        bot.click(row_buttons(blocks, idle.public_id)[ActionId.DISABLE], user="U1")
        answer = texts(standin.wait_for("response_url", 2)[-1].body["blocks"])
    assert "*token policy* disabled it" in answer
    assert "<@token policy>" not in answer


def test_tokens_of_an_owner_who_left_are_listed_to_the_alert_channel_only(
    make: Callable[..., tuple[Settings, Database]], standin: SlackStandIn,
) -> None:
    settings, db = make()
    left = seed_token(db, now=T0, expires_on=None, label="ada's bot", owner="UADA").token
    seed_token(db, now=T0, expires_on=None, label="bob's bot", owner="UBOB")
    with db.sessions.begin() as session:
        departed.note_departure(session, team_id=TEAM, user_id="UADA", now=T0 + DAY,
                                channel=None)  # recorded; no post of its own without one
    assert _pass(settings, db, T0 + 2 * DAY).hygiene_digests == 1
    (digest,) = _hygiene_posts(standin)
    assert digest["channel"] == ALERTS
    assert _listed(digest) == {("departed", left.public_id)}
    assert "Owners who left" in texts(digest["blocks"])
    assert "deactivated" in texts(digest["blocks"])


def test_a_pass_run_as_of_a_future_moment_does_not_stop_the_real_passes(
    make: Callable[..., tuple[Settings, Database]], standin: SlackStandIn,
) -> None:
    """`alerts run --now <next month>` stamps its scan, digests, notices and owner check
    with that moment; the passes at the real time after it still scan, check and post."""
    settings, db = make(TOKENBOT_DORMANT_DAYS="30", TOKENBOT_MAX_LIFETIME_DAYS="write=90")
    idle = seed_token(db, now=T0, expires_on=None, label="idle", owner="U1").token
    seed_token(db, now=T0 + 50 * DAY, expires_on=(T0 + 100 * DAY).date(), label="ada's",
               owner="UADA")
    _pass(settings, db, T0 + 60 * DAY)  # the future pass (in the past of the real clock)
    assert len(_hygiene_posts(standin)) == 2
    standin.users["UADA"] = {"deleted": True}
    # The real passes, a month "before" it: the scan, the weekly owner check and the
    # digests all happen, the dormant token listed again.
    report = _pass(settings, db, T0 + 51 * DAY)
    assert report.hygiene_digests == 2 and report.departed == 1
    posts = _hygiene_posts(standin)[2:]
    assert all(("dormant", idle.public_id) in _listed(p) for p in posts)
    assert {p["channel"] for p in posts} == {ALERTS, "U1"}
    # ...and from then on they keep their usual rhythm: nothing new an hour later.
    assert _pass(settings, db, T0 + 51 * DAY + dt.timedelta(hours=1)).hygiene_digests == 0


def test_each_team_gets_its_share_and_every_dormant_token_its_turn(
    make: Callable[..., tuple[Settings, Database]], standin: SlackStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """More dormant tokens than a pass reads (here 2): a big team does not crowd another
    out, and the ones not listed yet come before those already told of."""
    from bot.services import hygiene

    monkeypatch.setattr(hygiene, "READ_LIMIT", 2)
    settings, db = make(TOKENBOT_DORMANT_DAYS="30")
    big = [seed_token(db, now=T0, expires_on=None, label=f"big {n}", owner="U1").token
           for n in range(3)]
    small = seed_token(db, now=T0, expires_on=None, label="small", owner="U9",
                       team="T9").token
    _pass(settings, db, T0 + 30 * DAY)
    posts = _hygiene_posts(standin)
    assert {p["channel"] for p in posts} == {ALERTS, "U1", "U9"}
    assert any(_listed(p) == {("dormant", small.public_id)} for p in posts
               if p["channel"] == ALERTS)
    first = set().union(*(_listed(p) for p in posts if p["channel"] == "U1"))
    assert len(first) == 2
    # A week later the third one of the big team is listed (the other two were told of).
    _pass(settings, db, T0 + 37 * DAY)
    later = set().union(*(_listed(p) for p in _hygiene_posts(standin)[len(posts):]
                          if p["channel"] == "U1"))
    assert later == {("dormant", t.public_id) for t in big} - first


def test_no_digest_is_sent_to_an_owner_who_left(
    make: Callable[..., tuple[Settings, Database]], standin: SlackStandIn,
) -> None:
    settings, db = make(TOKENBOT_DORMANT_DAYS="30")
    idle = seed_token(db, now=T0, expires_on=None, label="ada's idle bot", owner="UADA").token
    with db.sessions.begin() as session:
        departed.note_departure(session, team_id=TEAM, user_id="UADA", now=T0 + DAY,
                                channel=None)
    _pass(settings, db, T0 + 30 * DAY)
    posts = _hygiene_posts(standin)
    assert [p["channel"] for p in posts] == [ALERTS]  # no DM to the departed owner
    assert ("dormant", idle.public_id) in _listed(posts[0])


def test_switching_to_disable_warns_before_anything_is_cut(
    make: Callable[..., tuple[Settings, Database]], standin: SlackStandIn,
) -> None:
    """A token listed under ``notify`` was never told it would be disabled: after the switch
    to ``disable`` it is warned of first (when it may be listed again), and cut a week
    after that warning."""
    notify, db = make(TOKENBOT_DORMANT_DAYS="30")
    idle = seed_token(db, now=T0, expires_on=None, label="idle", owner="U1").token
    _pass(notify, db, T0 + 30 * DAY)  # listed (notify)
    disable, _ = make(TOKENBOT_DORMANT_DAYS="30", TOKENBOT_DORMANT_ACTION="disable")
    for day in (40, 47, 59):
        assert _pass(disable, db, T0 + day * DAY).dormant_disabled == 0
    seen = len(_hygiene_posts(standin))
    assert _pass(disable, db, T0 + 60 * DAY).dormant_disabled == 0  # the warning
    warning = _hygiene_posts(standin)[seen:]
    assert {p["channel"] for p in warning} == {ALERTS, "U1"}
    assert all("disables it a week after this notice" in texts(p["blocks"]) for p in warning)
    assert _token(db, idle.public_id).status == TokenStatus.ACTIVE
    assert _pass(disable, db, T0 + 67 * DAY).dormant_disabled == 1
    assert _token(db, idle.public_id).status == TokenStatus.DISABLED


def test_edit_from_the_digest_brings_an_expiry_within_policy_and_redraws_it(
    make: Callable[..., tuple[Settings, Database]], standin: SlackStandIn,
) -> None:
    from tests.slack.conftest import form_values
    from tests.test_alerts_actions import _click

    settings, db = make(TOKENBOT_MAX_LIFETIME_DAYS="write=90")
    forever = seed_token(db, now=T0, expires_on=None, label="forever", owner="U1").token
    _pass(settings, db, T0 + DAY)
    dm = next(p for p in _hygiene_posts(standin) if p["channel"] == "U1")
    with db.sessions() as session:
        ts = session.scalar(select(OutboxMessage.message_ts).where(
            OutboxMessage.kind == MessageKind.HYGIENE, OutboxMessage.destination == "U1"))
    edit = next(e for b in dm["blocks"]
                if b.get("block_id") == f"hygiene_item_actions:over_policy:{forever.public_id}"
                for e in b["elements"] if e["action_id"] == "hygiene_edit")
    new_date = (dt.datetime.now(UTC) + 30 * DAY).date()
    with running_bot(settings, db, standin) as bot:
        _click(bot, edit, ts=ts, user="U1", channel="U1")
        view = standin.wait_for("views.open", 1)[-1].body["view"]
        assert view["title"]["text"] == "Edit Access Token"
        response = bot.submit(view, form_values(label="forever", scope=forever.scope,
                                                expires=new_date.isoformat()), user="U1")
        assert response.status == 200 and "errors" not in (response.body or "")
        update = standin.wait_for("chat.update", 1)[-1].body
    assert _token(db, forever.public_id).expires_on == new_date
    assert (update["channel"], update["ts"]) == ("U1", ts)  # the digest itself, in place
    validate_message_blocks(update["blocks"])
    row = next(texts([b]) for b in update["blocks"]
               if b.get("block_id") == f"hygiene_item:over_policy:{forever.public_id}")
    assert f"Expiry changed since: it expires {new_date}" in row
