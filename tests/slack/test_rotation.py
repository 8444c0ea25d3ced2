"""Rotation with overlap and dead-secret alarms in Slack, through the real Bolt pipeline:
"Rotate…" opens its modal (the guide's warning; immediately, or keep the old secret until
the new one is used), a rotating row says so and offers "Retire old secret now" and
"Cancel rotation" (confirmed), and the alarm's "Enable" and "Open table" buttons work."""

from __future__ import annotations

import datetime as dt

from bot.alerts import scheduler
from bot.config import Settings
from bot.services import rotation
from bot.services.dead_secrets import UseKey, add_presentations, hour_of
from bot.services.usage import Use, record_uses
from bot.services.verification import verify
from bot.slack.client import make_web_client
from bot.slack.ids import ActionId
from bot.models import TokenStatus
from bot.texts import ROTATION_IN_PROGRESS_NOTE
from tests.lifecycle_support import introspect_at
from tests.slack.conftest import (
    INTROSPECTION_SECRET,
    OTHER_USER,
    OWNER,
    TEAM,
    audit_actions,
    choose,
    choose_and_confirm,
    form_values,
    last_response,
    load,
    rotate_by_modal,
    row_buttons,
    row_menu,
    seed,
    texts,
    utcnow,
)


def _secret_shown(standin) -> str:
    call = next(c for c in reversed(standin.calls_to("response_url"))
                if "secret" in [b.get("block_id") for b in c.body.get("blocks", [])])
    assert call.body["replace_original"] is False and call.body["response_type"] == "ephemeral"
    return call.body["blocks"][0]["text"]["text"].split("```")[1]


def _row_text(blocks, public_id: str) -> str:
    return next(b["text"]["text"] for b in blocks if b.get("block_id") == f"row:{public_id}")


def test_rotate_modal_with_overlap_keeps_the_old_secret_until_the_new_one_is_used(
    bot, db, standin, table
):
    created = seed(db, label="ci deploy")
    public_id = created.token.public_id
    modal = rotate_by_modal(bot, standin, table(), public_id,
                            overlap="24h")
    assert modal["callback_id"] == "token_rotate_modal"
    assert modal["submit"]["text"] == "Rotate Token"
    body = texts(modal["blocks"])
    assert "stops working immediately" in body and "first used" in body
    options = next(b for b in modal["blocks"] if b.get("block_id") == "rotate_overlap")
    assert [o["text"]["text"] for o in options["element"]["options"]] == [
        "at most 1 hour", "at most 24 hours", "at most 7 days"]
    new_secret = _secret_shown(standin)
    now = utcnow()
    with db.sessions.begin() as session:
        assert verify(session, secret=created.secret, now=now).superseded_until is not None
        assert verify(session, secret=new_secret, now=now).public_id == public_id
    blocks = table()
    row = _row_text(blocks, public_id)
    assert "Rotating: old secret" in row and "or until the new one is used" in row
    menu = row_menu(blocks, public_id)
    retire, cancel = menu[ActionId.ROTATION_RETIRE], menu[ActionId.ROTATION_CANCEL]
    assert retire["text"]["text"] == "Retire old secret now…"
    assert cancel["text"]["text"] == "Cancel rotation…"
    # someone else may not end it (nor see the menu: a crafted choice is refused)
    choose(bot, blocks, public_id, ActionId.ROTATION_RETIRE, user=OTHER_USER)
    assert "or a workspace admin can rotate it" in texts(last_response(standin).body["blocks"])
    with db.sessions.begin() as session:
        assert verify(session, secret=created.secret, now=utcnow()) is not None
    modal = choose_and_confirm(bot, standin, blocks, public_id, ActionId.ROTATION_RETIRE)
    assert "stops working immediately" in texts(modal["blocks"])
    assert modal["title"]["text"] == "Retire old secret?"
    redrawn = last_response(standin).body["blocks"]
    assert "Retired the old secret of *ci deploy*" in texts(redrawn)
    assert "Rotating" not in _row_text(redrawn, public_id)
    assert ActionId.ROTATION_RETIRE not in row_menu(redrawn, public_id)
    with db.sessions.begin() as session:
        assert verify(session, secret=created.secret, now=utcnow()) is None
    assert audit_actions(db, public_id) == ["create", "rotate", "retire_old"]


def test_cancel_rotation_keeps_the_old_secret(bot, db, standin, table):
    created = seed(db, label="nightly")
    public_id = created.token.public_id
    rotate_by_modal(bot, standin, table(), public_id,
                    overlap="1h")
    new_secret = _secret_shown(standin)
    modal = choose_and_confirm(bot, standin, table(), public_id, ActionId.ROTATION_CANCEL)
    assert "discarded" in texts(modal["blocks"])
    # one "Cancel" only: the close button says what it keeps
    assert (modal["close"]["text"], modal["submit"]["text"]) == ("Keep rotating",
                                                                 "Cancel Rotation")
    redrawn = last_response(standin).body["blocks"]
    assert "Cancelled the rotation of *nightly*" in texts(redrawn)
    with db.sessions.begin() as session:
        kept = verify(session, secret=created.secret, now=utcnow())
        assert kept is not None and kept.superseded_until is None
        assert verify(session, secret=new_secret, now=utcnow()) is None
    assert audit_actions(db, public_id) == ["create", "rotate", "cancel_rotation"]


def test_rotate_modal_immediately_cuts_the_old_secret(bot, db, standin, table):
    created = seed(db, label="now")
    rotate_by_modal(bot, standin, table(), created.token.public_id)
    _secret_shown(standin)
    with db.sessions.begin() as session:
        assert verify(session, secret=created.secret, now=utcnow()) is None
    assert "Rotating" not in _row_text(table(), created.token.public_id)


def test_the_alarms_buttons_enable_the_token_and_open_the_table(
    bot, db, standin, slack_settings: Settings
):
    created = seed(db, label="CI deploy", disabled=True)
    public_id = created.token.public_id
    # midday: "later the same day" must not cross midnight (UTC) whenever the test runs
    now = utcnow().replace(hour=12, minute=0, second=0, microsecond=0)

    def present(times: int, at: dt.datetime) -> None:
        with db.engine.begin() as connection:
            add_presentations(connection, counts={UseKey(
                TEAM, public_id, "ci-runner", hour_of(at), "disabled",
                created.token.secret_masked): times})

    def run_pass(at: dt.datetime, worker: str) -> list[str]:
        report = scheduler.run_pass(settings=slack_settings, database=db,
                                    client=make_web_client(slack_settings), now=at,
                                    worker=worker).to_dict()
        return [entry["label"] for each in report["destinations"] for entry in each["tokens"]
                if entry["kind"] == "dead_secret_alarm"]

    present(14, now)
    assert run_pass(now, "w") == ["CI deploy"]
    (dm,) = [c.body for c in standin.calls_to("chat.postMessage")]
    assert dm["channel"] == OWNER
    assert "was presented 14 times in the last 24 hours by ci-runner" in dm["text"]
    # presented again while still disabled, a second pass the same day: no second alarm
    later = now + dt.timedelta(minutes=30)
    present(3, later)
    assert run_pass(later, "w2") == []
    assert len(standin.calls_to("chat.postMessage")) == 1
    buttons = {e["action_id"]: e for b in dm["blocks"] if b["type"] == "actions"
               for e in b["elements"]}
    bot.click(buttons[ActionId.OPEN_TABLE])
    shown = last_response(standin).body
    assert shown["replace_original"] is False  # the alarm stays; the table is for the clicker
    assert f"row:{public_id}" in [b.get("block_id") for b in shown["blocks"]]
    bot.click(buttons[ActionId.DEAD_ENABLE], user=OTHER_USER)  # not theirs: refused, told
    assert load(db, public_id).status == TokenStatus.DISABLED
    assert "or a workspace admin can enable it" in texts(last_response(standin).body["blocks"])
    bot.click(buttons[ActionId.DEAD_ENABLE])
    assert load(db, public_id).status == TokenStatus.ACTIVE
    assert "Enabled *CI deploy*" in texts(last_response(standin).body["blocks"])
    assert last_response(standin).body["replace_original"] is False


def test_the_row_names_the_caller_that_last_used_the_token(bot, db, standin, table):
    created = seed(db, label="used")
    with db.engine.begin() as connection:
        record_uses(connection, uses=[Use(created.token.id, utcnow() - dt.timedelta(minutes=3),
                                          "ci-runner")])
    row = _row_text(table(), created.token.public_id)
    assert "Last used <!date^" in row and "by ci-runner" in row


def test_an_edit_made_stale_by_the_new_secrets_first_use_names_the_caller(
    bot, db, standin, table
):
    """A service's first use of the new secret ends the overlap (a change of the token):
    an Edit form opened before it is answered with that, naming the caller, not a user."""
    created = seed(db, label="ci deploy")
    public_id = created.token.public_id
    rotate_by_modal(bot, standin, table(), public_id, overlap="24h")
    new_secret = _secret_shown(standin)
    bot.click(row_buttons(table(), public_id)[ActionId.EDIT])
    view = standin.wait_for("views.open")[-1].body["view"]
    with db.sessions.begin() as session:
        token = load(db, public_id)
        found = verify(session, secret=new_secret, now=utcnow())
        assert found is not None and token is not None
        assert rotation.retire_on_first_use(
            session, token_id=token.id, old_digest=token.previous_secret_digest,
            new_digest=token.secret_digest, caller="ci-runner", now=utcnow())
    bot.submit(view, form_values(label="renamed", scope="read"))
    notice = texts(bot.acks[-1]["view"]["blocks"][:1])
    said = "This token changed since you looked: *ci-runner* retired the old secret of it"
    assert said in notice


def test_rotating_during_a_rotation_warns_that_its_old_secret_stops(bot, db, standin, table):
    created = seed(db, label="twice")
    public_id = created.token.public_id
    first = rotate_by_modal(bot, standin, table(), public_id, overlap="24h")
    assert ROTATION_IN_PROGRESS_NOTE not in texts(first["blocks"])
    second = rotate_by_modal(bot, standin, table(), public_id)  # immediately
    assert f"{ROTATION_IN_PROGRESS_NOTE} (`{created.token.secret_masked}`)" in texts(
        second["blocks"])
    with db.sessions.begin() as session:
        assert verify(session, secret=created.secret, now=utcnow()) is None


def test_the_rotate_modal_over_http_keeps_the_old_secret_for_the_time_chosen(
    served, db, standin
):
    """Through the product's HTTP server: the table, "Rotate…", its modal submitted with
    "at most 24 hours", then /introspect of both secrets on the same server."""
    created = seed(db, label="ci deploy")
    public_id = created.token.public_id
    served.command("")
    blocks = standin.wait_for("response_url", 1)[-1].body["blocks"]
    before = utcnow()
    rotate_by_modal(served, standin, blocks, public_id, overlap="24h")
    after = utcnow()
    new_secret = _secret_shown(standin)
    auth = f"Bearer {INTROSPECTION_SECRET}"
    old = introspect_at(served.address, created.secret, auth)
    assert old["active"] is True and old["rotation"] == "superseded"
    assert int((before + dt.timedelta(hours=24)).timestamp()) <= old["exp"] <= int(
        (after + dt.timedelta(hours=24)).timestamp())
    new = introspect_at(served.address, new_secret, auth)
    assert new["active"] is True and "rotation" not in new and new["client_id"] == public_id
    assert introspect_at(served.address, created.secret, auth) == {"active": False}
