"""Filters in Slack (`/tokens mine`, a status, `@owner`, label text; combinable), the
header that names them with "Clear filter", the one-line empty answer, help, and the same
filters on App Home as menus."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import update

from bot.models import Token
from bot.slack.ids import ActionId
from tests.slack.conftest import (
    ADMIN,
    OTHER_USER,
    OWNER,
    buttons,
    seed,
    texts,
    utcnow,
)

THIRD = "U3"


@pytest.fixture
def tokens(db):
    """A small workspace: labels by who owns them and in which state they are."""
    today = utcnow().date()
    made = {
        "mine deploy": seed(db, label="mine deploy", owner=OWNER),
        "mine expiring deploy": seed(db, label="mine expiring deploy", owner=OWNER,
                                     expires_on=today + dt.timedelta(days=20)),
        "mine far": seed(db, label="mine far", owner=OWNER,
                         expires_on=today + dt.timedelta(days=40)),
        "mine paused": seed(db, label="mine paused", owner=OWNER, disabled=True),
        "theirs deploy": seed(db, label="theirs deploy", owner=OTHER_USER,
                              expires_on=today + dt.timedelta(days=3)),
        "theirs old": seed(db, label="theirs old", owner=OTHER_USER,
                           expires_on=today + dt.timedelta(days=2)),
        "third backup": seed(db, label="third backup", owner=THIRD),
    }
    with db.sessions.begin() as session:  # "theirs old" expired yesterday
        session.execute(update(Token)
                        .where(Token.public_id == made["theirs old"].token.public_id)
                        .values(expires_at=utcnow() - dt.timedelta(days=1)))
    return made


def _labels(blocks) -> set[str]:
    rows = [b for b in blocks if b.get("block_id", "").startswith("row:")]
    return {json.dumps(b).split("*", 2)[1] for b in rows}


def _header(blocks) -> dict:
    return next(b for b in blocks if b.get("block_id") == "table_header")


@pytest.mark.parametrize(
    ("text", "expected", "named"),
    [
        ("mine", {"mine deploy", "mine expiring deploy", "mine far", "mine paused"}, "mine"),
        ("active", {"mine deploy", "mine expiring deploy", "mine far", "theirs deploy",
                    "third backup"}, "active"),
        ("disabled", {"mine paused"}, "disabled"),
        ("expired", {"theirs old"}, "expired"),
        # expiring: active and within the largest alert threshold (30 days by default)
        ("expiring", {"mine expiring deploy", "theirs deploy"}, "expiring within 30 days"),
        (f"<@{OTHER_USER}|bob>", {"theirs deploy", "theirs old"}, f"owned by <@{OTHER_USER}>"),
        ("deploy", {"mine deploy", "mine expiring deploy", "theirs deploy"},
         "labels containing “deploy”"),
        # combinations
        ("mine deploy", {"mine deploy", "mine expiring deploy"},
         "mine · labels containing “deploy”"),
        ("deploy mine", {"mine deploy", "mine expiring deploy"},
         "mine · labels containing “deploy”"),
        ("mine expiring", {"mine expiring deploy"}, "mine · expiring within 30 days"),
        (f"expiring <@{OTHER_USER}|bob> deploy", {"theirs deploy"},
         f"owned by <@{OTHER_USER}> · expiring within 30 days · labels containing “deploy”"),
        ("list Active MINE far", {"mine far"}, "mine · active · labels containing “far”"),
        (f"<@{THIRD}> disabled", set(), f"owned by <@{THIRD}> · disabled"),
    ],
)
def test_each_filter_and_combination(bot, tokens, table, text, expected, named):
    blocks = table(text)
    assert _labels(blocks) == expected
    header = _header(blocks)
    assert header["text"]["text"] == f"*Access tokens*: {named}"
    assert header["accessory"]["text"]["text"] == "Clear filter"
    noun = "token" if len(expected) == 1 else "tokens"
    assert f"{len(expected)} {noun}" in texts(blocks)


def test_clear_filter_shows_every_token_again(bot, standin, tokens, table):
    blocks = table("mine expiring")
    bot.click(_header(blocks)["accessory"])
    redrawn = standin.calls_to("response_url")[-1].body
    assert redrawn["replace_original"] is True
    assert _labels(redrawn["blocks"]) == set(tokens)
    assert "accessory" not in _header(redrawn["blocks"])  # no filter, nothing to clear


def test_the_filter_stays_on_after_an_action_and_across_pages(bot, standin, db, table):
    for number in range(12):
        seed(db, label=f"deploy {number:02d}", owner=OWNER)
    seed(db, label="other", owner=OTHER_USER)
    blocks = table("mine deploy")
    assert "Page 1 of 2, 12 tokens" in texts(blocks)
    nav = {b["action_id"]: b for b in buttons(blocks)}
    bot.click(nav[ActionId.PAGE_NEXT])
    page2 = standin.calls_to("response_url")[-1].body["blocks"]
    assert "Page 2 of 2, 12 tokens" in texts(page2)
    assert _header(page2)["text"]["text"] == "*Access tokens*: mine · labels containing “deploy”"
    row = next(b for b in page2 if b.get("block_id", "").startswith("row_actions:"))
    disable = next(e for e in row["elements"] if e["action_id"] == ActionId.DISABLE)
    bot.click(disable)
    after = standin.calls_to("response_url")[-1].body["blocks"]
    assert "Disabled *deploy" in texts(after)
    assert _header(after)["text"]["text"] == "*Access tokens*: mine · labels containing “deploy”"
    assert "other" not in _labels(after)


def test_an_empty_result_is_one_line(bot, tokens, table):
    blocks = table("mine backup")
    empty = [b for b in blocks if b.get("block_id") == "table_empty"]
    assert [b["text"]["text"] for b in empty] == ["No tokens match this filter."]
    assert not _labels(blocks)
    assert "/tokens help" not in texts(blocks) and "`/tokens create`" not in texts(blocks)


def test_an_escaped_ampersand_in_the_command_text_finds_the_label(bot, db, table):
    """With should_escape Slack sends & < > as entities; the filter is the typed text."""
    seed(db, label="R&D <internal>")
    seed(db, label="RD")
    assert _labels(table("r&amp;d &lt;internal&gt;")) == {"R&amp;D &lt;internal&gt;"}


@pytest.mark.parametrize("sent", ["<#C0123|deploys> ci", "<https://ci.example.com|ci.example.com>"])
def test_a_channel_or_link_slack_escaped_is_searched_as_typed(bot, db, table, sent):
    """With should_escape, Slack sends "#deploys" and a typed host as references."""
    seed(db, label="#deploys ci")
    seed(db, label="ci.example.com")
    seed(db, label="other")
    expected = {"#deploys ci"} if sent.startswith("<#") else {"ci.example.com"}
    assert _labels(table(sent)) == expected


def test_help_documents_the_filters_and_the_date_rule(bot):
    bot.command("help")
    text = texts(bot.acks[-1]["blocks"])
    for part in ("`/tokens mine`", "`/tokens @someone`", "`/tokens active`", "`expiring`",
                 "`/tokens mine expiring deploy`", "Clear filter", "App Home",
                 "calendar dates (UTC)", "00:00 UTC", "Expires soon", "More…"):
        assert part in text, part


def _home_view(standin, count: int = 1) -> dict:
    return standin.wait_for("views.publish", count)[-1].body["view"]


def test_home_has_the_filters_as_menus_and_the_disable_vs_delete_intro(bot, standin, tokens):
    bot.home_opened()
    view = _home_view(standin)
    intro = next(b for b in view["blocks"] if b.get("block_id") == "home_intro")
    said = texts([intro])
    assert "When to disable vs delete" in said and "can be re-enabled" in said
    assert "cannot be recovered" in said
    menus = next(b for b in view["blocks"] if b.get("block_id") == "home_filters")
    status, owner = menus["elements"]
    assert (status["type"], owner["type"]) == ("static_select", "users_select")
    assert [o["value"] for o in status["options"]] == ["all", "active", "expiring", "expired",
                                                       "disabled"]

    # choose "Expiring within 30 days", then an owner: both apply, from page 1
    bot.click(status, home=True, view=view,
              selected_option=next(o for o in status["options"] if o["value"] == "expiring"))
    view = _home_view(standin, 2)
    assert _labels(view["blocks"]) == {"mine expiring deploy", "theirs deploy"}
    status, owner = next(b for b in view["blocks"]
                         if b.get("block_id") == "home_filters")["elements"]
    assert status["initial_option"]["value"] == "expiring"
    bot.send(_user_select_body(owner, view, OTHER_USER))
    bot.settle()
    view = _home_view(standin, 3)
    assert _labels(view["blocks"]) == {"theirs deploy"}
    assert _header(view["blocks"])["text"]["text"] == (
        f"*Access tokens*: owned by <@{OTHER_USER}> · expiring within 30 days")
    status, owner = next(b for b in view["blocks"]
                         if b.get("block_id") == "home_filters")["elements"]
    assert owner["initial_user"] == OTHER_USER

    # "Any status" keeps the owner; Clear filter clears both
    bot.click(status, home=True, view=view,
              selected_option=next(o for o in status["options"] if o["value"] == "all"))
    view = _home_view(standin, 4)
    assert _labels(view["blocks"]) == {"theirs deploy", "theirs old"}
    bot.click(_header(view["blocks"])["accessory"], home=True, view=view)
    assert _labels(_home_view(standin, 5)["blocks"]) == set(tokens)


def _user_select_body(element, view, selected: str) -> str:
    from tests.support.signing import interactive_body

    payload = {
        "type": "block_actions",
        "user": {"id": OWNER, "team_id": "T1"},
        "team": {"id": "T1"},
        "trigger_id": "1.1.t",
        "container": {"type": "view", "view_id": "VHOME"},
        "view": {"id": "VHOME", "type": "home", "blocks": view["blocks"],
                 "private_metadata": view["private_metadata"], "state": {"values": {}}},
        "actions": [{"type": "users_select", "action_id": element["action_id"],
                     "block_id": "home_filters", "selected_user": selected,
                     "action_ts": "1.1"}],
    }
    return interactive_body(payload)


def test_an_admin_filters_by_owner_and_acts_there(bot, standin, tokens, table):
    blocks = table(f"<@{OTHER_USER}|bob>", user=ADMIN)
    assert _labels(blocks) == {"theirs deploy", "theirs old"}
    assert all(f"row_actions:{tokens[label].token.public_id}" in json.dumps(blocks)
               for label in ("theirs deploy", "theirs old"))


def test_a_crafted_owner_pick_is_no_mention_and_filters_nothing(bot, standin, tokens):
    bot.home_opened()
    view = _home_view(standin)
    owner = next(b for b in view["blocks"] if b.get("block_id") == "home_filters")["elements"][1]
    bot.send(_user_select_body(owner, view, "U1> <!channel"))
    bot.settle()
    view = _home_view(standin, 2)
    assert "<!channel" not in json.dumps(view["blocks"])
    assert _labels(view["blocks"]) == set(tokens)
