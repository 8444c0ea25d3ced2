"""A live secret seen in a Slack message: the ephemeral warning to whoever posted it (with
the row's Rotate and Disable for its owner or an admin), and the owner's DM and the alert
channel's post (an outbox kind). Pure builders; never the secret, only its masked form."""

from __future__ import annotations

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    MarkdownTextObject,
    SectionBlock,
)

from bot.models import Audience
from bot.services.actor import Actor
from bot.services.leaks import Leak
from bot.slack.actions import BY_ID
from bot.slack.ids import ActionId, BlockId
from bot.slack.state import RowRef, TableState
from bot.slack.views.formatting import code, escape, mention, truncate
from bot.slack.views.messages import Message
from bot.slack.views.elements import action_button, open_table
from bot.texts import (
    LEAK_DISABLED,
    LEAK_NOTICE,
    LEAK_OLD_ADVICE,
    LEAK_OLD_NOTICE,
    LEAK_OLD_RETIRED,
    LEAK_OLD_WARNING,
    LEAK_OWNER_TOLD,
    LEAK_WARNING,
)

_SIREN = ":rotating_light: "


def _label(label: str) -> str:
    return f"*{escape(truncate(label, 100))}*"


def _buttons(leak: Leak) -> list[ActionId]:
    """Rotate and Disable; for the old secret of a rotation still in progress, Retire old
    secret now instead of Rotate; nothing to disable on a token just disabled."""
    if leak.old_secret and not leak.retired:
        return [ActionId.ROTATION_RETIRE, ActionId.DISABLE]
    return [ActionId.ROTATE] + ([] if leak.disabled else [ActionId.DISABLE])


def leak_warning(leak: Leak, *, viewer: Actor) -> Message:
    """To whoever posted the secret, in that conversation: what it is and what to do;
    Rotate (or Retire old secret now) and Disable when they may act on the token, which
    the table opened after shows (filtered to it)."""
    label, masked = _label(leak.label), code(leak.masked)
    if leak.old_secret:
        text = LEAK_OLD_WARNING.format(
            label=label, masked=masked,
            advice=LEAK_OLD_RETIRED if leak.retired else LEAK_OLD_ADVICE)
    else:
        text = LEAK_WARNING.format(label=label, masked=masked)
    if leak.disabled:
        text += f"\n{LEAK_DISABLED}"
    may_act = viewer.may_manage(leak.owner)
    if not may_act:
        text += " " + LEAK_OWNER_TOLD.format(owner=mention(leak.owner))
    blocks: list[Block] = [SectionBlock(block_id=BlockId.LEAK,
                                        text=MarkdownTextObject(text=_SIREN + text))]
    if may_act:
        value = RowRef(public_id=leak.public_id, version=leak.version,
                       state=TableState(token=leak.public_id)).encode()
        blocks.append(ActionsBlock(block_id=BlockId.LEAK_ACTIONS, elements=[
            action_button(BY_ID[action_id], value, leak.label) for action_id in _buttons(leak)]))
    return Message(text=text, blocks=blocks)


def _where(channel: str, channel_type: str, permalink: str | None) -> str:
    """The message as a link when its permalink is known (Slack's, never user text), and
    its conversation: a channel by its mention; a direct message (with Tokenbot: the only
    ones it sees) or a group one has no name to show."""
    if channel_type == "im" or channel.startswith("D"):
        place = "a direct message"
    elif channel_type == "mpim":
        place = "a group direct message"
    elif channel_type == "group":
        place = f"the private channel <#{channel}>"
    else:
        place = f"<#{channel}>"
    if permalink and permalink.startswith("https://") and not any(
            c in permalink for c in "<>| "):
        return f"<{permalink}|a message> in {place}"
    return f"a message in {place}"


def _poster(poster: str, *, by_bot: bool, bot_name: str | None) -> str:
    """A person or a bot user by mention; a bot without a user (a webhook, an integration)
    by the name it posted under (its text, escaped), as it has no mention."""
    if not by_bot or poster.startswith(("U", "W")):
        return mention(poster)
    return f"a bot ({escape(truncate(bot_name, 80))})" if bot_name else "a bot"


def leak_notice_post(*, audience: str, label: str, masked: str, owner: str, poster: str,
                     channel: str, permalink: str | None, disabled: bool,
                     public_id: str, channel_type: str = "channel", by_bot: bool = False,
                     bot_name: str | None = None, old_secret: bool = False,
                     retired: bool = False) -> Message:
    """The owner's DM or the alert channel's post: which token (the old secret of a
    rotation in progress: which, and whether Tokenbot retired it), where (a link to the
    message) and who posted it; the channel's names the owner too. "Open in the table"
    (the table filtered to the token) is where its owner or an admin acts."""
    name = _label(label)
    if audience == Audience.CHANNEL:
        name += f" of {mention(owner)}"
    words = {"label": name, "masked": code(masked),
             "where": _where(channel, channel_type, permalink),
             "poster": _poster(poster, by_bot=by_bot, bot_name=bot_name)}
    if old_secret:
        text = LEAK_OLD_NOTICE.format(
            **words, advice=LEAK_OLD_RETIRED if retired else LEAK_OLD_ADVICE)
    else:
        text = LEAK_NOTICE.format(**words)
    if disabled:
        text += f"\n{LEAK_DISABLED}"
    blocks: list[Block] = [
        SectionBlock(block_id=BlockId.LEAK, text=MarkdownTextObject(text=_SIREN + text)),
        ActionsBlock(block_id=BlockId.LEAK_ACTIONS,
                     elements=[open_table(public_id, "Open in the table")]),
    ]
    return Message(text=text, blocks=blocks)
