"""An owner's notice queued while Slack fails is not lost (issue 19): it waits in the
outbox and arrives once Slack is back, exactly once: through the drain after the next
action, or through the next pass. Clicks go through Bolt's pipeline with the stand-in."""

from __future__ import annotations

import datetime as dt

from bot.alerts.scheduler import run_pass
from bot.models import utcnow
from bot.services import outbox
from bot.slack.client import make_web_client
from bot.slack.ids import ActionId
from tests.slack.conftest import ADMIN, OWNER, row_buttons, seed, texts
from tests.support.slack_standin import Failure


def _notices(standin) -> list[str]:
    """The texts of the owner notices Slack holds (whether their poster read the answer)."""
    return [m["text"] for m in standin.posted(OWNER)
            if any(b.get("block_id") == "owner_notice" for b in m.get("blocks") or [])]


def test_a_notice_slack_refused_arrives_with_the_next_actions_drain(
    bot, db, standin, table, slack_settings, monkeypatch
):
    """Slack refuses the DM (it never posts it): the action stands and its notice stays
    queued; the next admin action's drain posts both notices, each once."""
    monkeypatch.setattr(outbox, "BACKOFF_BASE", dt.timedelta(0))  # retry at once
    first = seed(db, label="first", owner=OWNER)
    second = seed(db, label="second", owner=OWNER)
    standin.fail_next("chat.postMessage", Failure(status=200, body={
        "ok": False, "error": "service_is_down"}))
    bot.click(row_buttons(table(user=ADMIN), first.token.public_id)[ActionId.DISABLE],
              user=ADMIN)
    bot.settle()
    assert _notices(standin) == []  # refused: not in Slack
    assert len(standin.calls_to("chat.postMessage")) == 1
    bot.click(row_buttons(table(user=ADMIN), second.token.public_id)[ActionId.DISABLE],
              user=ADMIN)
    bot.settle()
    told = _notices(standin)
    assert sorted(t.split("your token ")[1] for t in told) == ["first.", "second."]
    assert all(f"<@{ADMIN}> disabled" in t for t in told)
    # and the pass has nothing left to post
    later = run_pass(settings=slack_settings, database=db,
                     client=make_web_client(slack_settings),
                     now=utcnow() + outbox.LEASE, post_interval=0.0)
    assert later.messages == 0 and len(_notices(standin)) == 2


def test_a_notice_whose_post_failed_midway_arrives_once_with_the_next_pass(
    bot, db, standin, table, slack_settings
):
    """Slack fails midway (a 503 from its edge, the post not made): the notice may have
    been posted, so it is not posted again blindly; the next pass, once the attempt can
    no longer be in flight, reads the owner's DM history, does not find it, and posts it."""
    created = seed(db, label="payments", owner=OWNER)
    standin.fail_next("chat.postMessage", Failure(status=503, body=None))
    bot.click(row_buttons(table(user=ADMIN), created.token.public_id)[ActionId.DISABLE],
              user=ADMIN)
    bot.settle()
    assert _notices(standin) == []
    redrawn = [c for c in standin.calls_to("response_url") if c.body.get("replace_original")]
    assert "Disabled *payments*" in texts(redrawn[-1].body["blocks"])  # the action stands
    client = make_web_client(slack_settings)
    back = run_pass(settings=slack_settings, database=db, client=client,
                    now=utcnow() + outbox.IN_FLIGHT + dt.timedelta(minutes=1),
                    post_interval=0.0)
    assert (back.sent, back.failed, back.recovered) == (1, 0, 0), back.to_dict()
    (told,) = _notices(standin)
    assert told == f"<@{ADMIN}> disabled your token payments."
    again = run_pass(settings=slack_settings, database=db, client=client,
                     now=utcnow() + outbox.LEASE + outbox.IN_FLIGHT, post_interval=0.0)
    assert again.messages == 0 and len(_notices(standin)) == 1
