"""A live secret seen in a Slack message: the ephemeral warning to whoever posted it (with
the row's Rotate and Disable for its owner or an admin), and the owner's DM and the alert
channel's post (an outbox kind). Pure builders; never the secret, only its masked form."""

from __future__ import annotations

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.models import Audience
from bot.services.actor import Actor
from bot.services.leaks import Leak
from bot.slack.actions import BY_ID
from bot.slack.ids import ActionId, BlockId
from bot.slack.state import RowRef, TableState
from bot.slack.views.confirms import confirm_dialog, style_of
from bot.slack.views.formatting import code, escape, mention, truncate
from bot.slack.views.lifecycle import Post
from bot.slack.views.messages import Message
from bot.texts import LEAK_DISABLED, LEAK_NOTICE, LEAK_OWNER_TOLD, LEAK_WARNING

_SIREN = ":rotating_light: "


def _button(action_id: ActionId, value: str, *, label: str) -> ButtonElement:
    """A row action of the registry (its text, its confirmation) on this token."""
    action = BY_ID[action_id]
    confirm = action.confirm
    return ButtonElement(
        text=PlainTextObject(text=action.button, emoji=False), action_id=action_id,
        value=value, style=style_of(confirm) if confirm else None,
        confirm=confirm_dialog(confirm, label) if confirm else None)


def leak_warning(leak: Leak, *, viewer: Actor) -> Message:
    """To whoever posted the secret, in that conversation: what it is and what to do;
    Rotate (and Disable, unless it was just disabled) when they may act on the token,
    which the table opened after shows (filtered to it)."""
    text = LEAK_WARNING.format(label=f"*{escape(truncate(leak.label, 100))}*",
                               masked=code(leak.masked))
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
        actions = [ActionId.ROTATE] + ([] if leak.disabled else [ActionId.DISABLE])
        blocks.append(ActionsBlock(block_id=BlockId.LEAK_ACTIONS, elements=[
            _button(action_id, value, label=leak.label) for action_id in actions]))
    return Message(text=text, blocks=blocks)


def _where(channel: str, permalink: str | None) -> str:
    """The message as a link when its permalink is known (Slack's, never user text), and
    its conversation (a DM with the bot has no name to show)."""
    place = "a direct message" if channel.startswith("D") else f"<#{channel}>"
    if permalink and permalink.startswith("https://") and not any(
            c in permalink for c in "<>| "):
        return f"<{permalink}|a message> in {place}"
    return f"a message in {place}"


def leak_notice_post(*, audience: str, label: str, masked: str, owner: str, poster: str,
                     channel: str, permalink: str | None, disabled: bool,
                     public_id: str) -> Post:
    """The owner's DM or the alert channel's post: which token, where (a link to the
    message) and who posted it; the channel's names the owner too. "Open in the table"
    (the table filtered to the token) is where its owner or an admin acts."""
    name = f"*{escape(truncate(label, 100))}*"
    if audience == Audience.CHANNEL:
        name += f" of {mention(owner)}"
    text = LEAK_NOTICE.format(label=name, masked=code(masked),
                              where=_where(channel, permalink), poster=mention(poster))
    if disabled:
        text += f"\n{LEAK_DISABLED}"
    blocks: list[Block] = [
        SectionBlock(block_id=BlockId.LEAK, text=MarkdownTextObject(text=_SIREN + text)),
        ActionsBlock(block_id=BlockId.LEAK_ACTIONS, elements=[ButtonElement(
            text=PlainTextObject(text="Open in the table", emoji=False),
            action_id=ActionId.OPEN_TABLE, value=TableState(token=public_id).encode())]),
    ]
    return Post(text=text, blocks=blocks)
