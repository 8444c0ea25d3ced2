"""Fuzzing Slack's side: 1,000 generated payloads of each kind Slack sends (clicks, modal
submissions, slash commands, events), signed, through the HTTP layer's parsing and Bolt's
real pipeline. None may answer with a 5xx, log an unexpected error or a traceback, or
change anything (the fuzzing user owns nothing and is no admin)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.models import AuditEvent, Token
from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.slack.conftest import FORM, TEAM, seed
from tests.support.signing import form_body, interactive_body

pytestmark = pytest.mark.slow  # 4,000 requests through the whole pipeline

FUZZER = "UFUZZ"  # owns nothing, is no admin: nothing it sends may change anything
EXAMPLES = settings(max_examples=1000, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=6,
)
texts = st.text(max_size=30)


def _values(public_id: str) -> st.SearchStrategy[Any]:
    """Button and option values: ours in every shape (right token, odd versions, pages and
    filters; a row, a table, a menu choice), the lists they once were, and anything else."""
    numbers = st.integers() | st.just(2**63) | st.just(-1) | json_values
    state = st.fixed_dictionaries({}, optional={
        "p": numbers, "q": texts | json_values, "s": st.sampled_from(["active", "x"]),
        "o": st.sampled_from([FUZZER, "U1>", ""]), "i": st.sampled_from([public_id, "?"])})
    row = st.fixed_dictionaries({"t": st.sampled_from([public_id, "tok_nope", ""]),
                                 "v": numbers}, optional={"s": state | json_values})
    choice = st.fixed_dictionaries({"a": st.sampled_from([a.value for a in ActionId]) | texts,
                                    "r": row | json_values})
    ours = (row | state | choice).map(json.dumps)
    lists = st.tuples(st.sampled_from([public_id, "x"]), numbers, numbers, texts).map(
        lambda t: json.dumps(list(t)))
    return ours | lists | texts | json_values


@pytest.fixture
def errors() -> Iterator[list[logging.LogRecord]]:
    """Every record at ERROR or with a traceback, from any logger."""
    found: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR or record.exc_info:
                found.append(record)

    handler = Catch(level=logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield found
    finally:
        root.removeHandler(handler)


def _token(db: Any) -> str:
    """The one token there is (its owner is not the fuzzer), seeded on first use."""
    with db.sessions() as session:
        found = session.scalar(select(Token.public_id))
    return found or seed(db, label="fuzzed").token.public_id


def _counts(db: Any) -> tuple[int, int]:
    with db.sessions() as session:
        return (session.scalar(select(func.count()).select_from(Token)) or 0,
                session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


def _send(bot: Any, body: str, content_type: str) -> int:
    """What the server answers: its own 4xx, or Bolt's status once the work is done."""
    status = bot.send(body, content_type=content_type).status
    bot.settle()
    return status


def _clean(bot: Any, db: Any, errors: list[logging.LogRecord], before: tuple[int, int],
           status: int) -> None:
    assert status < 500
    assert not errors, [(r.getMessage(), logging.Formatter().formatException(r.exc_info))
                        for r in errors if r.exc_info][:1] or [r.getMessage() for r in errors]
    assert _counts(db) == before


@EXAMPLES
@given(data=st.data())
def test_clicks(bot, db, standin, errors, data):
    errors.clear()
    public_id = _token(db)
    before = _counts(db)
    action = st.fixed_dictionaries({
        "action_id": st.sampled_from([a.value for a in ActionId]) | texts,
        "block_id": texts,
        "value": _values(public_id),
        "selected_option": st.fixed_dictionaries({"value": _values(public_id)}) | json_values,
        "type": st.sampled_from(["button", "static_select", "overflow"]),
    })
    payload = {
        "type": "block_actions",
        "user": {"id": FUZZER, "team_id": TEAM},
        "team": {"id": TEAM},
        "trigger_id": "1.1.fuzz",
        # the stand-in's, or anything but text (nothing generated may leave the machine)
        "response_url": data.draw(st.just(bot.next_response_url()) | json_values.filter(
            lambda value: not isinstance(value, str))),
        "actions": data.draw(st.lists(action, min_size=1, max_size=2) | json_values),
        "container": data.draw(st.sampled_from([
            {"type": "message", "channel_id": "C1", "message_ts": "1.1"},
            {"type": "view", "view_id": "V1"},
        ]) | json_values),
        "view": data.draw(st.just({"type": "home", "id": "V1"}) | json_values),
        "channel": {"id": "C1"},
    }
    _clean(bot, db, errors, before, _send(bot, interactive_body(payload), FORM))


@EXAMPLES
@given(data=st.data())
def test_modal_submissions(bot, db, standin, errors, data):
    errors.clear()
    public_id = _token(db)
    before = _counts(db)
    origin = st.fixed_dictionaries({"k": st.sampled_from(["m", "h", "c", "d", "x"]) | json_values},
                                   optional={"s": st.fixed_dictionaries({"p": st.integers()})
                                             | json_values,
                                             "u": st.just(bot.next_response_url()),
                                             "c": st.just("C1"), "ts": st.just("1.1")})
    metadata = st.fixed_dictionaries({
        "o": origin | json_values,
        "t": st.sampled_from([public_id, "tok_nope"]) | json_values,
        "v": st.integers() | json_values,
    }, optional={"a": st.sampled_from([a.value for a in ActionId]) | json_values}).map(json.dumps)
    state = st.dictionaries(st.sampled_from([b.value for b in BlockId]) | texts,
                            st.dictionaries(st.sampled_from([a.value for a in ActionId]),
                                            json_values, max_size=2), max_size=4)
    payload = {
        "type": "view_submission",
        "user": {"id": FUZZER, "team_id": TEAM},
        "team": {"id": TEAM},
        "view": {
            "id": "V1", "type": "modal",
            "callback_id": data.draw(st.sampled_from([c.value for c in CallbackId]) | texts),
            "private_metadata": data.draw(metadata | texts | st.just("[" * 5000)),
            "state": {"values": data.draw(state | json_values)},
        },
    }
    _clean(bot, db, errors, before, _send(bot, interactive_body(payload), FORM))


@EXAMPLES
@given(text=st.text(max_size=120), user=st.sampled_from([FUZZER, "", "U" * 40]))
def test_slash_commands(bot, db, standin, errors, text, user):
    errors.clear()
    before = _counts(db)
    body = form_body({"command": "/tokens", "text": text, "user_id": user, "team_id": TEAM,
                      "response_url": bot.next_response_url(), "trigger_id": "1.1.fuzz",
                      "channel_id": "C1"})
    status = _send(bot, body, FORM)
    assert status < 500 and not errors and _counts(db) == before


@EXAMPLES
@given(event=st.fixed_dictionaries({
    "type": st.sampled_from(["app_home_opened", "message", "x"]) | json_values,
    "user": st.sampled_from([FUZZER, ""]) | json_values,
    "tab": st.sampled_from(["home", "messages"]) | json_values,
}))
def test_events(bot, db, standin, errors, event):
    errors.clear()
    before = _counts(db)
    body = json.dumps({"type": "event_callback", "team_id": TEAM, "api_app_id": "A1",
                       "event": event, "event_id": "Ev1", "event_time": 1})
    _clean(bot, db, errors, before, _send(bot, body, "application/json"))
