"""Rotation's Slack surfaces: the "Rotate…" modal (now, or with an overlap that waits for
the new secret's first use) and the owner's direct message about how the overlap ended.
Pure builders."""

from __future__ import annotations

import datetime as dt

from slack_sdk.models.blocks import (
    Block,
    InputBlock,
    MarkdownTextObject,
    Option,
    RadioButtonsElement,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.errors import ValidationError
from bot.services.rotation import RotationEnding
from bot.slack.ids import ROTATE_NOW_VALUE, ROTATE_OVERLAP_VALUE, ActionId, BlockId, CallbackId
from bot.slack.state import ModalMetadata, mapping
from bot.slack.views.formatting import code, escape, slack_date
from bot.slack.views.messages import Message
from bot.slack.views.elements import plain
from bot.texts import (
    CONFIRMATIONS,
    ROTATE_OVERLAP_NOTE,
    ROTATION_IN_PROGRESS_NOTE,
    Lifecycle,
)

#: The overlaps the modal offers: (value, label, duration).
OVERLAPS: tuple[tuple[str, str, dt.timedelta], ...] = (
    ("1h", "1 hour", dt.timedelta(hours=1)),
    ("24h", "24 hours", dt.timedelta(hours=24)),
    ("7d", "7 days", dt.timedelta(days=7)),
)
_OVERLAP_BY_VALUE = {value: duration for value, _, duration in OVERLAPS}


# -- the "Rotate…" modal ---------------------------------------------------------------------


def rotate_modal(*, label: str, masked: str, metadata: ModalMetadata,
                 retiring: str | None = None) -> View:
    """Rotate now, or keep the old secret until the new one is first used (at most 1 hour,
    24 hours or 7 days); the guide's rotate warning; the guide's confirm label on the
    submit button (Slack cannot make a modal's submit red). ``retiring``: the masked old
    secret of a rotation in progress, which stops either way (said so)."""
    warning = CONFIRMATIONS[Lifecycle.ROTATE]
    lines = [f":warning: {escape(line)}" for line in warning.lines]
    if retiring is not None:
        lines.append(f":warning: {escape(ROTATION_IN_PROGRESS_NOTE)} ({code(retiring)})")
    now_option = Option(value=ROTATE_NOW_VALUE, text=plain("Immediately"))
    overlap_option = Option(
        value=ROTATE_OVERLAP_VALUE,
        text=plain("Keep the old secret working until the new one is first used"),
    )
    overlaps = [Option(value=value, text=plain(f"at most {text}"))
                for value, text, _ in OVERLAPS]
    blocks: list[Block] = [
        SectionBlock(
            block_id=BlockId.ROTATE_WARNING,
            text=MarkdownTextObject(
                text=f"*{escape(label)}* ({code(masked)})\n" + "\n".join(lines)
                + f"\n{escape(ROTATE_OVERLAP_NOTE)}"
            ),
        ),
        InputBlock(
            block_id=BlockId.ROTATE_MODE,
            label=plain("When does the old secret stop?"),
            element=RadioButtonsElement(action_id=ActionId.ROTATE_MODE,
                                        options=[now_option, overlap_option],
                                        initial_option=now_option),
        ),
        InputBlock(
            block_id=BlockId.ROTATE_OVERLAP,
            label=plain("Keep it working at most"),
            element=StaticSelectElement(action_id=ActionId.ROTATE_OVERLAP, options=overlaps,
                                        initial_option=overlaps[1]),
            hint=plain("Only used when the old secret is kept working."),
        ),
    ]
    return View(
        type="modal",
        callback_id=CallbackId.ROTATE,
        title=plain(warning.title),
        submit=plain(warning.confirm),
        close=plain("Cancel"),
        private_metadata=metadata.encode(),
        blocks=blocks,
        # Block Kit has no style on a modal's submit; the warning is in the body.
    )


def read_rotate_form(view: dict[str, object]) -> dt.timedelta | None:
    """The overlap chosen (None: immediately); an unknown choice is a ValidationError."""
    values = mapping(mapping(view.get("state")).get("values"))
    mode = mapping(mapping(mapping(values.get(BlockId.ROTATE_MODE)).get(ActionId.ROTATE_MODE))
                   .get("selected_option")).get("value")
    if mode in (None, ROTATE_NOW_VALUE):
        return None
    chosen = mapping(mapping(mapping(values.get(BlockId.ROTATE_OVERLAP))
                             .get(ActionId.ROTATE_OVERLAP)).get("selected_option")).get("value")
    if mode != ROTATE_OVERLAP_VALUE or not isinstance(chosen, str) or (
            chosen not in _OVERLAP_BY_VALUE):
        raise ValidationError("Choose how long the old secret may keep working.",
                              field=BlockId.ROTATE_OVERLAP)
    return _OVERLAP_BY_VALUE[chosen]


# -- the owner's direct message -------------------------------------------------------------


def _hhmm(moment: dt.datetime) -> str:
    """The time of day in the reader's time zone (UTC as the fallback text)."""
    return slack_date(moment, "{time}", "%H:%M UTC")


def rotation_notice_post(*, label: str, public_id: str, ending: str, caller: str | None,
                         at: dt.datetime) -> Message:
    """The owner's DM about how a rotation ended (``ending``: a ``RotationEnding``)."""
    name = f"*{escape(label)}* ({code(public_id)})"
    if ending == RotationEnding.SWITCHED:
        text = (f"Rotation of {name}: switched at {_hhmm(at)}, first used by "
                f"{escape(caller or 'a caller')}. The old secret no longer works.")
    else:
        text = (f"Rotation of {name}: the deadline passed at {_hhmm(at)} and the new "
                "secret was never used; something is likely still on the old one, which no "
                "longer works.")
    block = SectionBlock(block_id=BlockId.ROTATION_NOTICE, text=MarkdownTextObject(text=text))
    return Message(text=text, blocks=[block])
