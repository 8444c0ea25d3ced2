"""Issue 12, the usage-aware lifecycle, through HTTP (the product's ASGI application under
uvicorn, as ``tokenbot serve`` runs it) on SQLite and PostgreSQL: named introspection
callers and "last used by", rotation with overlap (CLI, services), its endings and the
owner's direct messages, dead secrets still presented and their daily alarm."""

from __future__ import annotations

import datetime as dt
import http.client
import json

import pytest

from bot.db import Database
from bot.errors import InvalidStateError
from bot.models import utcnow
from bot.services import rotation
from bot.services.dead_secrets import UseKey, add_presentations, hour_of
from bot.services import tokens
from tests.lifecycle_support import (
    ACTOR,
    BARE_SECRET,
    FORM,
    OWNER,
    TEAM,
    Cli,
    Server,
    alarm_posts,
    alerts_run,
    audit_actions,
    basic,
    create,
    entries,
    posts,
    rotation_notice_posts,
    time_after,
    told,
    version,
)
from tests.conftest import TEST_KEY
from tests.support.signing import form_body
from tests.support.slack_standin import SlackStandIn

ROTATION, ALARM = "rotation_notice", "dead_secret_alarm"  # message kinds in the report


# -- named callers -------------------------------------------------------------------------


def test_the_caller_is_the_credentials_name_over_bearer_and_basic(
    server: Server, lc_db: Database, run: Cli
) -> None:
    by_bearer, by_basic, by_bare = create(lc_db, label="one"), create(lc_db, label="two"), (
        create(lc_db, label="three"))
    assert server.introspect(by_bearer.secret)["active"] is True
    # Basic: the user name is ignored; the password's entry names the caller.
    assert server.introspect(by_basic.secret,
                             auth=basic("pretends-to-be-ci", "deploy-credential-456"))["active"]
    assert server.introspect(by_bare.secret, auth=f"Bearer {BARE_SECRET}")["active"]
    # a Basic user name with a wrong password is refused, whatever the name
    connection = http.client.HTTPConnection(*server.address, timeout=10)
    connection.request("POST", "/introspect", body=form_body({"token": by_bare.secret}),
                       headers={"Authorization": basic("ci-runner", "deploy-bot"),
                                "Content-Type": FORM})
    assert connection.getresponse().status == 401
    connection.close()
    server.settle()
    shown = {t["label"]: t for t in run.json("tokens", "list")["tokens"]}
    assert shown["one"]["last_used_by"] == "ci-runner"
    assert shown["two"]["last_used_by"] == "deploy-bot"
    assert shown["three"]["last_used_by"] == "client-2"  # a bare entry, by position
    code, out, _ = run("tokens", "show", by_bearer.token.public_id)
    assert code == 0 and "by ci-runner" in out
    code, out, _ = run("tokens", "list")
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert code == 0 and rows[by_basic.token.public_id].rstrip().endswith(" by deploy-bot")


# -- rotation with overlap: CLI, introspection, endings ------------------------------------


def test_overlap_rotation_by_cli_keeps_both_secrets_until_the_new_one_is_used(
    server: Server, lc_db: Database, run: Cli
) -> None:
    created = create(lc_db)
    public_id, old = created.token.public_id, created.secret
    rotated = run.json("tokens", "rotate", public_id, "--overlap", "24h", "--yes")
    new = rotated["secret"]
    assert rotated["rotation"]["old_masked"] == created.token.secret_masked
    deadline = dt.datetime.fromisoformat(rotated["rotation"]["old_works_until"])
    # both work, same token and scope; the old one says so, with the overlap's deadline
    old_answer = server.introspect(old)
    assert old_answer["active"] is True and old_answer["rotation"] == "superseded"
    assert old_answer["exp"] == int(deadline.timestamp())
    assert old_answer["client_id"] == public_id and old_answer["scope"] == "write"
    assert server.introspect(old)["active"] is True  # still, as often as it is used
    # the first use of the new one answers normally ...
    new_answer = server.introspect(new, auth=basic("x", "deploy-credential-456"))
    assert new_answer["active"] is True and "rotation" not in new_answer
    assert new_answer["client_id"] == public_id
    # ... and from the next request on the old one is dead
    assert server.introspect(old) == {"active": False}
    assert server.introspect(new)["active"] is True
    assert ("retire_old", "deploy-bot") in audit_actions(lc_db, public_id)
    shown = run.json("tokens", "show", public_id)
    assert shown["rotation"] is None


def test_the_old_secret_is_said_to_work_until_the_token_expires_when_that_comes_first(
    server: Server, lc_db: Database, run: Cli
) -> None:
    created = create(lc_db, label="expiring", expires_on=(utcnow() + dt.timedelta(days=2)).date())
    public_id, expiry = created.token.public_id, created.token.expires_at
    assert expiry is not None
    rotated = run.json("tokens", "rotate", public_id, "--overlap", "7d", "--yes")
    assert dt.datetime.fromisoformat(rotated["rotation"]["old_works_until"]) == expiry
    assert server.introspect(created.secret)["exp"] == int(expiry.timestamp())
    code, out, _ = run("tokens", "show", public_id)
    assert code == 0 and f"works until {expiry:%Y-%m-%d %H:%M} UTC" in out


@pytest.mark.parametrize("bad", ["31d", "0m", "soon", "-5h", "24", "1w"])
def test_a_bad_overlap_is_one_line_and_changes_nothing(
    lc_db: Database, run: Cli, bad: str
) -> None:
    created = create(lc_db)
    before = version(lc_db, created.token.public_id)
    code, out, err = run("tokens", "rotate", created.token.public_id, "--overlap", bad, "--yes")
    assert code != 0 and out == ""
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "--overlap" in errors[0]
    assert version(lc_db, created.token.public_id) == before


@pytest.mark.parametrize(("given", "overlap"), [
    ("30m", dt.timedelta(minutes=30)), ("30d", dt.timedelta(days=30)),
    ("720h", dt.timedelta(hours=720)),
])
def test_an_overlap_of_up_to_30_days_keeps_the_old_secret_that_long(
    server: Server, lc_db: Database, run: Cli, given: str, overlap: dt.timedelta
) -> None:
    created = create(lc_db)
    before = utcnow().replace(microsecond=0)  # the JSON writes whole seconds
    rotated = run.json("tokens", "rotate", created.token.public_id, "--overlap", given, "--yes")
    deadline = dt.datetime.fromisoformat(rotated["rotation"]["old_works_until"])
    assert before + overlap <= deadline <= utcnow() + overlap
    answer = server.introspect(created.secret)
    assert answer["rotation"] == "superseded" and answer["exp"] == int(deadline.timestamp())


def test_retire_now_and_cancel(server: Server, lc_db: Database) -> None:
    first, second = create(lc_db, label="retire me"), create(lc_db, label="cancel me")
    now = utcnow()
    with lc_db.sessions.begin() as session:
        r1 = tokens.rotate_token(session, box=lc_db.box, actor=ACTOR, now=now,
                                 public_id=first.token.public_id,
                                 expected_version=first.token.version,
                                 overlap=dt.timedelta(days=7))
        r2 = tokens.rotate_token(session, box=lc_db.box, actor=ACTOR, now=now,
                                 public_id=second.token.public_id,
                                 expected_version=second.token.version,
                                 overlap=dt.timedelta(hours=1))
        v1, v2 = r1.token.version, r2.token.version
    with lc_db.sessions.begin() as session:
        rotation.retire_now(session, actor=ACTOR, public_id=first.token.public_id,
                            expected_version=v1, now=now)
        kept = rotation.cancel_rotation(session, actor=ACTOR,
                                        public_id=second.token.public_id,
                                        expected_version=v2, now=now)
        assert kept.secret_masked == second.token.secret_masked
    assert server.introspect(first.secret) == {"active": False}
    assert server.introspect(r1.secret)["active"] is True
    # cancel keeps the old secret (no longer "superseded") and discards the new one
    kept_answer = server.introspect(second.secret)
    assert kept_answer["active"] is True and "rotation" not in kept_answer
    assert server.introspect(r2.secret) == {"active": False}
    with lc_db.sessions() as session:
        again = tokens.reveal_token(session, box=lc_db.box, actor=ACTOR,
                                    public_id=second.token.public_id, now=now)[1]
    assert again == second.secret
    assert [a for a, _ in audit_actions(lc_db, first.token.public_id)][-1] == "retire_old"
    assert [a for a, _ in audit_actions(lc_db, second.token.public_id)][-1] == (
        "cancel_rotation")


def test_disable_during_an_overlap_disables_both_and_delete_removes_both(
    server: Server, lc_db: Database
) -> None:
    one, two = create(lc_db, label="disable me"), create(lc_db, label="delete me")
    now = utcnow()
    rotated = {}
    with lc_db.sessions.begin() as session:
        for created in (one, two):
            rotated[created.token.public_id] = tokens.rotate_token(
                session, box=lc_db.box, actor=ACTOR, now=now, public_id=created.token.public_id,
                expected_version=created.token.version, overlap=dt.timedelta(hours=24))
    for created in (one, two):
        assert server.introspect(created.secret)["rotation"] == "superseded"
    with lc_db.sessions.begin() as session:
        r1 = rotated[one.token.public_id].token
        tokens.disable_token(session, actor=ACTOR, public_id=r1.public_id,
                             expected_version=version(lc_db, r1.public_id), now=now)
        tokens.delete_token(session, actor=ACTOR, public_id=two.token.public_id,
                            expected_version=version(lc_db, two.token.public_id), now=now)
    for created in (one, two):
        assert server.introspect(created.secret) == {"active": False}
        assert server.introspect(rotated[created.token.public_id].secret) == {"active": False}


# -- the scheduled pass: rotation notices, dead-secret alarms ------------------------------


def test_first_use_of_the_new_secret_tells_the_owner_once(
    server: Server, lc_db: Database, run: Cli, standin: SlackStandIn
) -> None:
    """Rewritten for the outbox (issue 19): the notice is queued with the first use and
    the server posts it right after that commits (its drain), not the next pass; the pass
    then has nothing to post, so the owner is told once."""
    created = create(lc_db)
    rotated = run.json("tokens", "rotate", created.token.public_id, "--overlap", "7d", "--yes")
    first_use = utcnow().replace(microsecond=0)
    assert server.introspect(rotated["secret"])["active"] is True
    assert server.introspect(created.secret) == {"active": False}
    server.settle()  # the first use is recorded: the server posts its notice (the drain)
    standin.wait_for("chat.postMessage", 2)  # with the notice of the CLI's rotation
    (dm,) = rotation_notice_posts(standin)
    assert dm["channel"] == OWNER
    assert first_use <= time_after(dm["text"], "switched at") <= utcnow()
    assert "first used by ci-runner" in dm["text"]
    assert created.secret not in json.dumps(dm) and rotated["secret"] not in json.dumps(dm)
    assert told(alerts_run(run, utcnow()), ROTATION) == []  # once: the pass has nothing
    assert told(alerts_run(run, utcnow() + dt.timedelta(hours=1)), ROTATION) == []
    assert len(rotation_notice_posts(standin)) == 1


def test_the_deadline_coming_first_ends_the_rotation_and_says_the_new_secret_was_unused(
    server: Server, lc_db: Database, run: Cli, standin: SlackStandIn
) -> None:
    created = create(lc_db, label="nightly export")
    started = utcnow() - dt.timedelta(hours=2)  # time travel: rotated two hours ago
    with lc_db.sessions.begin() as session:
        rotated = tokens.rotate_token(session, box=lc_db.box, actor=ACTOR, now=started,
                                      public_id=created.token.public_id,
                                      expected_version=created.token.version,
                                      overlap=dt.timedelta(hours=1))
    # past the deadline the old secret fails even before any pass ran
    assert server.introspect(created.secret) == {"active": False}
    dry = alerts_run(run, utcnow(), "--dry-run")
    assert dry["rotations_ended"] == 1 and posts(standin) == []
    report = alerts_run(run, utcnow())
    assert report["rotations_ended"] == 1
    (dm,) = posts(standin)
    assert dm["channel"] == OWNER and "nightly export" in dm["text"]
    assert "deadline passed at" in dm["text"] and "never used" in dm["text"]
    deadline = started + dt.timedelta(hours=1)
    assert time_after(dm["text"], "deadline passed at") == deadline.replace(microsecond=0)
    assert alerts_run(run, utcnow())["rotations_ended"] == 0 and len(posts(standin)) == 1
    # the new secret works, the old one is rotated out; the audit says who ended it
    assert server.introspect(rotated.secret)["active"] is True
    assert ("retire_old", "scheduler") in audit_actions(lc_db, created.token.public_id)


def _rotated_two_hours_ago(lc_db: Database, label: str) -> tuple[tokens.CreatedToken,
                                                                 tokens.CreatedToken]:
    """A token rotated two hours ago with a 1-hour overlap: the deadline has passed, and no
    pass has ended the rotation yet. Returns (before, after) the rotation."""
    created = create(lc_db, label=label)
    with lc_db.sessions.begin() as session:
        rotated = tokens.rotate_token(session, box=lc_db.box, actor=ACTOR,
                                      now=utcnow() - dt.timedelta(hours=2),
                                      public_id=created.token.public_id,
                                      expected_version=created.token.version,
                                      overlap=dt.timedelta(hours=1))
    return created, rotated


def test_a_first_use_after_the_deadline_but_before_any_pass_is_told_as_a_switch(
    server: Server, lc_db: Database, run: Cli, standin: SlackStandIn
) -> None:
    """The server posts the notice right after the first use (issue 19: its drain), so the
    pass that comes later ends nothing and posts nothing."""
    created, rotated = _rotated_two_hours_ago(lc_db, "late switch")
    assert server.introspect(created.secret) == {"active": False}
    first_use = utcnow().replace(microsecond=0)
    assert server.introspect(rotated.secret)["active"] is True
    server.settle()  # the first use ended it: the server posts its notice (the drain)
    standin.wait_for("chat.postMessage")
    report = alerts_run(run, utcnow())
    assert report["rotations_ended"] == 0 and told(report, ROTATION) == []
    (dm,) = rotation_notice_posts(standin)  # (the old secret's use raised an alarm too)
    assert "first used by ci-runner" in dm["text"] and "never used" not in dm["text"]
    assert time_after(dm["text"], "switched at") >= first_use
    assert ("retire_old", "ci-runner") in audit_actions(lc_db, created.token.public_id)


def test_past_the_deadline_cancel_and_retire_now_are_refused_and_change_nothing(
    server: Server, lc_db: Database
) -> None:
    created, rotated = _rotated_two_hours_ago(lc_db, "overdue")
    public_id = created.token.public_id
    for end in (rotation.cancel_rotation, rotation.retire_now):
        with pytest.raises(InvalidStateError, match="not being rotated"):
            with lc_db.sessions.begin() as session:
                end(session, actor=ACTOR, public_id=public_id,
                    expected_version=version(lc_db, public_id), now=utcnow())
    # a cancel would have brought the dead secret back and cut off the working one
    assert server.introspect(created.secret) == {"active": False}
    assert server.introspect(rotated.secret)["active"] is True


@pytest.mark.parametrize("overlap", [None, "24h"])
def test_rotating_again_during_an_overlap_stops_the_earlier_old_secret_and_says_so(
    server: Server, lc_db: Database, run: Cli, overlap: str | None
) -> None:
    created = create(lc_db, label="twice")
    public_id = created.token.public_id
    first = run.json("tokens", "rotate", public_id, "--overlap", "7d", "--yes")
    again = run.json("tokens", "rotate", public_id, "--yes",
                     *(("--overlap", overlap) if overlap else ()))
    assert server.introspect(created.secret) == {"active": False}  # stops either way
    if overlap:  # the first rotation's new secret is now the one kept working
        assert server.introspect(first["secret"])["rotation"] == "superseded"
    else:
        assert server.introspect(first["secret"]) == {"active": False}
    assert server.introspect(again["secret"])["active"] is True
    code, out, _ = run("audit", "--token", public_id)
    assert code == 0
    rotate_line = next(line for line in out.splitlines()
                       if " rotate " in line and "also_retired" in line)
    assert f"also_retired={created.token.secret_masked}" in rotate_line


def test_rotating_a_token_disabled_during_an_overlap_audits_the_old_secret_it_retires(
    server: Server, lc_db: Database, run: Cli
) -> None:
    """Enable would have brought the old secret back; a rotation tombstones it instead, and
    the audit says so."""
    created = create(lc_db, label="disabled midway")
    public_id = created.token.public_id
    run.json("tokens", "rotate", public_id, "--overlap", "7d", "--yes")
    assert run("tokens", "disable", public_id, "--yes")[0] == 0
    run.json("tokens", "rotate", public_id, "--yes")
    assert run("tokens", "enable", public_id, "--yes")[0] == 0
    assert server.introspect(created.secret) == {"active": False}
    code, out, _ = run("audit", "--token", public_id)
    assert code == 0 and f"also_retired={created.token.secret_masked}" in out


def test_dead_secrets_presented_raise_one_alarm_per_token_per_day(
    server: Server, lc_db: Database, run: Cli, standin: SlackStandIn
) -> None:
    now = utcnow()
    disabled = create(lc_db, label="CI deploy", channel="CTEAM")
    expired = create(lc_db, label="old job", now=now - dt.timedelta(days=10),
                     expires_on=(now - dt.timedelta(days=4)).date())
    deleted = create(lc_db, label="gone")
    rotated_out = create(lc_db, label="rotated")
    active = create(lc_db, label="healthy")
    with lc_db.sessions.begin() as session:
        tokens.disable_token(session, actor=ACTOR, public_id=disabled.token.public_id,
                             expected_version=disabled.token.version,
                             now=now - dt.timedelta(days=3))
        tokens.delete_token(session, actor=ACTOR, public_id=deleted.token.public_id,
                            expected_version=deleted.token.version, now=now)
        new = tokens.rotate_token(session, box=lc_db.box, actor=ACTOR, now=now,
                                  public_id=rotated_out.token.public_id,
                                  expected_version=rotated_out.token.version)
    for _ in range(14):
        assert server.introspect(disabled.secret) == {"active": False}
    for _ in range(3):
        assert server.introspect(disabled.secret, auth=basic("x", "deploy-credential-456")) == (
            {"active": False})
    for secret in (expired.secret, deleted.secret, rotated_out.secret):
        for _ in range(5):
            assert server.introspect(secret) == {"active": False}
    for _ in range(5):
        assert server.introspect(active.secret)["active"] is True
        assert server.introspect(new.secret)["active"] is True
    server.settle()
    report = alerts_run(run, utcnow())
    assert report["alarms"] == 4 and report["failed"] == 0
    assert len(entries(report, ALARM)) == 8  # four tokens, to owner and channel
    by_label = {a["label"]: a for a in told(report, ALARM)}
    assert set(by_label) == {"CI deploy", "old job", "gone", "rotated"}  # none for active
    assert {label: a["state"] for label, a in by_label.items()} == {
        "CI deploy": "disabled", "old job": "expired", "gone": "deleted",
        "rotated": "rotated out"}
    assert by_label["CI deploy"]["presented"] == 17
    assert by_label["CI deploy"]["destinations"] == [OWNER, "CTEAM"]
    assert by_label["gone"]["destinations"] == [OWNER, "CALERTS"]
    sent = alarm_posts(standin)
    assert len(sent) == 8  # four tokens, each to its owner and a channel
    ci = [p for p in sent if "CI deploy" in p["text"]]
    assert {p["channel"] for p in ci} == {OWNER, "CTEAM"}
    text = ci[0]["text"]
    assert text.startswith(f"`{disabled.token.secret_masked}` (CI deploy, disabled 3 days ago)")
    assert "was presented 17 times in the last 24 hours by ci-runner (14) and deploy-bot (3)" in (
        text)
    buttons = [e["action_id"] for b in ci[0]["blocks"] if b["type"] == "actions"
               for e in b["elements"]]
    assert buttons == ["dead_secret_enable", "table_open"]
    old_job = next(p for p in sent if "old job" in p["text"])
    days = (utcnow() - expired.token.expires_at).days
    assert f"(old job, expired {days} days ago) was presented 5 times" in old_job["text"]
    assert [e["action_id"] for b in old_job["blocks"] if b["type"] == "actions"
            for e in b["elements"]] == ["table_open"]  # Enable is for a disabled token
    gone = next(p for p in sent if "gone" in p["text"])
    assert "deleted" in gone["text"] and "by ci-runner" in gone["text"]
    assert [e["action_id"] for b in gone["blocks"] if b["type"] == "actions"
            for e in b["elements"]] == ["table_open"]
    everything = json.dumps(sent)
    for secret in (disabled.secret, expired.secret, deleted.secret, rotated_out.secret):
        assert secret not in everything
    # more presentations the same day: no second alarm
    assert server.introspect(disabled.secret) == {"active": False}
    server.settle()
    assert told(alerts_run(run, utcnow()), ALARM) == []
    assert len(alarm_posts(standin)) == 8
    # the next day: nothing presented since, nothing to tell ...
    tomorrow = utcnow() + dt.timedelta(days=1, minutes=1)
    assert told(alerts_run(run, tomorrow), ALARM) == []
    # ... but presented again (counted by a process that day), it is told again, once
    with lc_db.engine.begin() as connection:
        add_presentations(connection, counts={
            UseKey(TEAM, disabled.token.public_id, "ci-runner", hour_of(tomorrow), "disabled",
                   disabled.token.secret_masked): 2})
    again = told(alerts_run(run, tomorrow), ALARM)
    assert [(a["label"], a["presented"]) for a in again] == [("CI deploy", 2)]
    assert told(alerts_run(run, tomorrow), ALARM) == []


def test_a_dry_run_lists_the_alarm_and_posts_nothing_the_real_run_then_sends_it(
    server: Server, lc_db: Database, run: Cli, standin: SlackStandIn
) -> None:
    disabled = create(lc_db, label="CI deploy")
    with lc_db.sessions.begin() as session:
        tokens.disable_token(session, actor=ACTOR, public_id=disabled.token.public_id,
                             expected_version=disabled.token.version, now=utcnow())
    for _ in range(3):
        assert server.introspect(disabled.secret) == {"active": False}
    server.settle()
    for _ in range(2):  # a dry run claims nothing: the second one lists it again
        dry = alerts_run(run, utcnow(), "--dry-run")
        assert [(a["label"], a["presented"]) for a in told(dry, ALARM)] == [("CI deploy", 3)]
        assert (dry["alarms"], dry["sent"]) == (1, 0)  # queued (rolled back), not posted
    assert posts(standin) == []
    real = alerts_run(run, utcnow())
    assert [(a["label"], a["presented"]) for a in told(real, ALARM)] == [("CI deploy", 3)]
    assert (real["alarms"], real["sent"], real["failed"]) == (1, 2, 0)  # owner and channel
    assert {p["channel"] for p in alarm_posts(standin)} == {OWNER, "CALERTS"}


def test_a_deleted_tokens_tombstone_is_kept_90_days_then_its_secret_is_unknown(
    server: Server, lc_db: Database, run: Cli, standin: SlackStandIn
) -> None:
    now = utcnow()
    recent = create(lc_db, label="deleted 89 days ago", now=now - dt.timedelta(days=100))
    old = create(lc_db, label="deleted 91 days ago", now=now - dt.timedelta(days=100))
    with lc_db.sessions.begin() as session:
        for created, days in ((recent, 89), (old, 91)):
            tokens.delete_token(session, actor=ACTOR, public_id=created.token.public_id,
                                expected_version=created.token.version,
                                now=now - dt.timedelta(days=days))
    assert alerts_run(run, utcnow())["purged"] == 1  # the older tombstone
    for created in (recent, old):
        for _ in range(2):
            assert server.introspect(created.secret) == {"active": False}
    server.settle()
    alarms = told(alerts_run(run, utcnow()), ALARM)
    assert [(a["label"], a["state"]) for a in alarms] == [("deleted 89 days ago", "deleted")]
    (owner_post,) = [p for p in alarm_posts(standin) if p["channel"] == OWNER]
    assert "(deleted 89 days ago, deleted 89 days ago)" in owner_post["text"]


def test_keys_rotate_reencrypts_the_old_secret_a_cancelled_rotation_restores(
    lc_db: Database, run: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = create(lc_db, label="kept")
    public_id = created.token.public_id
    run.json("tokens", "rotate", public_id, "--overlap", "1h", "--yes")
    _, new_key, _ = run("keys", "generate")
    monkeypatch.setenv("TOKENBOT_SECRET_KEYS", f"{new_key.strip()},{TEST_KEY}")
    code, out, _ = run("keys", "rotate")
    assert code == 0 and "Re-encrypted 2 stored secrets" in out
    monkeypatch.setenv("TOKENBOT_SECRET_KEYS", new_key.strip())
    from bot.config import load_settings

    database = Database(load_settings(_env_file=None, DATABASE_URL=lc_db.engine.url
                                      .render_as_string(hide_password=False),
                                      TOKENBOT_SECRET_KEYS=new_key.strip()), auto_upgrade=False)
    try:
        with database.sessions.begin() as session:
            token = tokens.get_token(session, team_id=TEAM, public_id=public_id)
            rotation.cancel_rotation(session, actor=ACTOR, public_id=public_id,
                                     expected_version=token.version, now=utcnow())
    finally:
        database.dispose()
    code, out, _ = run("tokens", "reveal", public_id)
    assert code == 0 and out.strip() == created.secret


def test_a_first_use_read_before_a_cancel_and_a_new_rotation_retires_nothing(
    lc_db: Database,
) -> None:
    """A request presented rotation 1's new secret; before its retirement was written,
    the rotation was cancelled and a second one started from the same old secret. That
    late retirement must not end rotation 2's overlap (its new secret is another one)."""
    created = create(lc_db)
    public_id, old_digest = created.token.public_id, created.token.secret_digest
    actor, now = ACTOR, utcnow()
    with lc_db.sessions.begin() as session:
        first = tokens.rotate_token(session, box=lc_db.box, actor=actor, public_id=public_id,
                                    expected_version=version(lc_db, public_id), now=now,
                                    overlap=dt.timedelta(hours=1))
        first_digest, token_id = first.token.secret_digest, first.token.id
    with lc_db.sessions.begin() as session:
        rotation.cancel_rotation(session, actor=actor, public_id=public_id,
                                 expected_version=version(lc_db, public_id), now=now)
    with lc_db.sessions.begin() as session:
        second = tokens.rotate_token(session, box=lc_db.box, actor=actor, public_id=public_id,
                                     expected_version=version(lc_db, public_id), now=now,
                                     overlap=dt.timedelta(hours=1))
    with lc_db.sessions.begin() as session:
        assert not rotation.retire_on_first_use(session, token_id=token_id,
                                                old_digest=old_digest, new_digest=first_digest,
                                                caller="late", now=now)
    with lc_db.sessions.begin() as session:
        assert rotation.retire_on_first_use(session, token_id=token_id, old_digest=old_digest,
                                            new_digest=second.token.secret_digest,
                                            caller="ci-runner", now=now)
