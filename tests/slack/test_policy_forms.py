"""The lifetime policy in Slack, through Bolt's real pipeline: the create form's default
expiry, "never" only where no cap applies, the admins' exception field, refusals inline on
the date, the row's "Over policy" and "Policy exception", and Extend 30 days refused from a
digest with the limit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sqlalchemy import select

from bot.config import Settings
from bot.db import Database
from bot.models import OutboxMessage
from bot.services import tokens
from bot.services.policy import EXCEPTION_MAX, policy_of
from bot.slack.ids import ActionId
from tests.slack.conftest import (
    ADMIN,
    OWNER,
    SIGNING_SECRET,
    SlackBot,
    audit_actions,
    form_values,
    load,
    row_buttons,
    running_bot,
    seed,
    texts,
    utcnow,
)
from tests.support.slack_standin import SlackStandIn


def _day(n: int) -> str:
    return (utcnow().date() + dt.timedelta(days=n)).isoformat()


@pytest.fixture
def capped(make_settings: Callable[..., Settings], standin: SlackStandIn) -> Settings:
    return make_settings(SLACK_API_URL=standin.api_url, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                         SLACK_BOT_TOKEN="xoxb-test", TOKENBOT_ALERT_CHANNEL="CALERTS",
                         TOKENBOT_MAX_LIFETIME_DAYS="admin=30,write=90",
                         TOKENBOT_DEFAULT_EXPIRY_DAYS="45")


@pytest.fixture
def cdb(capped: Settings) -> Iterator[Database]:
    database = Database(capped, auto_upgrade=False)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def pbot(capped: Settings, cdb: Database, standin: SlackStandIn) -> Iterator[SlackBot]:
    with running_bot(capped, cdb, standin) as harness:
        yield harness


def _table(bot: SlackBot, standin: SlackStandIn, user: str = OWNER) -> list[dict[str, Any]]:
    before = len(standin.calls_to("response_url"))
    bot.command("", user=user)
    return standin.wait_for("response_url", before + 1)[-1].body["blocks"]


def _create_form(bot: SlackBot, standin: SlackStandIn, user: str) -> dict[str, Any]:
    before = len(standin.calls_to("views.open"))
    bot.command("create", user=user)
    return standin.wait_for("views.open", before + 1)[-1].body["view"]


def _block(view: dict[str, Any], block_id: str) -> dict[str, Any] | None:
    return next((b for b in view["blocks"] if b.get("block_id") == block_id), None)


def _exception(reason: str) -> dict[str, Any]:
    return {"exception": {ActionId.EXCEPTION_INPUT.value: {"type": "plain_text_input",
                                                           "value": reason}}}


def test_the_create_form_starts_within_policy_and_offers_never_only_where_no_cap_applies(
    pbot: SlackBot, standin: SlackStandIn, bot: SlackBot,
) -> None:
    # A member is offered read and write: the default (45 days) is within write's 90, and
    # "never" is offered for read only. No exception field for them.
    view = _create_form(pbot, standin, OWNER)
    expires = _block(view, "expires")
    assert expires is not None and expires["element"]["initial_date"] == _day(45)
    assert expires["optional"] is True and "only read tokens" in expires["hint"]["text"]
    assert _block(view, "exception") is None
    # An admin is offered admin too: the default is capped to admin's 30 days, and the
    # form has the exception field.
    view = _create_form(pbot, standin, ADMIN)
    assert _block(view, "expires")["element"]["initial_date"] == _day(30)  # type: ignore[index]
    field = _block(view, "exception")
    assert field is not None and "admin=30" not in field["hint"]["text"]
    assert "admin 30 days, write 90 days" in field["hint"]["text"]
    # Without a cap: 30 days by default, "never" offered by the box (a picker drawn with a
    # date cannot be emptied), no exception field.
    view = _create_form(bot, standin, ADMIN)
    expires = _block(view, "expires")
    assert expires["element"]["initial_date"] == _day(30)  # type: ignore[index]
    assert "tick “Remove the expiry date”" in expires["hint"]["text"]  # type: ignore[index]
    assert "Leave it empty" not in expires["hint"]["text"]  # type: ignore[index]
    assert _block(view, "no_expiry") is not None
    assert _block(view, "exception") is None


def _created(db: Database, label: str) -> Any:
    with db.sessions.begin() as session:
        return session.scalars(
            select(tokens.Token).where(tokens.Token.label == label)).one_or_none()


def test_never_expires_can_be_chosen_on_the_create_form_where_no_cap_applies(
    pbot: SlackBot, standin: SlackStandIn, cdb: Database, bot: SlackBot, db: Database,
) -> None:
    # No policy: the prefilled date is left as Slack sends it, the box is ticked.
    view = _create_form(bot, standin, OWNER)
    assert _block(view, "no_expiry") is not None
    bot.submit(view, form_values(label="forever", scope="read", expires=_day(30),
                                 clear_expiry=True))
    made = _created(db, "forever")
    assert made is not None and made.expires_at is None
    # Under admin=30,write=90 a member is offered read (uncapped) and write: the box is
    # drawn, says it is for read tokens only, and is refused inline for write.
    view = _create_form(pbot, standin, OWNER)
    assert _block(view, "no_expiry") is not None
    assert "only read tokens" in _block(view, "expires")["hint"]["text"]  # type: ignore[index]
    pbot.submit(view, form_values(label="w-forever", scope="write", expires=_day(45),
                                  clear_expiry=True))
    assert pbot.acks[-1]["errors"] == {
        "expires": f"write tokens must expire within 90 days: on or before {_day(90)}"}
    assert _created(cdb, "w-forever") is None
    pbot.submit(view, form_values(label="r-forever", scope="read", expires=_day(45),
                                  clear_expiry=True))
    made = _created(cdb, "r-forever")
    assert made is not None and made.expires_at is None


def test_under_a_later_cap_a_token_that_never_expires_keeps_it_on_a_label_edit(
    make_settings: Callable[..., Settings], standin: SlackStandIn, db: Database,
) -> None:
    every = make_settings(SLACK_API_URL=standin.api_url, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                          SLACK_BOT_TOKEN="xoxb-test", TOKENBOT_MAX_LIFETIME_DAYS="14")
    old = seed(db, label="old", scope="read").token  # made before the policy: no expiry
    with running_bot(every, db, standin) as harness:
        harness.click(row_buttons(_table(harness, standin), old.public_id)[ActionId.EDIT])
        edit = standin.wait_for("views.open")[-1].body["view"]
        expires = _block(edit, "expires")
        assert expires is not None and expires["optional"] is True
        assert "initial_date" not in expires["element"]
        harness.submit(edit, form_values(label="old but renamed", scope="read", expires=None))
        after = load(db, old.public_id)
        assert after is not None and after.label == "old but renamed"
        assert after.expires_at is None


def test_under_a_cap_on_every_scope_the_date_is_required(
    make_settings: Callable[..., Settings], standin: SlackStandIn, db: Database,
) -> None:
    every = make_settings(SLACK_API_URL=standin.api_url, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                          SLACK_BOT_TOKEN="xoxb-test", TOKENBOT_MAX_LIFETIME_DAYS="14")
    with running_bot(every, db, standin) as harness:
        view = _create_form(harness, standin, OWNER)
        expires = _block(view, "expires")
        assert expires is not None and expires["optional"] is False
        assert expires["element"]["initial_date"] == _day(14)
        assert "never" not in expires["hint"]["text"].lower()
        # a dated token's edit form has no "Remove the expiry date" box under the cap
        created = seed(db, scope="read", expires_on=utcnow().date() + dt.timedelta(days=5))
        harness.click(row_buttons(_table(harness, standin), created.token.public_id)[
            ActionId.EDIT])
        edit = standin.wait_for("views.open", 2)[-1].body["view"]
        assert _block(edit, "no_expiry") is None


def test_a_refusal_is_inline_on_the_date_and_an_admin_may_give_a_reason(
    pbot: SlackBot, standin: SlackStandIn, cdb: Database,
) -> None:
    view = _create_form(pbot, standin, OWNER)
    pbot.submit(view, form_values(label="deploy", scope="write", expires=_day(120)))
    answer = pbot.acks[-1]
    assert answer["response_action"] == "errors"
    assert answer["errors"] == {
        "expires": f"write tokens must expire within 90 days: on or before {_day(90)}"}
    pbot.submit(view, form_values(label="deploy", scope="write", expires=None))
    assert pbot.acks[-1]["errors"]["expires"].startswith("write tokens must expire")
    assert "deploy" not in texts(_table(pbot, standin))

    admin_view = _create_form(pbot, standin, ADMIN)
    # a reason for an expiry within the cap is refused on its field, not dropped unsaid
    answered = len(pbot.acks)
    pbot.submit(admin_view, {**form_values(label="vendor", scope="write", expires=_day(60)),
                             **_exception("just in case")}, user=ADMIN)
    assert len(pbot.acks) == answered + 1
    assert pbot.acks[-1]["errors"] == {"exception": (
        f"No exception is needed: write tokens may expire on or before {_day(90)} without "
        "one. Leave the reason empty.")}
    assert "vendor" not in texts(_table(pbot, standin, ADMIN))
    answered = len(pbot.acks)
    pbot.submit(admin_view, {**form_values(label="vendor", scope="write", expires=_day(200)),
                             **_exception("vendor <contract> until 2028")}, user=ADMIN)
    assert len(pbot.acks) == answered  # an empty acknowledgement: created
    rows = _table(pbot, standin, user=ADMIN)
    shown = texts(rows)
    assert "Policy exception: vendor &lt;contract&gt; until 2028" in shown
    assert "Over policy" not in shown


def test_the_edit_form_shows_the_exception_to_admins_and_the_refusal_to_owners(
    pbot: SlackBot, standin: SlackStandIn, cdb: Database, capped: Settings,
) -> None:
    actor = tokens.Actor(team_id="T1", user_id=ADMIN, is_admin=True)
    with cdb.sessions.begin() as session:
        token = tokens.create_token(session, box=cdb.box, actor=actor, label="vendor",
                                    scope="write", scopes=["read", "write", "admin"], now=utcnow(),
                                    expires_on=utcnow().date() + dt.timedelta(days=200),
                                    owner=OWNER, exception="contract",
                                    policy=policy_of(capped))
    public_id = token.token.public_id
    pbot.click(row_buttons(_table(pbot, standin, ADMIN), public_id)[ActionId.EDIT], user=ADMIN)
    view = standin.wait_for("views.open")[-1].body["view"]
    assert _block(view, "exception")["element"]["initial_value"] == "contract"  # type: ignore[index]
    # The owner's form has no such field; pushing the date further is refused inline.
    pbot.click(row_buttons(_table(pbot, standin), public_id)[ActionId.EDIT])
    view = standin.wait_for("views.open", 2)[-1].body["view"]
    assert _block(view, "exception") is None
    pbot.submit(view, form_values(label="vendor", scope="write", expires=_day(300)))
    assert "on or before" in pbot.acks[-1]["errors"]["expires"]
    # a label edit of theirs keeps the admin's exception
    pbot.submit(view, form_values(label="vendor api", scope="write", expires=_day(200)))
    after = load(cdb, public_id)
    assert after is not None and after.label == "vendor api"
    assert after.policy_exception == "contract"
    assert audit_actions(cdb, public_id) == ["create", "edit"]


    # An admin clears the exception's field: the exception is removed (the expiry is
    # brought within the cap in the same edit; clearing it alone is refused on the date).
    pbot.click(row_buttons(_table(pbot, standin, ADMIN), public_id)[ActionId.EDIT], user=ADMIN)
    view = standin.wait_for("views.open", 3)[-1].body["view"]
    assert _block(view, "exception")["element"]["initial_value"] == "contract"  # type: ignore[index]
    cleared = {"exception": {ActionId.EXCEPTION_INPUT.value: {"type": "plain_text_input",
                                                              "value": None}}}
    answered = len(pbot.acks)
    pbot.submit(view, {**form_values(label="vendor api", scope="write", expires=_day(200)),
                       **cleared}, user=ADMIN)
    assert len(pbot.acks) == answered + 1
    assert pbot.acks[-1]["errors"]["expires"].startswith("write tokens must expire")
    assert load(cdb, public_id).policy_exception == "contract"  # type: ignore[union-attr]
    pbot.submit(view, {**form_values(label="vendor api", scope="write", expires=_day(60)),
                       **cleared}, user=ADMIN)
    after = load(cdb, public_id)
    assert after is not None and after.policy_exception is None
    assert after.expires_on == utcnow().date() + dt.timedelta(days=60)
    assert "Policy exception" not in texts(_table(pbot, standin, ADMIN))


def test_the_table_flags_a_token_over_a_cap_set_after_it_was_made(
    pbot: SlackBot, standin: SlackStandIn, cdb: Database,
) -> None:
    forever = seed(cdb, label="forever", scope="write").token  # made without the policy
    within = seed(cdb, label="within", scope="write",
                  expires_on=utcnow().date() + dt.timedelta(days=10)).token
    uncapped = seed(cdb, label="reader", scope="read").token
    blocks = _table(pbot, standin)
    rows = {b["block_id"].split(":", 1)[1]: texts([b]) for b in blocks
            if b.get("block_id", "").startswith("row:")}
    assert "Over policy" in rows[forever.public_id]
    assert "Over policy" not in rows[within.public_id]
    assert "Over policy" not in rows[uncapped.public_id]
    assert load(cdb, forever.public_id).expires_at is None  # type: ignore[union-attr]


def test_extend_30_days_from_a_digest_is_refused_beyond_the_cap(
    make_settings: Callable[..., Settings], standin: SlackStandIn,
) -> None:
    from bot.alerts.scheduler import run_pass
    from bot.slack.client import make_web_client
    from tests.test_alerts_actions import _click, _element

    settings = make_settings(SLACK_API_URL=standin.api_url, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                             SLACK_BOT_TOKEN="xoxb-test", TOKENBOT_ALERT_CHANNEL="CALERTS",
                             TOKENBOT_MAX_LIFETIME_DAYS="write=30")
    database = Database(settings, auto_upgrade=False)
    try:
        token = seed(database, label="deploy", scope="write",
                     expires_on=utcnow().date() + dt.timedelta(days=5)).token
        report = run_pass(settings=settings, database=database,
                          client=make_web_client(settings), now=utcnow(), post_interval=0.0)
        assert report.failed == 0
        post = next(c for c in standin.calls_to("chat.postMessage")
                    if c.body["channel"] == "CALERTS")
        with database.sessions() as session:
            ts = session.scalar(select(OutboxMessage.message_ts).where(
                OutboxMessage.message_channel == "CALERTS"))
        with running_bot(settings, database, standin) as harness:
            extend = _element(post.body["blocks"], token.public_id, "alert_extend")
            _click(harness, extend, ts=ts, user=OWNER, channel="CALERTS")
        told = standin.calls_to("chat.postEphemeral")[-1].body["text"]
        assert f"write tokens must expire within 30 days: on or before {_day(30)}" in told
        assert load(database, token.public_id).expires_at == token.expires_at  # type: ignore[union-attr]
    finally:
        database.dispose()


def test_a_maximal_exception_is_shortened_on_its_row_and_the_page_stays_valid(
    pbot: SlackBot, standin: SlackStandIn, cdb: Database, capped: Settings,
) -> None:
    # 500 characters that each escape to five (&amp;) under a 100-character label of them.
    reason = "&" * EXCEPTION_MAX
    actor = tokens.Actor(team_id="T1", user_id=ADMIN, is_admin=True)
    with cdb.sessions.begin() as session:
        made = tokens.create_token(session, box=cdb.box, actor=actor, label="&" * tokens.LABEL_MAX,
                                   scope="write", scopes=["read", "write", "admin"], now=utcnow(),
                                   expires_on=utcnow().date() + dt.timedelta(days=200),
                                   owner=OWNER, exception=reason, policy=policy_of(capped))
    blocks = _table(pbot, standin)  # the stand-in refuses a section over 3,000 characters
    row = next(b for b in blocks if b.get("block_id", "").startswith("row:"))
    assert len(row["text"]["text"]) <= 3000
    assert "Policy exception: " + "&amp;" * 149 + "…" in row["text"]["text"]
    # the whole reason is on the admin's edit form
    pbot.click(row_buttons(_table(pbot, standin, ADMIN), made.token.public_id)[ActionId.EDIT],
               user=ADMIN)
    view = standin.wait_for("views.open")[-1].body["view"]
    assert _block(view, "exception")["element"]["initial_value"] == reason  # type: ignore[index]


def test_a_cleared_exception_stays_cleared_when_the_token_changed_meanwhile(
    pbot: SlackBot, standin: SlackStandIn, cdb: Database, capped: Settings,
) -> None:
    actor = tokens.Actor(team_id="T1", user_id=ADMIN, is_admin=True)
    with cdb.sessions.begin() as session:
        made = tokens.create_token(session, box=cdb.box, actor=actor, label="vendor",
                                   scope="write", scopes=["read", "write", "admin"], now=utcnow(),
                                   expires_on=utcnow().date() + dt.timedelta(days=200),
                                   owner=ADMIN, exception="contract", policy=policy_of(capped))
    public_id = made.token.public_id
    pbot.click(row_buttons(_table(pbot, standin, ADMIN), public_id)[ActionId.EDIT], user=ADMIN)
    view = standin.wait_for("views.open")[-1].body["view"]
    with cdb.sessions.begin() as session:  # meanwhile, from the CLI
        tokens.edit_token(session, actor=actor, public_id=public_id,
                          expected_version=made.token.version, scopes=[], now=utcnow(),
                          label="vendor api", policy=policy_of(capped))
    cleared = {"exception": {ActionId.EXCEPTION_INPUT.value: {"type": "plain_text_input",
                                                              "value": None}}}
    typed = {**form_values(label="vendor", scope="write", expires=_day(60)), **cleared}
    pbot.submit(view, typed, user=ADMIN)
    again = pbot.acks[-1]
    assert again["response_action"] == "update"
    redrawn = again["view"]
    field = next(b for b in redrawn["blocks"] if b.get("block_id", "").startswith("exception"))
    assert "initial_value" not in field["element"]  # still cleared, as the admin left it
    assert load(cdb, public_id).policy_exception == "contract"  # type: ignore[union-attr]

    def renamed(days: int) -> dict[str, Any]:
        return {k if k != "exception" else field["block_id"]: v for k, v in
                {**form_values(label="vendor api", scope="write", expires=_day(days)),
                 **cleared}.items()}

    # the reason is still gone: beyond the cap without one is refused, not kept silently
    answered = len(pbot.acks)
    pbot.submit(redrawn, renamed(200), user=ADMIN)
    assert len(pbot.acks) == answered + 1
    assert pbot.acks[-1]["errors"]["expires"].startswith("write tokens must expire")
    assert load(cdb, public_id).policy_exception == "contract"  # type: ignore[union-attr]
    pbot.submit(redrawn, renamed(60), user=ADMIN)
    after = load(cdb, public_id)
    assert after is not None and after.policy_exception is None
    assert after.expires_on == utcnow().date() + dt.timedelta(days=60)
