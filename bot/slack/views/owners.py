"""A token's owner in Slack: the "Reassign…" modal, the direct message to the old and
the new owner, and the post about a deactivated owner's tokens (first drawing and every
redraw). Pure builders."""

from __future__ import annotations

import re
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    SectionBlock,
    UserSelectElement,
)
from slack_sdk.models.views import View

from bot.errors import ValidationError
from bot.services.departed import Acted, DepartedItem, DepartedPost
from bot.services.owners import FIELD
from bot.slack.ids import USER_ID_PATTERN, ActionId, BlockId, CallbackId, row_block_id
from bot.slack.state import ModalMetadata, RowRef, mapping
from bot.slack.views.confirms import confirm_dialog
from bot.slack.views.formatting import code, escape, mention
from bot.slack.views.messages import Message, actor_text
from bot.slack.views.elements import button, open_table, plain
from bot.texts import Lifecycle

_USER_ID = re.compile(USER_ID_PATTERN)
assert FIELD == BlockId.NEW_OWNER  # a refused new owner is shown on the picker


# -- the "Reassign…" modal -------------------------------------------------------------


def reassign_modal(*, label: str, masked: str, owner: str, metadata: ModalMetadata) -> View:
    """Who owns it now, and a user picker for the new owner."""
    return View(
        type="modal",
        callback_id=CallbackId.REASSIGN,
        title=plain("Reassign Token"),
        submit=plain("Reassign"),
        close=plain("Cancel"),
        private_metadata=metadata.encode(),
        blocks=[
            SectionBlock(text=MarkdownTextObject(
                text=f"*{escape(label)}* ({code(masked)}) is owned by {mention(owner)}.\n"
                     "The new owner answers for it: its reminders and notices go to them, "
                     "and they can act on it. The owners are told (not one who has "
                     "left).")),
            InputBlock(block_id=BlockId.NEW_OWNER, label=plain("New owner"),
                       element=UserSelectElement(action_id=ActionId.NEW_OWNER_SELECT,
                                                 placeholder=plain("Choose a person"))),
        ],
    )


def read_reassign_form(view: dict[str, Any]) -> str:
    """The chosen user's id; none (or not a user id) is a ValidationError on the picker."""
    values = mapping(mapping(view.get("state")).get("values"))
    chosen = mapping(mapping(values.get(BlockId.NEW_OWNER)).get(ActionId.NEW_OWNER_SELECT)
                     ).get("selected_user")
    if not isinstance(chosen, str) or not _USER_ID.fullmatch(chosen):
        raise ValidationError("Choose the new owner.", field=FIELD)
    return chosen


# -- the owners' direct message ----------------------------------------------------------


def reassign_notice(*, recipient: str, actor: str, source: str, label: str, masked: str,
                    public_id: str, before: str, after: str) -> Message:
    """To the old owner ("… is now owned by @new") or the new one ("… is now yours")."""
    who = actor_text(actor, source)
    token = f"*{escape(label)}* ({code(masked)})"
    if recipient == after:
        text = (f"{who} reassigned the token {token} to you (from {mention(before)}). "
                "You now answer for it: its reminders and notices come to you.")
    else:
        text = (f"{who} reassigned your token {token} to {mention(after)}. "
                "Its reminders and notices now go to them.")
    blocks: list[Block] = [
        SectionBlock(block_id=BlockId.REASSIGN_NOTICE, text=MarkdownTextObject(text=text)),
        ActionsBlock(block_id=BlockId.REASSIGN_NOTICE_ACTIONS,
                     elements=[open_table(public_id, "Open in the table")]),
    ]
    return Message(text=f"The token {escape(label)} was reassigned.", blocks=blocks)


# -- a departed owner's tokens -----------------------------------------------------------


def _outcome(item: DepartedItem) -> str:
    by = f" by {mention(item.by)}" if item.by else ""
    if item.outcome == Acted.REASSIGNED:
        to = f" to {mention(item.to)}" if item.to else ""
        return f":white_check_mark: Reassigned{to}{by}."
    if item.outcome == Acted.DISABLED:
        return f":no_entry_sign: *Disabled*{by}. Requests using it now fail."
    return ":wastebasket: Deleted."


def _item_blocks(item: DepartedItem) -> list[Block]:
    lines = [f"*{escape(item.label)}*  {code(item.masked)}  ·  Scope: {code(item.scope)}"]
    if not item.actionable:
        lines.append(_outcome(item))
    blocks: list[Block] = [SectionBlock(
        block_id=row_block_id(BlockId.DEPARTED_ITEM, item.public_id),
        text=MarkdownTextObject(text="\n".join(lines)))]
    if item.actionable:
        # The picker carries no value: its block id names the token and its version.
        blocks.append(ActionsBlock(
            block_id=row_block_id(BlockId.DEPARTED_ITEM_ACTIONS,
                                  f"{item.public_id}:{item.version}"),
            elements=[
                UserSelectElement(action_id=ActionId.DEPARTED_REASSIGN,
                                  placeholder=plain("Reassign to…")),
                button("Disable", ActionId.DEPARTED_DISABLE,
                       RowRef(public_id=item.public_id, version=item.version).encode(),
                       style="danger", confirm=confirm_dialog(Lifecycle.DISABLE, item.label)),
            ]))
    return blocks


def departed_text(post: DepartedPost) -> str:
    """The headline, also the notification text (no user-supplied text in it)."""
    noun = "token" if post.total == 1 else "tokens"
    return f"{mention(post.user)} was deactivated; they own {post.total} {noun}"


def departed_post(post: DepartedPost) -> Message:
    """The first drawing and every redraw: per token Reassign (a user picker) and Disable,
    or what was done."""
    done = sum(1 for item in post.items if not item.actionable)
    intro = ("A workspace admin can give each token a new owner, or disable the ones "
             "nothing needs any more.")
    if done:
        intro += f" {done} dealt with."
    blocks: list[Block] = [SectionBlock(
        block_id=BlockId.DEPARTED_HEADER,
        text=MarkdownTextObject(text=f":wave: *{departed_text(post)}*\n{intro}"))]
    for item in post.items:
        blocks.extend(_item_blocks(item))
    rest = post.total - len(post.items)
    if rest > 0:
        blocks.append(ContextBlock(block_id=BlockId.DEPARTED_MORE, elements=[
            MarkdownTextObject(text=f"…and {rest} more: `/tokens` filtered to "
                                    f"{mention(post.user)} lists them all.")]))
    return Message(text=departed_text(post), blocks=blocks)
