"""Who may act, decided from the signed payload's user and team (never button values):
non-owners, forged and cross-team ids, stale views, forged or replayed requests."""

from __future__ import annotations

import functools
import time

import pytest

from bot.slack.ids import ActionId
from bot.slack.state import RowRef
from bot.models import TokenStatus
from bot.services import tokens
from tests.slack.conftest import (
    ADMIN,
    OTHER_TEAM,
    OTHER_USER,
    OWNER,
    SIGNING_SECRET,
    TEAM,
    audit_actions,
    form_values,
    last_response,
    load,
    choose,
    row_buttons,
    row_menu,
    seed,
    texts,
    utcnow,
)
from tests.support.signing import form_body, signed_headers
from tests.support.policy import NO_POLICY

ACTIONS = [ActionId.COPY, ActionId.EDIT, ActionId.DISABLE, ActionId.DELETE, ActionId.ROTATE]
VERBS = {ActionId.COPY: "copy", ActionId.EDIT: "edit", ActionId.DISABLE: "disable",
         ActionId.DELETE: "delete", ActionId.ROTATE: "rotate"}


def test_a_teammates_table_has_no_actions_on_others_rows_and_an_admins_has(bot, db, table):
    theirs = seed(db, label="owner's token", owner=OWNER)
    own = seed(db, label="teammate's token", owner=OTHER_USER)
    blocks = table(user=OTHER_USER)  # everyone sees the workspace's masked table
    row = next(b for b in blocks if b.get("block_id") == f"row:{theirs.token.public_id}")
    assert "owner's token" in row["text"]["text"] and f"<@{OWNER}>" in row["text"]["text"]
    assert f"`{theirs.token.secret_masked}`" in row["text"]["text"]
    with pytest.raises(AssertionError, match="no row"):
        row_buttons(blocks, theirs.token.public_id)
    assert list(row_buttons(blocks, own.token.public_id)) == [
        ActionId.COPY, ActionId.EDIT, ActionId.DISABLE, ActionId.DELETE, ActionId.ROW_MORE]
    for user in (ADMIN, OWNER):
        mine = table(user=user)
        assert list(row_buttons(mine, theirs.token.public_id)) == [
            ActionId.COPY, ActionId.EDIT, ActionId.DISABLE, ActionId.DELETE, ActionId.ROW_MORE]
        # Reassign… is for admins only
        assert list(row_menu(mine, theirs.token.public_id)) == (
            [ActionId.ROTATE, ActionId.REASSIGN] if user == ADMIN else [ActionId.ROTATE])
    assert ("row_actions:" + own.token.public_id) in str(table(user=ADMIN))
    assert ("row_actions:" + own.token.public_id) not in str(table(user=OWNER))


@pytest.mark.parametrize("action", ACTIONS)
def test_a_non_owner_is_told_who_can_and_nothing_changes(bot, db, standin, table, action):
    """A click forged for a row the teammate was not offered is refused all the same."""
    created = seed(db, label="mine", owner=OWNER)
    public_id = created.token.public_id
    before = load(db, public_id)
    response = bot.click(_button(action, public_id), user=OTHER_USER)
    assert response.status == 200 and not response.body  # acknowledged, then answered
    answer = texts(last_response(standin).body["blocks"])
    assert (
        f"Only the token's owner (<@{OWNER}>) or a workspace admin can {VERBS[action]} it"
        in answer
    )
    assert last_response(standin).body["replace_original"] is True  # the table, redrawn
    after = load(db, public_id)
    assert (after.version, after.status, after.secret_digest) == (
        before.version, before.status, before.secret_digest)
    assert audit_actions(db, public_id) == ["create"]
    assert standin.calls_to("views.open") == []
    for call in standin.calls:
        assert created.secret not in str(call.body)


def test_an_admin_acts_on_anyones_token(bot, db, standin, table):
    created = seed(db, label="theirs", owner=OTHER_USER)
    public_id = created.token.public_id
    bot.click(row_buttons(table(user=ADMIN), public_id)[ActionId.DISABLE], user=ADMIN)
    assert load(db, public_id).status == TokenStatus.DISABLED
    with db.sessions.begin() as session:
        actor = session.scalars(
            __import__("sqlalchemy").select(__import__("bot.models").models.AuditEvent.actor)
            .where(__import__("bot.models").models.AuditEvent.action == "disable")
        ).one()
    assert actor == ADMIN


def _button(action: ActionId, public_id: str, version: int = 1) -> dict:
    return {"action_id": action, "value": RowRef(public_id=public_id, version=version).encode()}


@pytest.mark.parametrize("action", ACTIONS)
def test_a_forged_token_id_answers_not_found(bot, db, standin, action):
    seed(db, label="real")
    bot.click(_button(action, "tok_doesnotexist"))
    assert "not found" in texts(last_response(standin).body["blocks"])
    assert standin.calls_to("views.open") == []


@pytest.mark.parametrize("value", ["", "garbage", "[1,2,3]", '{"t":"x"}', '{"t":"","v":1}'])
def test_a_mangled_button_value_answers_not_found(bot, db, standin, value):
    bot.click({"action_id": ActionId.DISABLE, "value": value})
    assert "not found" in texts(last_response(standin).body["blocks"])


@pytest.mark.parametrize("value", [
    '["{id}",1,1,""]',  # the list this value was before it was typed: not ours any more
    '{{"t":"{id}"}}', '{{"t":"{id}","v":-1}}', '{{"t":"{id}","v":true}}', '{{"t":"{id}","v":"1"}}',
    '{{"t":"{id}","v":1.0}}', '{{"t":"{id}","v":1,"s":{{"p":0}}}}',
    '{{"t":"{id}","v":1,"s":{{"o":"<!here>"}}}}', '{{"t":"{id}","v":1,"s":{{"s":"gone"}}}}',
    '{{"t":"{id}","v":1,"s":{{"p":2147483648}}}}', '{{"t":"{id}","v":1,"x":"' + "x" * 3000 + '"}}',
])
def test_a_crafted_value_naming_a_real_token_is_not_found_and_changes_nothing(
        bot, db, standin, value):
    created = seed(db, label="real")
    public_id = created.token.public_id
    bot.click({"action_id": ActionId.DISABLE, "value": value.format(id=public_id)})
    shown = texts(last_response(standin).body["blocks"])
    assert "not found" in shown and "real" in shown  # and here is the current table
    assert load(db, public_id).status == TokenStatus.ACTIVE
    assert audit_actions(db, public_id) == ["create"]


@pytest.mark.parametrize("action", ACTIONS)
def test_another_teams_token_is_not_found_and_untouched(bot, db, standin, action):
    foreign = seed(db, label="other workspace", team=OTHER_TEAM, owner=OWNER)
    public_id = foreign.token.public_id
    # the same user id, an admin even, but clicking from team T1
    for user in (OWNER, ADMIN):
        bot.click(_button(action, public_id, foreign.token.version), user=user, team=TEAM)
        assert "not found" in texts(last_response(standin).body["blocks"])
    token = load(db, public_id, team=OTHER_TEAM)
    assert token.status == TokenStatus.ACTIVE and token.version == foreign.token.version
    assert audit_actions(db, public_id) == ["create"]
    for call in standin.calls:
        assert foreign.secret not in str(call.body) and "other workspace" not in str(call.body)


def test_the_table_shows_only_the_users_workspace(bot, db, table):
    seed(db, label="ours")
    seed(db, label="theirs", team=OTHER_TEAM)
    text = texts(table())
    assert "ours" in text and "theirs" not in text


def test_stale_view_after_another_user_deleted_the_token(bot, db, standin, table):
    created = seed(db, label="shared")
    public_id = created.token.public_id
    blocks = table()  # the owner looks...
    with db.sessions.begin() as session:  # ...an admin deletes it meanwhile
        tokens.delete_token(session, actor=tokens.Actor(team_id=TEAM, user_id=ADMIN, is_admin=True),
                            public_id=public_id, expected_version=created.token.version,
                            now=utcnow())
    for action in (ActionId.DISABLE, ActionId.COPY, ActionId.EDIT):
        bot.click(row_buttons(blocks, public_id)[action])
        redrawn = last_response(standin).body
        assert redrawn["replace_original"] is True
        text = texts(redrawn["blocks"])
        assert f"That token was not found: <@{ADMIN}> deleted it <!date^" in text
        assert "{ago}" in text and "here is the current table" in text
        assert "shared" not in text.split("here is the current table", 1)[1]
        assert "0 tokens" in text
    assert standin.calls_to("views.open") == []


def test_stale_view_after_another_user_edited_the_token(bot, db, standin, table):
    created = seed(db, label="shared")
    public_id = created.token.public_id
    blocks = table()
    with db.sessions.begin() as session:
        tokens.edit_token(session, actor=tokens.Actor(team_id=TEAM, user_id=ADMIN, is_admin=True),
                          public_id=public_id, expected_version=created.token.version,
                          scopes=["read", "write"], now=utcnow(), label="renamed by admin",
                          policy=NO_POLICY)
    for action in (ActionId.DISABLE, ActionId.DELETE, ActionId.ROTATE, ActionId.EDIT):
        if action == ActionId.ROTATE:
            choose(bot, blocks, public_id, action)  # refused before its confirmation
        else:
            bot.click(row_buttons(blocks, public_id)[action])
        text = texts(last_response(standin).body["blocks"])
        assert (f"This token changed since you looked: <@{ADMIN}> edited it <!date^" in text
                and "(label “shared” → “renamed by admin”)" in text)
        assert "here is the current table" in text
        assert "renamed by admin" in text
    token = load(db, public_id)
    assert token.status == TokenStatus.ACTIVE and token.secret_digest == created.token.secret_digest
    assert audit_actions(db, public_id) == ["create", "edit"]
    assert standin.calls_to("views.open") == []


def test_stale_edit_submission_is_refused_in_the_modal_and_the_table_redrawn(bot, db, standin,
                                                                             table):
    created = seed(db, label="shared")
    public_id = created.token.public_id
    bot.click(row_buttons(table(), public_id)[ActionId.EDIT])
    view = standin.wait_for("views.open")[-1].body["view"]
    with db.sessions.begin() as session:
        tokens.disable_token(session,
                             actor=tokens.Actor(team_id=TEAM, user_id=ADMIN, is_admin=True),
                             public_id=public_id, expected_version=created.token.version,
                             now=utcnow())
    bot.submit(view, form_values(label="my edit", scope="write"))
    answer = bot.acks[-1]
    assert answer["response_action"] == "update"
    form = answer["view"]  # the form itself, not a blank "Tokenbot" modal
    assert form["callback_id"] == view["callback_id"] and form["title"]["text"] == "Edit Access Token"
    fields = {b["block_id"]: b for b in form["blocks"] if b["type"] == "input"}
    assert fields["label"]["element"]["initial_value"] == "my edit"  # what was typed
    assert fields["scope"]["element"]["initial_option"]["value"] == "write"
    notice = texts(form["blocks"][:1])
    assert f"This token changed since you looked: <@{ADMIN}> disabled it <!date^" in notice
    assert "what you changed, and the current value of every field you left alone" in notice
    token = load(db, public_id)
    assert token.label == "shared" and token.scope == "read"
    text = texts(last_response(standin).body["blocks"])
    assert "changed since you looked" in text and "Disabled" in text

    # submitting the kept values again says why, on the form, and still keeps them
    bot.submit(form, form_values(label="my edit", scope="write"))
    again = bot.acks[-1]
    assert again["response_action"] == "update"
    assert "cannot be edited. Enable it first" in texts(again["view"]["blocks"][:1])
    assert {b["block_id"]: b for b in again["view"]["blocks"] if b["type"] == "input"}[
        "label"]["element"]["initial_value"] == "my edit"
    assert load(db, public_id).label == "shared"


def _edit_form_then_an_admin(bot, db, standin, table,
                             change=functools.partial(tokens.edit_token, policy=NO_POLICY),
                             **values):
    """The owner's open Edit form, and meanwhile an admin's ``change`` of the token."""
    created = seed(db, label="shared")
    public_id = created.token.public_id
    bot.click(row_buttons(table(), public_id)[ActionId.EDIT])
    view = standin.wait_for("views.open")[-1].body["view"]
    with db.sessions.begin() as session:
        change(session, actor=tokens.Actor(team_id=TEAM, user_id=ADMIN, is_admin=True),
               public_id=public_id, expected_version=created.token.version, now=utcnow(),
               **values)
    return view, public_id


def _edit_form_then_an_admin_sets_scope_write(bot, db, standin, table):
    return _edit_form_then_an_admin(bot, db, standin, table, scopes=["read", "write"],
                                    scope="write")


def _inputs(form):
    """The form's inputs by field (a field reset to the current value has a new block id,
    ``scope:3``)."""
    return {b["block_id"].split(":")[0]: b["element"] for b in form["blocks"]
            if b["type"] == "input"}


def test_a_stale_edit_keeps_what_the_user_changed_and_shows_the_others_change(
        bot, db, standin, table):
    """An admin changed the scope while the owner renamed the token in an open form. The
    form answers with the owner's new label and the admin's new scope (the field the
    owner left alone), at the current version: submitting it again renames the token and
    keeps the admin's change."""
    view, public_id = _edit_form_then_an_admin_sets_scope_write(bot, db, standin, table)
    bot.submit(view, form_values(label="typed label", scope="read"))
    form = bot.acks[-1]["view"]
    assert "(scope “read” → “write”)" in texts(form["blocks"][:1])
    assert _inputs(form)["label"]["initial_value"] == "typed label"
    assert _inputs(form)["scope"]["initial_option"]["value"] == "write"
    assert load(db, public_id).label == "shared"
    bot.submit(form, form_values(label="typed label", scope="write"))
    token = load(db, public_id)
    assert (token.label, token.scope) == ("typed label", "write")


def test_a_stale_edit_keeps_a_field_both_changed_as_the_user_typed_it(bot, db, standin, table):
    view, _ = _edit_form_then_an_admin(bot, db, standin, table, scopes=[], label="admin's")
    bot.submit(view, form_values(label="mine", scope="read"))
    form = bot.acks[-1]["view"]
    assert [b["block_id"] for b in form["blocks"] if b["type"] == "input"][0] == "label"
    assert _inputs(form)["label"]["initial_value"] == "mine"


def test_edit_submission_of_a_deleted_token(bot, db, standin, table):
    view, public_id = _edit_form_then_an_admin(bot, db, standin, table, tokens.delete_token)
    bot.submit(view, form_values(label="my edit", scope="write"))
    form = bot.acks[-1]["view"]
    assert f"That token was not found: <@{ADMIN}> deleted it" in texts(form["blocks"][:1])
    assert _inputs(form)["label"]["initial_value"] == "my edit"
    assert load(db, public_id) is None


def _command_body(text: str = "") -> str:
    return form_body({"team_id": TEAM, "user_id": OWNER, "command": "/tokens", "text": text,
                      "channel_id": "C1", "response_url": "http://127.0.0.1:9/x",
                      "trigger_id": "1.1.t"})


@pytest.mark.parametrize(
    "case",
    ["bad signature", "wrong secret", "six minutes old", "six minutes ahead", "no headers"],
)
def test_forged_or_replayed_requests_are_refused_with_401(bot, db, standin, case):
    created = seed(db, label="target")
    value = RowRef(public_id=created.token.public_id, version=created.token.version).encode()
    body = form_body({"payload": __import__("json").dumps({
        "type": "block_actions", "user": {"id": OWNER, "team_id": TEAM},
        "team": {"id": TEAM}, "response_url": standin.response_url("forged"),
        "trigger_id": "1.1.t", "container": {"type": "message"},
        "actions": [{"action_id": ActionId.DELETE, "value": value, "type": "button",
                     "block_id": "b", "action_ts": "1"}]})})
    content_type = "application/x-www-form-urlencoded"
    now = int(time.time())
    headers = {
        "bad signature": {**signed_headers(SIGNING_SECRET, body, content_type=content_type),
                          "x-slack-signature": "v0=" + "0" * 64},
        "wrong secret": signed_headers("not-the-secret", body, content_type=content_type),
        "six minutes old": signed_headers(SIGNING_SECRET, body, content_type=content_type,
                                          timestamp=now - 360),
        "six minutes ahead": signed_headers(SIGNING_SECRET, body, content_type=content_type,
                                            timestamp=now + 360),
        "no headers": {"content-type": content_type},
    }[case]
    response = bot.send(body, headers=headers)
    assert response.status == 401
    bot.settle()
    assert load(db, created.token.public_id) is not None
    assert audit_actions(db, created.token.public_id) == ["create"]
    assert standin.calls == []
    # the same body correctly signed goes through (the test would catch a broken check)
    response = bot.send(body)
    assert response.status == 200
    bot.settle()
    assert load(db, created.token.public_id) is None
