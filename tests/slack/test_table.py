"""`/tokens`: the table as its reader sees it, filtering, help, escaping, pagination."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update

from bot.slack.ids import ActionId
from bot.slack.state import RowRef, TableState
from bot.models import Token
from bot.services import tokens
from tests.slack.conftest import (
    ADMIN,
    OWNER,
    TEAM,
    buttons,
    last_response,
    mrkdwn_texts,
    row_buttons,
    row_menu,
    seed,
    texts,
    utcnow,
)
from tests.support.blockkit import MESSAGE_BLOCK_LIMIT, VIEW_BLOCK_LIMIT
from tests.support.policy import NO_POLICY


def test_zero_tokens_shows_an_empty_table_with_a_way_to_create(bot, standin, table):
    blocks = table()
    text = texts(blocks)
    assert "No tokens yet" in text
    assert "Page 1 of 1, 0 tokens" in text
    labels = [b["text"]["text"] for b in buttons(blocks)]
    assert "Create token" in labels and "Next" not in labels and "Previous" not in labels
    call = last_response(standin)
    assert call.body["response_type"] == "ephemeral"


def test_list_subcommand_and_plain_command_draw_the_same_table(bot, db, table):
    seed(db, label="deploy key")
    assert "deploy key" in texts(table("list"))
    assert "deploy key" in texts(table())


def test_rows_show_every_column_and_status_badges(bot, db, table):
    now = utcnow()
    expiring = seed(db, label="expiring", expires_on=(now + dt.timedelta(days=40)).date())
    never = seed(db, label="forever", scope="write")
    expired = seed(db, label="old one", expires_on=(now + dt.timedelta(days=2)).date())
    disabled = seed(db, label="paused", disabled=True)
    used = now - dt.timedelta(days=3)
    with db.sessions.begin() as session:
        session.execute(update(Token).where(Token.public_id == expired.token.public_id)
                        .values(expires_at=now - dt.timedelta(days=1)))
        session.execute(update(Token).where(Token.public_id == never.token.public_id)
                        .values(last_used_at=used))
    blocks = table()
    by_id = {b.get("block_id"): b for b in blocks}

    row = by_id[f"row:{expiring.token.public_id}"]
    assert row["type"] == "section"
    text = row["text"]["text"]
    assert "*expiring*" in text and "Active" in text
    assert f"`{expiring.token.secret_masked}`" in text and expiring.secret not in text
    assert "`read`" in text and f"<@{OWNER}>" in text
    # the calendar date picked, and how far away it is; not an instant in local time
    expiry = (now + dt.timedelta(days=40)).date().isoformat()
    assert f"Expires: {expiry} (in 40 days)" in text and "Expires soon" not in text
    created_epoch = int(expiring.token.created_at.timestamp())
    assert f"Created: <!date^{created_epoch}^{{date_short}} {{time}}|" in text  # date and time
    assert "Never used" in text

    forever = by_id[f"row:{never.token.public_id}"]["text"]["text"]
    assert "Expires: Never" in forever and "`write`" in forever
    assert f"Last used <!date^{int(used.timestamp())}^{{ago}}|" in forever

    old = by_id[f"row:{expired.token.public_id}"]["text"]["text"]
    yesterday = (now - dt.timedelta(days=1)).date().isoformat()
    assert "Expired" in old and f"Expires: {yesterday} (expired 1 day ago)" in old

    muted = by_id[f"row:{disabled.token.public_id}"]
    assert muted["type"] == "context"  # Slack has no opacity: a quieter block
    assert "Disabled" in muted["elements"][0]["text"] and "paused" in muted["elements"][0]["text"]

    assert "Page 1 of 1, 4 tokens" in texts(blocks)


def test_row_buttons_and_their_confirmation_dialogs(bot, db, table):
    active = seed(db, label="active one")
    disabled = seed(db, label="paused", disabled=True)
    blocks = table()
    row = row_buttons(blocks, active.token.public_id)
    more = row.pop(ActionId.ROW_MORE)
    assert [b["text"]["text"] for b in row.values()] == ["Copy", "Edit", "Disable", "Delete"]
    assert more["type"] == "overflow" and "confirm" not in more
    assert [o["text"]["text"] for o in more["options"]] == ["Rotate…"]
    assert "confirm" not in row[ActionId.COPY] and "confirm" not in row[ActionId.EDIT]
    disable = row[ActionId.DISABLE]["confirm"]
    assert disable["confirm"]["text"] == "Disable Token"
    assert "immediately lose access" in disable["text"]["text"]
    assert "CI/CD pipelines and integrations will fail to authenticate" in disable["text"]["text"]
    assert "reversed by enabling" in disable["text"]["text"]
    assert row[ActionId.DISABLE]["style"] == "danger" and disable["style"] == "danger"
    delete = row[ActionId.DELETE]["confirm"]
    assert delete["confirm"]["text"] == "Delete Token"
    assert "cannot be undone" in delete["text"]["text"]
    assert "immediately stop working" in delete["text"]["text"]
    assert ("CI/CD pipelines, automation scripts, and integrations will fail"
            in delete["text"]["text"])
    assert row[ActionId.DELETE]["style"] == "danger" and delete["style"] == "danger"

    muted = row_buttons(blocks, disabled.token.public_id)
    assert [b.get("text", {}).get("text") for b in muted.values()] == ["Copy", "Enable", None]
    assert list(row_menu(blocks, disabled.token.public_id)) == [ActionId.ROTATE]
    enable = muted[ActionId.ENABLE]["confirm"]
    assert enable["confirm"]["text"] == "Enable Token"
    assert "regain access" in enable["text"]["text"]
    assert "immediately active" in enable["text"]["text"]
    assert muted[ActionId.ENABLE].get("style") != "danger"


def test_button_values_carry_id_version_and_table_state_compactly(bot, db, table):
    created = seed(db, label="ci deploy")
    blocks = table("ci")
    value = row_buttons(blocks, created.token.public_id)[ActionId.DISABLE]["value"]
    ref = RowRef.decode(value)
    assert (ref.public_id, ref.version, ref.state.query) == (created.token.public_id, 1, "ci")
    assert len(value) < 200


def test_the_same_row_in_two_tables_carries_each_tables_state(bot, db, table):
    """A row looks the same in every table it appears in; what its buttons carry back is
    the table it was drawn in."""
    created = seed(db, label="ci deploy")
    everything = row_buttons(table(), created.token.public_id)
    filtered = row_buttons(table("ci"), created.token.public_id)
    assert everything.keys() == filtered.keys()
    for action in everything:
        if action == ActionId.ROW_MORE:  # the menu: each option carries the row
            (unfiltered,), (ci,) = (everything[action]["options"], filtered[action]["options"])
            assert '"ci"' not in unfiltered["value"] and '"ci"' in ci["value"]
            assert unfiltered["text"] == ci["text"]
            continue
        assert '"ci"' not in everything[action]["value"]
        assert '"ci"' in filtered[action]["value"]
        assert {k: v for k, v in everything[action].items() if k != "value"} == {
            k: v for k, v in filtered[action].items() if k != "value"
        }


def test_text_filters_by_label(bot, db, table):
    seed(db, label="CI deploy")
    seed(db, label="backup")
    seed(db, label="100%_literal")
    text = texts(table("ci"))
    assert "CI deploy" in text and "backup" not in text
    assert "*Access tokens*: labels containing “ci”" in text
    assert "Page 1 of 1, 1 token" in text
    text = texts(table("list backup"))
    assert "backup" in text and "CI deploy" not in text
    text = texts(table("%_"))
    assert "100%_literal" in text and "backup" not in text


def test_filter_with_no_match_says_so_in_one_line(bot, db, table):
    seed(db, label="ci")
    blocks = table("frobnicate")
    (empty,) = [b for b in blocks if b.get("block_id") == "table_empty"]
    assert empty["text"]["text"] == "No tokens match this filter."
    assert "/tokens create" not in texts(blocks)  # not the whole help text
    assert [b["text"]["text"] for b in buttons(blocks)].count("Clear filter") == 1


def test_help_lists_subcommands_and_the_guides_advice(bot, standin):
    response = bot.command("help")
    blocks = bot.acks[-1]["blocks"]
    text = texts(blocks)
    for sub in ("/tokens list", "/tokens <text>", "/tokens create", "/tokens help"):
        assert sub.replace("<", "&lt;").replace(">", "&gt;") in text or sub in text
    assert "Disable" in text and "can be re-enabled" in text and "cannot be recovered" in text
    assert "never share them publicly or commit them to version control" in text
    assert response.status == 200
    assert standin.calls_to("response_url") == []  # answered in the ack itself


def test_unknown_subcommand_answers_with_help(bot, standin):
    bot.command("delete everything")
    text = texts(bot.acks[-1]["blocks"])
    assert "is not a subcommand" in text and "/tokens create" in text


def test_labels_are_escaped_so_nothing_pings_or_links(bot, db, table, standin):
    labels = ["<!channel>", "*x*", "<https://evil|click>", "L" * 100, "🔑 deploy ✨", "a & b"]
    for label in labels:
        seed(db, label=label)
    blocks = table()
    text = texts(blocks)
    assert "&lt;!channel&gt;" in text and "<!channel>" not in text
    assert "&lt;https://evil|click&gt;" in text and "<https://evil" not in text
    assert "*" + "L" * 100 + "*" in text
    assert "🔑 deploy ✨" in text and "a &amp; b" in text
    assert "**x**" in text
    fallback = last_response(standin).body["text"]
    assert "<!channel>" not in fallback
    for call in standin.calls:  # mrkdwn is where Slack parses; plain_text is shown as typed
        for mrkdwn in mrkdwn_texts(call.body) + [call.body.get("text", "")]:
            assert "<!channel>" not in mrkdwn and "<https://evil" not in mrkdwn


def test_a_thousand_tokens_paginate_within_block_limits(bot, db, standin, table):
    actor = tokens.Actor(team_id=TEAM, user_id=ADMIN, is_admin=True)
    now = utcnow()
    with db.sessions.begin() as session:  # one session: fast on both backends
        for number in range(1000):
            tokens.create_token(session, box=db.box, actor=actor, label=f"token {number:04d}",
                                scope="read", scopes=["read", "write", "admin"],
                                now=now + dt.timedelta(microseconds=number), owner=OWNER,
                                policy=NO_POLICY)
    blocks = table()
    assert len(blocks) <= MESSAGE_BLOCK_LIMIT
    text = texts(blocks)
    assert "token 0999" in text  # newest first
    assert "Page 1 of 100, 1,000 tokens" in text
    pager = {b["action_id"]: b for b in buttons(blocks) if b["action_id"].startswith("table_")}
    assert ActionId.PAGE_PREVIOUS not in pager

    bot.click(pager[ActionId.PAGE_NEXT])
    page2 = last_response(standin).body
    assert page2["replace_original"] is True
    assert "Page 2 of 100, 1,000 tokens" in texts(page2["blocks"])
    assert "token 0989" in texts(page2["blocks"]) and "token 0999" not in texts(page2["blocks"])
    assert len(page2["blocks"]) <= MESSAGE_BLOCK_LIMIT
    nav = {b["action_id"]: b for b in buttons(page2["blocks"])}
    bot.click(nav[ActionId.PAGE_PREVIOUS])
    assert "Page 1 of 100" in texts(last_response(standin).body["blocks"])

    # a page beyond the end (the table shrank meanwhile) shows the last page
    bot.click({"action_id": ActionId.PAGE_NEXT, "value": TableState(page=500).encode()})
    last = last_response(standin).body["blocks"]
    assert "Page 100 of 100" in texts(last) and "token 0000" in texts(last)

    # Home: the same table within 100 blocks
    bot.home_opened()
    view = standin.wait_for("views.publish")[-1].body["view"]
    assert len(view["blocks"]) <= VIEW_BLOCK_LIMIT
    assert "Page 1 of 50, 1,000 tokens" in texts(view["blocks"])
    home_next = {b["action_id"]: b for b in buttons(view["blocks"])}[ActionId.PAGE_NEXT]
    bot.click(home_next, home=True)
    view = standin.wait_for("views.publish", 2)[-1].body["view"]
    assert "Page 2 of 50" in texts(view["blocks"]) and len(view["blocks"]) <= VIEW_BLOCK_LIMIT


def _public_id(blocks, label: str) -> str:
    for block in blocks:
        if block.get("block_id", "").startswith("row:") and f"*{label}*" in str(block):
            return block["block_id"].split(":", 1)[1]
    raise AssertionError(f"no row {label}")
