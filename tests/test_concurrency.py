"""Two people acting on the same token at the same moment (real sessions, real threads;
PostgreSQL, and SQLite as the embedded default runs it).

Each side opens its own transaction, reads the token (the version its view was drawn
from), waits at a barrier so that both UPDATE/DELETE statements race, and then acts.
Exactly one wins; the other gets the clear "changed since you looked" error; the row and
the audit log show the winner's action once.

Then two introspection processes writing the same rows at once (last uses, dead-secret
counts), in opposite orders: both writes go through, neither deadlocks.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import select

from bot.errors import NotFoundError, StaleTokenError
from bot.models import AuditAction, Token
from bot.services import audit
from bot.services import tokens
from bot.services.verification import verify
from tests.support.policy import NO_POLICY

TEAM = "T1"
OWNER = tokens.Actor(team_id=TEAM, user_id="UOWNER")
ADMIN = tokens.Actor(team_id=TEAM, user_id="UADMIN", is_admin=True)
ROUNDS = 3


def _do(session, db, settings, now, action: str, actor, public_id: str, version: int) -> Any:
    common = dict(actor=actor, public_id=public_id, expected_version=version, now=now)
    if action == "disable":
        return tokens.disable_token(session, **common)
    if action == "delete":
        return tokens.delete_token(session, **common)
    if action == "rotate":
        return tokens.rotate_token(session, box=db.box, **common)
    if action.startswith("edit"):
        return tokens.edit_token(session, scopes=settings.tokenbot_scopes,
                                 label=f"{action} by {actor.user_id}", **common, policy=NO_POLICY)
    raise AssertionError(action)


def race(db, settings, now, public_id: str, plans: list[tuple[str, tokens.Actor]]):
    """Run each (action, actor) in its own thread and transaction; return the outcomes."""
    barrier = threading.Barrier(len(plans))
    outcomes: list[Any] = [None] * len(plans)

    def run(index: int, action: str, actor: tokens.Actor) -> None:
        try:
            with db.sessions.begin() as session:
                seen = tokens.get_token(session, team_id=TEAM, public_id=public_id)
                version = seen.version
                barrier.wait(timeout=20)
                _do(session, db, settings, now, action, actor, public_id, version)
            outcomes[index] = "ok"
        except (StaleTokenError, NotFoundError) as exc:
            outcomes[index] = exc
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            outcomes[index] = exc
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i, *plan)) for i, plan in enumerate(plans)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a session hung"
    return outcomes


def stored(db, public_id: str):
    with db.sessions() as session:
        return session.scalars(select(Token).where(Token.public_id == public_id)).one_or_none()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("disable", "disable"),
        ("delete", "delete"),
        ("edit", "edit"),
        ("disable", "delete"),
        ("edit", "disable"),
        ("edit", "delete"),
        ("rotate", "rotate"),
    ],
)
def test_simultaneous_changes_one_wins_the_other_is_told(db, settings, now, first, second):
    # PostgreSQL: the second UPDATE waits on the row lock, then matches no row (the version
    # moved on). SQLite (the embedded default) serialises writers with its busy timeout,
    # with the same outcome: both must end in the one clear error.
    for _ in range(ROUNDS):
        with db.sessions.begin() as session:
            created = tokens.create_token(session, box=db.box, actor=OWNER, label="contested",
                                          scope="read", scopes=settings.tokenbot_scopes, now=now,
                                          policy=NO_POLICY)
        pid = created.token.public_id
        plans = [(first, OWNER), (second, ADMIN)]
        outcomes = race(db, settings, now, pid, plans)

        winners = [i for i, outcome in enumerate(outcomes) if outcome == "ok"]
        losers = [outcome for outcome in outcomes if outcome != "ok"]
        assert len(winners) == 1, outcomes
        action, actor = plans[winners[0]]
        assert len(losers) == 1, outcomes
        if isinstance(losers[0], NotFoundError) and action == "delete":
            # The loser looked again only after the delete had committed: the token is
            # gone, and the message says it may have been deleted.
            assert "deleted" in str(losers[0])
        else:
            assert isinstance(losers[0], StaleTokenError), outcomes
            assert "changed since you looked" in str(losers[0])

        token = stored(db, pid)
        with db.sessions() as session:
            history = audit.list_events(session, team_id=TEAM, token_public_id=pid)
        kind = action.rstrip("0123456789")
        assert [e.action for e in history] == [AuditAction(kind), AuditAction.CREATE]
        assert history[0].actor == actor.user_id
        if action == "delete":
            assert token is None
            continue
        assert token.version == 2  # bumped exactly once
        if action == "disable":
            assert token.status == "disabled"
        else:
            assert token.status == "active"
        if action == "edit":
            assert token.label == f"edit by {actor.user_id}"
        else:
            assert token.label == "contested"
        with db.sessions.begin() as session:
            # The loser's change left no trace: exactly one secret works.
            old_works = verify(session, secret=created.secret, now=now) is not None
            assert old_works == (action == "edit")


def test_stale_loser_can_retry_with_the_fresh_version(db, settings, now):
    with db.sessions.begin() as session:
        pid = tokens.create_token(session, box=db.box, actor=OWNER, label="retry", scope="read",
                                  scopes=settings.tokenbot_scopes, now=now,
                                  policy=NO_POLICY).token.public_id
    outcomes = race(db, settings, now, pid, [("edit", OWNER), ("edit", ADMIN)])
    assert sorted(type(o).__name__ for o in outcomes) == ["StaleTokenError", "str"]
    # The loser redraws (reads version 2) and tries again: it goes through.
    with db.sessions.begin() as session:
        fresh = tokens.get_token(session, team_id=TEAM, public_id=pid)
        tokens.disable_token(session, actor=ADMIN, public_id=pid,
                             expected_version=fresh.version, now=now)
    assert stored(db, pid).version == 3


def at_once_in_transactions(db, writes: dict[str, Any]) -> list[BaseException]:
    """Run each write (a function of a connection) in its own thread and transaction,
    all released together, as processes writing at the same moment; the errors raised."""
    barrier = threading.Barrier(len(writes))
    errors: list[BaseException] = []

    def run(write: Any) -> None:
        try:
            with db.engine.begin() as connection:
                barrier.wait(timeout=20)
                write(connection)
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(write,)) for write in writes.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_two_processes_recording_the_same_uses_in_opposite_orders_both_succeed(db, now):
    """Two introspection processes note the same hot tokens in different orders and write
    their uses at the same moment: both writes go through (rows are locked in token
    order), and each token ends with one of the two uses."""
    import datetime as dt

    from bot.services.usage import Use, record_uses

    with db.sessions.begin() as session:
        ids = [tokens.create_token(session, box=db.box, actor=OWNER, label=f"hot {n}",
                                   scope="read", scopes=["read"], now=now,
                                   policy=NO_POLICY).token.id
               for n in range(150)]
    for round_ in range(ROUNDS):
        at = now + dt.timedelta(minutes=2 * (round_ + 1))
        orders = {"A": ids, "B": ids[::-1]}
        assert at_once_in_transactions(db, {
            name: lambda connection, name=name, order=order, at=at: record_uses(
                connection, uses=[Use(i, at, name) for i in order])
            for name, order in orders.items()}) == []
        with db.sessions() as session:
            rows = session.execute(select(Token.last_used_at, Token.last_used_by)
                                   .where(Token.id.in_(ids))).all()
        assert {used for used, _ in rows} == {at} and {by for _, by in rows} <= {"A", "B"}


def test_two_processes_adding_dead_secret_counts_in_opposite_orders_both_succeed(db, now):
    """The same keys counted by two processes, written at the same moment in different
    orders: both upserts go through and the counts add up."""
    from collections import Counter

    from bot.models import DeadSecretUse
    from bot.services.dead_secrets import UseKey, add_presentations, hour_of

    keys = [UseKey(TEAM, f"tok_{n:04d}", "ci", hour_of(now), "disabled", "tkb_ab…")
            for n in range(150)]
    orders = {"A": keys, "B": keys[::-1]}
    for _ in range(ROUNDS):
        assert at_once_in_transactions(db, {
            name: lambda connection, order=order: add_presentations(
                connection, counts=Counter(dict.fromkeys(order, 1)))
            for name, order in orders.items()}) == []
    with db.sessions() as session:
        counts = session.scalars(select(DeadSecretUse.count)).all()
    assert len(counts) == len(keys) and set(counts) == {2 * ROUNDS}
