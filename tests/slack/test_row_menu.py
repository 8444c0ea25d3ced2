"""At most the guide's four buttons per row; every other row action in one "More…" menu
whose choice that cuts access is confirmed in a modal (the guide's warnings, the guide's
confirm label) before it runs."""

from __future__ import annotations

from bot.crypto import has_valid_checksum
from bot.models import TokenStatus
from bot.services import tokens
from bot.slack.ids import ActionId
from bot.slack.state import MenuChoice, RowRef
from bot.texts import CONFIRMATIONS, Lifecycle
from tests.slack.conftest import (
    ADMIN,
    OTHER_USER,
    OWNER,
    TEAM,
    audit_actions,
    choose,
    choose_and_confirm,
    last_response,
    load,
    row_menu,
    seed,
    texts,
    utcnow,
)
from tests.support.blockkit import MESSAGE_BLOCK_LIMIT


def test_a_page_of_ten_rows_has_at_most_forty_buttons_and_ten_menus(bot, db, table):
    for number in range(12):
        seed(db, label=f"token {number}", disabled=number % 3 == 0)
    blocks = table()
    assert len(blocks) <= MESSAGE_BLOCK_LIMIT
    rows = [b for b in blocks if b.get("block_id", "").startswith("row_actions:")]
    assert len(rows) == 10
    for row in rows:
        kinds = [e["type"] for e in row["elements"]]
        assert kinds.count("button") <= 4 and kinds.count("overflow") == 1
        assert {e["text"]["text"] for e in row["elements"] if e["type"] == "button"} <= {
            "Copy", "Edit", "Disable", "Enable", "Delete"}
        (menu,) = [e for e in row["elements"] if e["type"] == "overflow"]
        assert "confirm" not in menu  # one confirm could not fit every option
        assert all(len(option["value"]) <= 150 for option in menu["options"])


def test_rotate_from_the_menu_asks_in_a_modal_then_rotates(bot, db, standin, table):
    created = seed(db, label="rotating <b>")
    public_id = created.token.public_id
    blocks = table()
    response = choose(bot, blocks, public_id, ActionId.ROTATE)
    assert response.status == 200 and not response.body
    modal = standin.wait_for("views.open")[-1].body
    view = modal["view"]
    assert modal["trigger_id"].endswith(".trigger")
    assert view["type"] == "modal" and view["title"]["text"] == "Rotate token?"
    assert view["submit"]["text"] == CONFIRMATIONS[Lifecycle.ROTATE].confirm == "Rotate Token"
    assert view["close"]["text"] == "Cancel"
    warning = texts(view["blocks"])
    for line in CONFIRMATIONS[Lifecycle.ROTATE].lines:
        assert line in warning
    assert "rotating &lt;b&gt;" in warning and created.token.secret_masked in warning
    # nothing happened yet: asking is not doing
    assert load(db, public_id).secret_digest == created.token.secret_digest
    assert audit_actions(db, public_id) == ["create"]

    bot.submit(view, {})
    assert bot.acks[-1:] == [] or bot.acks[-1].get("response_action") is None  # closed
    secret_call = next(c for c in standin.calls_to("response_url")
                       if "secret" in [b.get("block_id") for b in c.body.get("blocks", [])])
    new_secret = secret_call.body["blocks"][0]["text"]["text"].split("```")[1]
    assert has_valid_checksum(new_secret) and new_secret != created.secret
    redrawn = [c for c in standin.calls_to("response_url") if c.body.get("replace_original")]
    assert "Rotated *rotating &lt;b&gt;*" in texts(redrawn[-1].body["blocks"])
    assert audit_actions(db, public_id) == ["create", "rotate"]


def test_closing_the_confirmation_changes_nothing(bot, db, standin, table):
    created = seed(db, label="kept")
    choose(bot, table(), created.token.public_id, ActionId.ROTATE)
    standin.wait_for("views.open")  # the user presses Cancel: Slack sends nothing
    assert load(db, created.token.public_id).secret_digest == created.token.secret_digest
    assert audit_actions(db, created.token.public_id) == ["create"]


def test_rotate_from_the_menu_on_home_shows_the_secret_on_home(bot, db, standin):
    created = seed(db, label="home rotation")
    bot.home_opened()
    view = standin.wait_for("views.publish")[-1].body["view"]
    choose_and_confirm(bot, standin, view["blocks"], created.token.public_id, ActionId.ROTATE,
                       home=True)
    home = standin.wait_for("views.publish", 2)[-1].body["view"]
    assert "Rotated *home rotation*" in texts(home["blocks"])
    panel = next(b for b in home["blocks"] if b.get("block_id") == "secret")
    assert has_valid_checksum(panel["text"]["text"].split("```")[1])
    assert standin.calls_to("response_url") == []


def test_a_choice_that_went_stale_while_the_modal_was_open_is_refused(bot, db, standin, table):
    created = seed(db, label="contested")
    public_id = created.token.public_id
    choose(bot, table(), public_id, ActionId.ROTATE)
    view = standin.wait_for("views.open")[-1].body["view"]
    with db.sessions.begin() as session:  # an admin disables it meanwhile
        tokens.disable_token(session,
                             actor=tokens.Actor(team_id=TEAM, user_id=ADMIN, is_admin=True),
                             public_id=public_id, expected_version=created.token.version,
                             now=utcnow())
    bot.submit(view, {})
    text = texts(last_response(standin).body["blocks"])
    assert f"This token changed since you looked: <@{ADMIN}> disabled it" in text
    assert last_response(standin).body["replace_original"] is True
    token = load(db, public_id)
    assert token.status == TokenStatus.DISABLED
    assert token.secret_digest == created.token.secret_digest


def test_a_forged_choice_is_refused_before_any_question(bot, db, standin, table):
    created = seed(db, label="not yours", owner=OWNER)
    public_id = created.token.public_id
    option = row_menu(table(), public_id)[ActionId.ROTATE]  # drawn for the owner
    bot.click({"action_id": ActionId.ROW_MORE, "type": "overflow"}, selected_option=option,
              user=OTHER_USER)
    assert standin.calls_to("views.open") == []
    assert (f"Only the token's owner (<@{OWNER}>) or a workspace admin can rotate it"
            in texts(last_response(standin).body["blocks"]))
    # an option naming an action that is no menu action, or garbage, is not found
    delete = MenuChoice(action=ActionId.DELETE, ref=RowRef(public_id=public_id, version=1))
    for value in (delete.encode(), "garbage", '["x"]', '{"a":"token_rotate"}'):
        bot.click({"action_id": ActionId.ROW_MORE, "type": "overflow"},
                  selected_option={"text": {"type": "plain_text", "text": "x"}, "value": value})
        assert "not found" in texts(last_response(standin).body["blocks"])
    assert load(db, public_id).secret_digest == created.token.secret_digest
    assert audit_actions(db, public_id) == ["create"]


def test_a_long_label_filter_still_fits_the_menu_options(bot, db, table):
    label = "ж" * 60 + " deploy " + '"' * 30
    created = seed(db, label=label)
    blocks = table(label)
    option = row_menu(blocks, created.token.public_id)[ActionId.ROTATE]
    assert len(option["value"]) <= 150
    assert MenuChoice.decode(option["value"]).ref.public_id == created.token.public_id
