"""The create and "Edit Access Token" modals, and a small notice modal."""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    CheckboxesElement,
    ContextBlock,
    ConversationFilter,
    ConversationSelectElement,
    DatePickerElement,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.slack.ids import NO_EXPIRY_VALUE, ActionId, BlockId, CallbackId, row_block_id
from bot.errors import PastExpiryError, PermissionDeniedError, ValidationError
from bot.models import Token
from bot.services.policy import EXCEPTION_MAX, Policy
from bot.services.tokens import LABEL_MAX
from bot.slack.views.formatting import code, mention
from bot.slack.views.elements import plain
from bot.slack.state import ModalMetadata, mapping


class FormMode(enum.StrEnum):
    CREATE = "create"
    EDIT = "edit"


_TITLES = {
    FormMode.CREATE: ("Create Access Token", "Create Access Token", CallbackId.CREATE),
    FormMode.EDIT: ("Edit Access Token", "Update Access Token", CallbackId.EDIT),
}


def _scope_option(scope: str) -> Option:
    return Option(text=plain(scope), value=scope)


def _is_block(block_id: object, base: BlockId) -> bool:
    """``base`` itself, or ``base`` renamed for a reset (``scope:4``)."""
    return isinstance(block_id, str) and (block_id == base or block_id.startswith(f"{base}:"))


def token_form(
    *,
    mode: FormMode,
    scopes: Sequence[str],
    metadata: ModalMetadata,
    token: Token | None = None,
    typed: FormValues | None = None,
    notice: str | None = None,
    reset: Collection[str] = (),
    policy: Policy,
    admin: bool = False,
    now: dt.datetime | None = None,
) -> View:
    """Label (required), scope (required), expiry (optional where no lifetime cap
    applies), an optional alert channel, and for an admin under a cap the reason for an
    exception. On edit every field starts with the token's current value; ``typed`` (what
    the user submitted) wins over it, so a form answered with ``notice`` (safe mrkdwn: why
    it was not saved) keeps what was typed. A new form (``now``) starts with the policy's
    default expiry. ``scopes``: what the viewer may choose. ``reset``: fields shown at a
    value other than what the user's form held; Slack keeps what an input held while its
    block and action ids stay, so these get new block ids."""
    title, submit, callback_id = _TITLES[mode]
    generation = token.version if token is not None else 0

    def block_id(base: BlockId, name: str) -> str:
        return row_block_id(base, generation) if name in reset else base

    blocks: list[Block] = []
    if notice is not None:
        blocks.append(SectionBlock(block_id=BlockId.NOTICE,
                                   text=MarkdownTextObject(text=f":warning: {notice}")))
    shown = typed or (FormValues.of(token) if token is not None else None)
    if token is not None:
        blocks.append(
            ContextBlock(
                elements=[
                    MarkdownTextObject(
                        text=f"Token {code(token.secret_masked)} · "
                        f"owner {mention(token.owner)}"
                    )
                ]
            )
        )
    blocks.append(
        InputBlock(
            block_id=block_id(BlockId.LABEL, "label"),
            label=plain("Label"),
            element=PlainTextInputElement(
                action_id=ActionId.LABEL_INPUT,
                initial_value=shown.label if shown is not None and shown.label else None,
                max_length=LABEL_MAX,
                placeholder=plain("e.g. CI deploy"),
            ),
            hint=plain(f"Required: the token's name, up to {LABEL_MAX} characters."),
        )
    )
    options = [_scope_option(scope) for scope in scopes]
    initial = None
    if shown is not None and shown.scope in scopes:
        initial = _scope_option(shown.scope)
    blocks.append(
        InputBlock(
            block_id=block_id(BlockId.SCOPE, "scope"),
            label=plain("Scope"),
            element=StaticSelectElement(
                action_id=ActionId.SCOPE_SELECT,
                placeholder=plain("Choose a role"),
                options=options,
                initial_option=initial,
            ),
            hint=plain("Required: the role / permission level of the token."),
        )
    )
    blocks.extend(_lifetime_blocks(shown, token, scopes=scopes, policy=policy, admin=admin,
                                   now=now, block_id=block_id))
    blocks.append(
        InputBlock(
            block_id=block_id(BlockId.ALERT_CHANNEL, "alert_channel"),
            label=plain("Alert channel"),
            optional=True,
            element=ConversationSelectElement(
                action_id=ActionId.ALERT_CHANNEL_SELECT,
                placeholder=plain("The workspace's alert channel"),
                initial_conversation=shown.alert_channel if shown is not None else None,
                filter=ConversationFilter(include=["public", "private"],
                                          exclude_bot_users=True),
            ),
            hint=plain(
                "Optional: where expiry reminders for this token are posted. "
                "The owner is always reminded by direct message too."
            ),
        )
    )
    return View(
        type="modal",
        callback_id=callback_id,
        title=plain(title),
        submit=plain(submit),
        close=plain("Cancel"),
        private_metadata=metadata.encode(),
        blocks=blocks,
    )


def _lifetime_blocks(shown: FormValues | None, token: Token | None, *, scopes: Sequence[str],
                     policy: Policy, admin: bool, now: dt.datetime | None,
                     block_id: Callable[[BlockId, str], str]) -> list[Block]:
    """The expiry (a new form starts with the policy's default) and, for an admin under a
    lifetime cap, the exception's reason."""
    day = shown.expires_on if shown is not None else None
    if shown is None and token is None and now is not None:
        day = policy.default_expiry(scopes, now)
    blocks = _expiry_blocks(
        day, dated=token is None or token.expires_on is not None,
        never=policy.never_allowed(scopes) if policy.capped else None,
        keeps_none=token is not None and token.expires_on is None,
        block_id=block_id(BlockId.EXPIRES, "expires_on"),
        box_id=block_id(BlockId.NO_EXPIRY, "expires_on"),
    )
    if admin and policy.capped:
        blocks.append(_exception_block(shown.exception if shown is not None else None,
                                       policy, block_id(BlockId.EXCEPTION, "exception")))
    return blocks


def _caps_text(policy: Policy) -> str:
    every = policy.caps.get("")
    named = ", ".join(f"{scope} {days} days" for scope, days in policy.caps.items() if scope)
    if every is not None:
        return f"{named}; others {every} days" if named else f"{every} days"
    return named


def _exception_block(reason: str | None, policy: Policy, block_id: str) -> InputBlock:
    return InputBlock(
        block_id=block_id,
        label=plain("Policy exception (admins)"),
        optional=True,
        element=PlainTextInputElement(action_id=ActionId.EXCEPTION_INPUT,
                                      initial_value=reason or None, max_length=EXCEPTION_MAX,
                                      placeholder=plain("Why this token may live longer")),
        hint=plain(f"Only to go beyond the lifetime policy ({_caps_text(policy)}): the "
                   "reason is audited and shown on the token's row."),
    )


def _expiry_blocks(day: dt.date | None, *, dated: bool, never: list[str] | None,
                   keeps_none: bool, block_id: str, box_id: str) -> list[Block]:
    """The date picker, and where it may be drawn with a date (``dated``: a new token, or
    one that has an expiry) the box that removes it: a picker drawn with a date cannot be
    emptied. Under a lifetime policy (``never``: the scopes that may never expire) "never"
    is offered only for those. A token that never expires (``keeps_none``) may keep that
    on edit even under a cap set later: the date stays optional."""
    boxed = dated and (never is None or bool(never))
    way = never_expires_way(boxed)
    if never is not None:
        way = f"{way[:-1]} (only {', '.join(never)} tokens)." if never else (
            "Required: the lifetime policy caps every scope offered here.")
    if keeps_none and never is not None and not never:
        way = "Leave it empty to keep this token without an expiry (it is over the policy)."
    optional = never is None or bool(never) or keeps_none
    blocks: list[Block] = [
        InputBlock(
            block_id=block_id,
            label=plain("Expiry date"),
            optional=optional,
            element=DatePickerElement(
                action_id=ActionId.EXPIRES_PICK,
                initial_date=day.isoformat() if day is not None else None,
                placeholder=plain("Never expires" if optional else "Pick a date"),
            ),
            hint=plain(
                f"{'Optional: must' if optional else 'Must'} be a future date; the token "
                f"stops working at 00:00 UTC of that day. {way}"
            ),
        )
    ]
    if boxed:
        never = Option(text=plain(REMOVE_EXPIRY), value=NO_EXPIRY_VALUE)
        blocks.append(
            InputBlock(
                block_id=box_id,
                label=plain("Clear expiry"),
                optional=True,
                element=CheckboxesElement(action_id=ActionId.NO_EXPIRY_CHECK, options=[never]),
            )
        )
    return blocks


REMOVE_EXPIRY = "Remove the expiry date (never expires)"


def never_expires_way(has_box: bool) -> str:
    """How this form makes a token never expire: the picker of a dated token is filled in
    and cannot be emptied, so the box; otherwise leaving the date empty."""
    if has_box:
        return "For a token that never expires, tick “Remove the expiry date” below."
    return "Leave it empty for a token that never expires."


def notice_modal(text: str) -> View:
    """Replaces a modal whose submission could not be carried out (``text`` is safe mrkdwn)."""
    return View(
        type="modal",
        callback_id=CallbackId.NOTICE,
        title=plain("Tokenbot"),
        close=plain("Close"),
        blocks=[SectionBlock(block_id=BlockId.NOTICE, text=MarkdownTextObject(text=text))],
    )


# -- reading a submission ------------------------------------------------------

CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,30}")


@dataclass(frozen=True)
class FormValues:
    """What the form says, named as the services' keyword arguments."""

    label: str
    scope: str
    expires_on: dt.date | None
    alert_channel: str | None
    # An admin's reason; None: no field (the token's stays as it is); "": the field was
    # left empty (the token has no exception).
    exception: str | None = None

    def fields(self) -> dict[str, Any]:
        values = asdict(self)
        if self.exception is None:
            del values["exception"]
        return values

    @classmethod
    def of(cls, token: Token) -> FormValues:
        return cls(label=token.label, scope=token.scope, expires_on=token.expires_on,
                   alert_channel=token.alert_channel, exception=token.policy_exception)

    def over(self, current: FormValues, *, drawn: FormValues) -> FormValues:
        """What the user changed from the form as it was ``drawn``, over the ``current``
        values: a field they left alone shows what someone else changed it to meanwhile."""
        mine, before, now = asdict(self), asdict(drawn), asdict(current)
        return FormValues(**{name: mine[name] if mine[name] != before[name] else now[name]
                             for name in mine})


Values = dict[str, Any]  # a submitted view's state: block id -> action id -> element state


def _element(values: Values, block: BlockId, action: ActionId) -> dict[str, Any]:
    found = next((value for key, value in values.items() if _is_block(key, block)), None)
    return mapping(mapping(found).get(action))


def _drawn(blocks: object, block_id: BlockId, key: str) -> Any:
    """An initial value the form was drawn with (the token's, when it opened)."""
    for block in blocks if isinstance(blocks, list) else []:
        if isinstance(block, dict) and _is_block(block.get("block_id"), block_id):
            return mapping(block.get("element")).get(key)
    return None


def _drawn_date(blocks: object) -> str | None:
    drawn = _drawn(blocks, BlockId.EXPIRES, "initial_date")
    return drawn if isinstance(drawn, str) else None


def drawn_form(view: dict[str, Any]) -> FormValues:
    """The values the submitted form was drawn with (what cannot be read is empty)."""
    blocks = view.get("blocks")
    label = _drawn(blocks, BlockId.LABEL, "initial_value")
    scope = mapping(_drawn(blocks, BlockId.SCOPE, "initial_option")).get("value")
    channel = _drawn(blocks, BlockId.ALERT_CHANNEL, "initial_conversation")
    reason = _drawn(blocks, BlockId.EXCEPTION, "initial_value")
    try:
        expires_on = dt.date.fromisoformat(_drawn_date(blocks) or "")
    except ValueError:
        expires_on = None
    return FormValues(label=label if isinstance(label, str) else "",
                      scope=scope if isinstance(scope, str) else "",
                      expires_on=expires_on,
                      alert_channel=channel if isinstance(channel, str) else None,
                      exception=reason if isinstance(reason, str) else None)


def _expires_on(values: Values, drawn: str | None) -> dt.date | None:
    """The picked date, unless "Remove the expiry date" is ticked (then None). Picking a
    new date and ticking the box as well is refused on the field: which one was meant?"""
    raw_date = _element(values, BlockId.EXPIRES, ActionId.EXPIRES_PICK).get("selected_date")
    ticked = _element(values, BlockId.NO_EXPIRY, ActionId.NO_EXPIRY_CHECK).get(
        "selected_options") or []
    if isinstance(ticked, list) and any(
        isinstance(option, dict) and option.get("value") == NO_EXPIRY_VALUE for option in ticked
    ):
        if raw_date and raw_date != drawn:
            raise ValidationError(
                "You picked a new date and ticked “Remove the expiry date”: clear the date "
                "to remove the expiry, or untick the box to keep the new date.",
                field="expires",
            )
        return None
    if not raw_date:
        return None
    try:
        return dt.date.fromisoformat(str(raw_date))
    except ValueError:
        raise ValidationError("Pick a date from the calendar.", field="expires") from None


def _alert_channel(values: Values) -> str | None:
    channel = _element(values, BlockId.ALERT_CHANNEL, ActionId.ALERT_CHANNEL_SELECT).get(
        "selected_conversation"
    )
    if channel and not CHANNEL_ID.fullmatch(str(channel)):
        raise ValidationError("Choose a channel from the list.", field="alert_channel")
    return str(channel) if channel else None


def read_form(view: dict[str, Any]) -> FormValues:
    values = mapping(mapping(view.get("state")).get("values"))
    label = _element(values, BlockId.LABEL, ActionId.LABEL_INPUT).get("value") or ""
    scope = mapping(_element(values, BlockId.SCOPE, ActionId.SCOPE_SELECT).get(
        "selected_option")).get("value")
    field = _element(values, BlockId.EXCEPTION, ActionId.EXCEPTION_INPUT)
    reason = str(field.get("value") or "").strip()
    return FormValues(
        label=str(label),
        scope=str(scope) if scope else "",
        expires_on=_expires_on(values, _drawn_date(view.get("blocks"))),
        alert_channel=_alert_channel(values),
        # the field (drawn for admins) holds the token's reason: left empty, it has none
        exception=reason or ("" if field else None),
    )


def field_errors(error: ValidationError | PermissionDeniedError,
                 view: dict[str, Any]) -> dict[str, str] | None:
    """``{block_id: message}`` when the error names one of the form's fields: a service's
    field name is its input block's id (``BlockId``), as drawn in ``view`` (perhaps
    renamed). A past date says how this form makes a token never expire."""
    field = getattr(error, "field", None)
    if field not in set(BlockId):
        return None
    blocks = [b for b in view.get("blocks") or [] if isinstance(b, dict)]
    drawn = next((b.get("block_id") for b in blocks if _is_block(b.get("block_id"),
                                                                  BlockId(field))), field)
    text = str(error)
    if isinstance(error, PastExpiryError):  # the form says how it makes it never expire
        has_box = any(_is_block(b.get("block_id"), BlockId.NO_EXPIRY) for b in blocks)
        text = f"{text} {never_expires_way(has_box)}"
    return {str(drawn): text}


def reset_fields(typed: FormValues, shown: FormValues) -> set[str]:
    """The fields ``shown`` at another value than the user's form held."""
    mine, now = asdict(typed), asdict(shown)
    return {name for name, value in mine.items() if value != now[name]}
