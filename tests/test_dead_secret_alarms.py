"""What a dead-secret alarm says, through HTTP on SQLite and PostgreSQL: the secret that was
presented (its masked prefix) and why it did not work when it was presented, recorded with
the count, not guessed from the token's state at the pass; and since when it has been so
(the disable, the expiry, the tombstone), not the token's last change."""

from __future__ import annotations

import datetime as dt

from bot.db import Database
from bot.models import utcnow
from bot.services import rotation
from bot.services import tokens
from tests.lifecycle_support import (
    ACTOR,
    Cli,
    Server,
    alarm_posts,
    alerts_run,
    create,
    told,
    version,
)
from tests.support.slack_standin import SlackStandIn


def test_a_secret_that_works_again_is_not_told_and_the_rotated_out_one_is(
    server: Server, lc_db: Database, run: Cli, standin: SlackStandIn
) -> None:
    now = utcnow()
    created = create(lc_db, label="CI deploy")
    public_id = created.token.public_id
    with lc_db.sessions.begin() as session:
        new = tokens.rotate_token(session, box=lc_db.box, actor=ACTOR, now=now,
                                  public_id=public_id, expected_version=created.token.version)
    with lc_db.sessions.begin() as session:
        tokens.disable_token(session, actor=ACTOR, public_id=public_id,
                             expected_version=version(lc_db, public_id), now=now)
    for _ in range(4):  # the current secret, while its token is disabled
        assert server.introspect(new.secret) == {"active": False}
    for _ in range(2):  # the secret the rotation replaced
        assert server.introspect(created.secret) == {"active": False}
    with lc_db.sessions.begin() as session:
        tokens.enable_token(session, actor=ACTOR, public_id=public_id,
                            expected_version=version(lc_db, public_id), now=now)
    assert server.introspect(new.secret)["active"] is True
    server.settle()
    (alarm,) = told(alerts_run(run, utcnow()), "dead_secret_alarm")
    assert (alarm["state"], alarm["presented"], alarm["masked"]) == (
        "rotated out", 2, created.token.secret_masked)
    (dm, _channel) = alarm_posts(standin)
    assert dm["text"].startswith(f"`{created.token.secret_masked}` (CI deploy, rotated out ")
    assert "was presented 2 times" in dm["text"]
    assert [e["action_id"] for b in dm["blocks"] if b["type"] == "actions"
            for e in b["elements"]] == ["table_open"]  # it is enabled: nothing to enable


def test_the_alarm_shows_the_prefix_of_the_secret_presented(
    server: Server, lc_db: Database, run: Cli, standin: SlackStandIn
) -> None:
    now = utcnow()
    created = create(lc_db, label="nightly")
    public_id = created.token.public_id
    with lc_db.sessions.begin() as session:
        new = tokens.rotate_token(session, box=lc_db.box, actor=ACTOR, now=now,
                                  public_id=public_id, expected_version=created.token.version,
                                  overlap=dt.timedelta(days=7))
    with lc_db.sessions.begin() as session:  # disabled during the overlap: both stop
        tokens.disable_token(session, actor=ACTOR, public_id=public_id,
                             expected_version=version(lc_db, public_id), now=now)
    for _ in range(3):
        assert server.introspect(created.secret) == {"active": False}
    server.settle()
    (alarm,) = told(alerts_run(run, utcnow()), "dead_secret_alarm")
    assert (alarm["state"], alarm["presented"]) == ("disabled", 3)
    assert alarm["masked"] == created.token.secret_masked != new.token.secret_masked
    (dm, _channel) = alarm_posts(standin)
    assert dm["text"].startswith(f"`{created.token.secret_masked}` (nightly, disabled just now)")
    assert new.token.secret_masked not in dm["text"]


def test_disabled_since_is_when_it_was_disabled_not_its_last_change(
    server: Server, lc_db: Database, run: Cli, standin: SlackStandIn
) -> None:
    now = utcnow()
    three_days_ago = now - dt.timedelta(days=3)
    created = create(lc_db, label="export", now=three_days_ago - dt.timedelta(hours=1))
    public_id = created.token.public_id
    with lc_db.sessions.begin() as session:
        new = tokens.rotate_token(session, box=lc_db.box, actor=ACTOR, now=three_days_ago,
                                  public_id=public_id, expected_version=created.token.version,
                                  overlap=dt.timedelta(hours=1))
    with lc_db.sessions.begin() as session:
        tokens.disable_token(session, actor=ACTOR, public_id=public_id,
                             expected_version=version(lc_db, public_id), now=three_days_ago)
    with lc_db.sessions.begin() as session:  # a late pass ends the rotation an hour ago
        assert rotation.end_overdue_rotations(session, now=now - dt.timedelta(hours=1)) == 1
    for _ in range(2):
        assert server.introspect(new.secret) == {"active": False}
    server.settle()
    (alarm,) = told(alerts_run(run, utcnow()), "dead_secret_alarm")
    assert alarm["state"] == "disabled"
    (dm, _channel) = alarm_posts(standin)
    assert dm["text"].startswith(f"`{new.token.secret_masked}` (export, disabled 3 days ago)")
