"""The App Home tab: the same table with a "Create token" button; actions there redraw Home
(views.publish) and show their confirmation, error or secret on Home."""

from __future__ import annotations

import json

from bot.slack.ids import ActionId
from bot.slack.state import RowRef
from bot.models import TokenStatus
from tests.slack.conftest import (
    OTHER_USER,
    OWNER,
    audit_actions,
    buttons,
    form_values,
    load,
    row_buttons,
    seed,
    texts,
)


def _home(standin, count: int = 1) -> dict:
    call = standin.wait_for("views.publish", count)[count - 1]
    return call.body


def test_opening_home_shows_the_table_with_a_create_button(bot, db, standin):
    created = seed(db, label="home token")
    bot.home_opened(user=OWNER)
    published = _home(standin)
    assert published["user_id"] == OWNER
    view = published["view"]
    assert view["type"] == "home"
    text = texts(view["blocks"])
    assert "home token" in text and created.token.secret_masked in text
    assert "Page 1 of 1, 1 token" in text
    assert "Create token" in [b["text"]["text"] for b in buttons(view["blocks"])]
    assert created.secret not in str(view)


def test_home_with_no_tokens(bot, standin):
    bot.home_opened()
    assert "No tokens yet" in texts(_home(standin)["view"]["blocks"])


def test_messages_tab_is_left_alone(bot, standin):
    import json

    body = json.dumps({"team_id": "T1", "api_app_id": "A1", "type": "event_callback",
                       "event_id": "Ev1", "event_time": 1,
                       "event": {"type": "app_home_opened", "user": OWNER, "channel": "D1",
                                 "tab": "messages", "event_ts": "1.0"}})
    assert bot.send(body, content_type="application/json").status == 200
    bot.settle()
    assert standin.calls_to("views.publish") == []


def test_disable_on_home_redraws_home(bot, db, standin):
    created = seed(db, label="home token")
    bot.home_opened()
    view = _home(standin)["view"]
    bot.click(row_buttons(view["blocks"], created.token.public_id)[ActionId.DISABLE], home=True)
    assert load(db, created.token.public_id).status == TokenStatus.DISABLED
    view = _home(standin, 2)["view"]
    assert "Disabled *home token*" in texts(view["blocks"])
    assert standin.calls_to("response_url") == []


def test_copy_on_home_shows_the_secret_there_until_hidden(bot, db, standin):
    created = seed(db, label="home token")
    bot.home_opened()
    view = _home(standin)["view"]
    bot.click(row_buttons(view["blocks"], created.token.public_id)[ActionId.COPY], home=True)
    view = _home(standin, 2)["view"]
    text = texts(view["blocks"])
    assert f"```{created.secret}```" in text
    assert "never share them publicly or commit them to version control" in text
    assert audit_actions(db, created.token.public_id) == ["create", "reveal"]
    hide = next(b for b in buttons(view["blocks"]) if b["action_id"] == ActionId.HIDE_SECRET)
    bot.click(hide, home=True)
    view = _home(standin, 3)["view"]
    assert created.secret not in str(view) and "home token" in texts(view["blocks"])


def test_create_from_home_shows_the_new_secret_on_home(bot, db, standin):
    bot.home_opened()
    view = _home(standin)["view"]
    create = next(b for b in buttons(view["blocks"]) if b["action_id"] == ActionId.CREATE_OPEN)
    bot.click(create, home=True)
    modal = standin.wait_for("views.open")[-1].body["view"]
    bot.submit(modal, form_values(label="made at home", scope="read"))
    home = _home(standin, 2)["view"]
    text = texts(home["blocks"])
    assert "Created *made at home*" in text
    panel = next(b for b in home["blocks"] if b.get("block_id") == "secret")
    secret = panel["text"]["text"].split("```")[1]
    row = next(b for b in home["blocks"] if b.get("block_id", "").startswith("row:"))
    token = load(db, row["block_id"].split(":", 1)[1])
    assert token.label == "made at home" and token.secret_masked == secret[:10] + "…"
    assert standin.calls_to("response_url") == []


def test_edit_from_home_redraws_home(bot, db, standin):
    created = seed(db, label="before")
    bot.home_opened()
    view = _home(standin)["view"]
    bot.click(row_buttons(view["blocks"], created.token.public_id)[ActionId.EDIT], home=True)
    modal = standin.wait_for("views.open")[-1].body["view"]
    bot.submit(modal, form_values(label="after", scope="read"))
    assert load(db, created.token.public_id).label == "after"
    assert "Updated *after*" in texts(_home(standin, 2)["view"]["blocks"])


def test_a_refusal_on_home_is_shown_on_home(bot, db, standin):
    created = seed(db, label="not yours", owner=OWNER)
    bot.home_opened(user=OTHER_USER)
    view = _home(standin)["view"]
    assert "row_actions:" not in json.dumps(view["blocks"])  # a teammate sees no actions
    forged = {"action_id": ActionId.DELETE, "value": RowRef(public_id=created.token.public_id,
                                                             version=1).encode()}
    bot.click(forged, user=OTHER_USER, home=True)
    published = _home(standin, 2)
    assert published["user_id"] == OTHER_USER
    assert "Only the token's owner" in texts(published["view"]["blocks"])
    assert load(db, created.token.public_id) is not None
