"""The one codec for what a drawing carries: what is drawn comes back as it was, fits
Slack's limits (2,000 characters for a button's value, 150 for an option's, 3,000 for
``private_metadata``), and anything else is "not found"."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import NotFoundError
from bot.services.listing import StatusFilter
from bot.slack.ids import ActionId
from bot.slack.state import (
    MenuChoice,
    ModalMetadata,
    Origin,
    OriginKind,
    RowRef,
    TableState,
)

MODELS = (TableState, RowRef, MenuChoice, ModalMetadata)
LONGEST_ID = "tok_" + "x" * 28  # 32 characters, the column's width
states = st.builds(
    TableState,
    page=st.integers(1, 2**31 - 1),
    query=st.text(max_size=300),
    status=st.none() | st.sampled_from(StatusFilter),
    owner=st.sampled_from(["", "U1", "W" + "Z" * 30]),
    token=st.sampled_from(["", LONGEST_ID]),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["p", "q", "s", "o", "i", "t", "v", "a", "r", "k", "u", "c", "ts"]),
        inner, max_size=5),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(state=states, version=st.integers(0, 2**31 - 1),
       action=st.sampled_from([ActionId.ROTATE, ActionId.ROTATION_CANCEL, ActionId.ROTATION_RETIRE]))
def test_what_is_drawn_comes_back_and_fits_slacks_limits(state, version, action):
    ref = RowRef(public_id=LONGEST_ID, version=version, state=state)
    assert RowRef.decode(ref.encode()) == ref and len(ref.encode()) <= 2000
    assert TableState.decode(state.encode()) == state
    choice = MenuChoice(action=action, ref=ref).encode()
    assert len(choice) <= 150
    back = MenuChoice.decode(choice)  # the row and action always; a long filter shortened
    assert (back.action, back.ref.public_id, back.ref.version) == (action, LONGEST_ID, version)
    assert back.ref.state.page == state.page and back.ref.state.token == state.token
    assert state.query.startswith(back.ref.state.query.rstrip())
    origin = Origin(kind=OriginKind.MESSAGE, state=state,
                    response_url="https://hooks.slack.com/actions/T1/" + "9" * 200)
    metadata = ModalMetadata(origin=origin, public_id=LONGEST_ID, version=version,
                             action=action)
    assert ModalMetadata.decode(metadata.encode()) == metadata
    assert len(metadata.encode()) <= 3000


def test_a_typed_query_keeps_no_control_character_and_at_most_100_characters():
    assert TableState(query=" dep\x00lo\ny ").query == "deploy"
    assert TableState(query="x" * 500).query == "x" * 100


@settings(max_examples=500, deadline=None)
@given(value=json_values.map(json.dumps) | st.text(max_size=40) | json_values)
def test_anything_else_is_not_found(value):
    for model in MODELS:
        try:
            model.decode(value)
        except NotFoundError:
            pass


@pytest.mark.parametrize("value", [
    None, 7, "", "[", "[" * 5000, '["tok_a",1,1,""]', '{"t":"tok_a","v":1,"x":"' + "y" * 3000 + '"}',
    '{"t":"tok_a","v":2147483648}', '{"t":"tok a","v":1}', '{"t":"tok_a","v":1,"s":{"o":"<!here>"}}',
])
def test_crafted_row_values_are_not_found(value):
    with pytest.raises(NotFoundError):
        RowRef.decode(value)


def test_a_digest_origin_without_its_message_is_not_found():
    with pytest.raises(NotFoundError):
        ModalMetadata.decode('{"o":{"k":"d"},"t":"tok_a","v":1}')
