"""Issue 20's Slack items: a stale edit re-submitted as Slack keeps the form, forms that
offer only what may be chosen, words that say what happened and who did it, digests whose
headline follows their rows, and posts that go only to Slack."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from bot.services.actor import CLI_OPERATOR
from bot.models import AuditSource
from bot.services import tokens
from bot.slack.ids import ActionId
from bot.slack.listeners.common import is_slack_url
from bot.slack.views.messages import owner_notice_message
from tests.slack.conftest import (
    ADMIN,
    OWNER,
    TEAM,
    form_values,
    last_response,
    load,
    row_buttons,
    seed,
    texts,
    utcnow,
)
from tests.support.slack_standin import modal_state
from tests.support.policy import NO_POLICY


def _open_edit(bot, standin, table, public_id, *, user=None):
    kwargs = {"user": user} if user else {}
    opened = len(standin.calls_to("views.open"))
    bot.click(row_buttons(table(**kwargs), public_id)[ActionId.EDIT], **kwargs)
    return standin.wait_for("views.open", opened + 1)[-1].body["view"]


def _inputs(view):
    return {b["block_id"].split(":")[0]: b for b in view["blocks"] if b["type"] == "input"}


# -- 1. a stale edit re-submitted keeps the other person's change ------------------------


def test_a_stale_edit_submitted_again_as_slack_keeps_it_keeps_the_admins_scope(
        bot, db, standin, table):
    """The owner renames in an open form while an admin sets the scope to write. The form
    comes back showing write; Slack keeps what an input held unless its block changed, so
    submitting it again as Slack sends it must not put the scope back to read."""
    created = seed(db, label="shared", scope="read")
    public_id = created.token.public_id
    view = _open_edit(bot, standin, table, public_id)
    with db.sessions.begin() as session:
        tokens.edit_token(session, actor=tokens.Actor(team_id=TEAM, user_id=ADMIN, is_admin=True),
                          public_id=public_id, expected_version=created.token.version,
                          scopes=["read", "write"], now=utcnow(), scope="write", policy=NO_POLICY)
    first = modal_state(view, typed={"label": form_values(label="renamed")["label"]})
    bot.submit(view, first)
    form = bot.acks[-1]["view"]
    assert "(scope “read” → “write”)" in texts(form["blocks"][:1])
    assert load(db, public_id).label == "shared"

    bot.submit(form, modal_state(form, previous=first))  # what Slack sends back
    token = load(db, public_id)
    assert (token.label, token.scope) == ("renamed", "write")


# -- 2. the scope menu offers what the viewer may grant ------------------------------------


def _offered(view):
    return [o["value"] for o in _inputs(view)["scope"]["element"]["options"]]


def test_the_scope_menu_offers_admin_only_to_admins(bot, db, standin, table):
    created = seed(db, label="mine")
    assert _offered(_open_edit(bot, standin, table, created.token.public_id)) == [
        "read", "write"]
    bot.command("create")
    assert _offered(standin.wait_for("views.open", 2)[-1].body["view"]) == ["read", "write"]
    assert _offered(_open_edit(bot, standin, table, created.token.public_id, user=ADMIN)) == [
        "read", "write", "admin"]


def test_an_admin_scope_token_edited_by_its_owner_keeps_its_scope_listed(
        bot, db, standin, table):
    created = seed(db, label="strong", scope="admin")
    view = _open_edit(bot, standin, table, created.token.public_id)
    assert _offered(view) == ["read", "write", "admin"]
    assert _inputs(view)["scope"]["element"]["initial_option"]["value"] == "admin"
    bot.submit(view, modal_state(view, typed={"label": form_values(label="renamed")["label"]}))
    token = load(db, created.token.public_id)
    assert (token.label, token.scope) == ("renamed", "admin")


# -- 3. the expiry hint names the way to clear it ------------------------------------------


def test_a_dated_tokens_form_says_to_tick_remove_the_expiry_date(bot, db, standin, table):
    today = utcnow().date()
    created = seed(db, label="dated", expires_on=today + dt.timedelta(days=10))
    view = _open_edit(bot, standin, table, created.token.public_id)
    hint = _inputs(view)["expires"]["hint"]["text"]
    assert "tick “Remove the expiry date”" in hint and "Leave it empty" not in hint
    past = (today - dt.timedelta(days=1)).isoformat()
    bot.submit(view, modal_state(view, typed={"expires": form_values(expires=past)["expires"]}))
    error = bot.acks[-1]["errors"]["expires"]
    assert error.startswith("The expiry date must be in the future")
    assert "tick “Remove the expiry date”" in error and "Clear it" not in error
    assert load(db, created.token.public_id).expires_on == today + dt.timedelta(days=10)


def test_the_create_form_prefilled_with_a_date_says_to_tick_remove_the_expiry_date(
        bot, db, standin, table):
    bot.command("create")
    view = standin.wait_for("views.open")[-1].body["view"]
    hint = _inputs(view)["expires"]["hint"]["text"]
    assert _inputs(view)["expires"]["element"]["initial_date"]  # it cannot be emptied
    assert "tick “Remove the expiry date”" in hint and "Leave it empty" not in hint
    bot.submit(view, form_values(label="new", expires="2020-01-01"))
    error = bot.acks[-1]["errors"]["expires"]
    assert "tick “Remove the expiry date”" in error


# -- 4. changes made from the CLI are named properly ---------------------------------------


def _stale_click_after_cli_edit(bot, db, standin, table, cli_user):
    created = seed(db, label="ci")
    blocks = table()
    with db.sessions.begin() as session:
        tokens.edit_token(session, actor=tokens.Actor(team_id=TEAM, user_id=cli_user, is_admin=True,
                                                source=AuditSource.CLI),
                          public_id=created.token.public_id,
                          expected_version=created.token.version, scopes=[], now=utcnow(),
                          label="renamed", policy=NO_POLICY)
    bot.click(row_buttons(blocks, created.token.public_id)[ActionId.DISABLE])
    return texts(last_response(standin).body["blocks"][:1])


def test_a_change_from_the_cli_without_as_is_an_operator_not_a_broken_mention(
        bot, db, standin, table):
    notice = _stale_click_after_cli_edit(bot, db, standin, table, CLI_OPERATOR)
    assert "This token changed since you looked: an operator (CLI) edited it" in notice
    assert "<@operator>" not in notice


def test_a_change_from_the_cli_as_a_slack_user_mentions_them(bot, db, standin, table):
    notice = _stale_click_after_cli_edit(bot, db, standin, table, ADMIN)
    assert f"This token changed since you looked: <@{ADMIN}> edited it" in notice


def test_the_owners_dm_names_the_cli_operator():
    message = owner_notice_message(actor=CLI_OPERATOR, action="disable", label="ci",
                                   masked="tkb_…abcd", public_id="tok_1",
                                   source=AuditSource.CLI)
    assert message.text == "an operator (CLI) disabled your token ci."
    assert "<@" not in texts([block.to_dict() for block in message.blocks])


# -- 10. posts go only to Slack ----------------------------------------------------------


def _crafted(standin) -> str:
    """The stand-in reached under another origin: posted to, it would be recorded."""
    return standin.base_url.replace("127.0.0.1", "localhost") + "response/crafted"


@pytest.mark.parametrize("url, slacks", [
    ("https://hooks.slack.com/actions/T1/1/abc", True),
    ("https://hooks.slack.com.evil.example/actions/T1/1/abc", False),
    ("https://hooks.slack.com@evil.example/actions", False),
    ("http://hooks.slack.com/actions/T1/1/abc", False),
    ("https://evil.example/?https://hooks.slack.com/", False),
    ("https://slack.com/api/", True),  # the Web API's own origin
    ("not a url", False),
])
def test_only_slacks_response_urls_are_slacks(url, slacks):
    assert is_slack_url(url, api_url="https://slack.com/api/") is slacks


def test_a_crafted_response_url_of_a_command_is_never_posted_to(bot, db, standin):
    seed(db, label="ci")
    bot.command("", response_url=_crafted(standin))
    bot.command("")  # the stand-in's own url works as before
    calls = standin.calls_to("response_url")
    assert len(calls) == 1 and "crafted" not in calls[0].path
    assert "ci" in texts(calls[0].body["blocks"])


def test_a_crafted_response_url_never_gets_a_secret(bot, db, standin, table):
    created = seed(db, label="ci")
    blocks = table()
    bot.click(row_buttons(blocks, created.token.public_id)[ActionId.COPY],
              response_url=_crafted(standin))
    assert all(created.secret not in json.dumps(call.body) for call in standin.calls)
    assert all("crafted" not in call.path for call in standin.calls)


def test_a_crafted_url_carried_in_private_metadata_gets_nothing(bot, db, standin):
    """``/tokens create`` from a command whose response_url was crafted: the new secret is
    shown on the creator's Home instead, and the crafted url gets nothing."""
    bot.command("create", response_url=_crafted(standin))
    view = standin.wait_for("views.open")[-1].body["view"]
    bot.submit(view, form_values(label="made"))
    assert all("crafted" not in call.path for call in standin.calls)
    home = standin.wait_for("views.publish")[-1].body
    assert home["user_id"] == OWNER and "Created *made*" in texts(home["view"]["blocks"])
    assert "```tkb_" in json.dumps(home["view"]["blocks"])


def test_an_error_on_a_reset_field_is_shown_on_that_field(bot, db, standin, table):
    """A field reset after a stale refusal has a new block id; an error on it still
    lands on it (Slack refuses errors keyed by a block the view does not have)."""
    created = seed(db, label="shared", scope="read")
    public_id = created.token.public_id
    view = _open_edit(bot, standin, table, public_id)
    with db.sessions.begin() as session:
        tokens.edit_token(session, actor=tokens.Actor(team_id=TEAM, user_id=ADMIN, is_admin=True),
                          public_id=public_id, expected_version=created.token.version,
                          scopes=[], now=utcnow(), label="admin's", policy=NO_POLICY)
    first = modal_state(view, typed={"scope": form_values(scope="write")["scope"]})
    bot.submit(view, first)
    form = bot.acks[-1]["view"]
    label_block = next(b["block_id"] for b in form["blocks"] if b["type"] == "input")
    assert label_block.startswith("label:")
    bot.submit(form, modal_state(form, previous=first,
                                 typed={"label": form_values(label="   ")["label"]}))
    assert list(bot.acks[-1]["errors"]) == [label_block]
    assert load(db, public_id).scope == "read"
