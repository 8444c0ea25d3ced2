"""What the bot remembers between a drawing and the click on it, kept in Slack itself:
button values (token id, version seen, table page and filter) and modals'
``private_metadata`` (where the user came from). Compact JSON; decoded defensively,
and never trusted for authorization (listeners re-check user and team every time)."""

from __future__ import annotations

import enum
import json
import re
import unicodedata
from dataclasses import dataclass, replace
from typing import Any

from bot.errors import NotFoundError
from bot.services.listing import StatusFilter, TokenFilter
from bot.services.tokens import NOT_IN_LABELS

QUERY_MAX = 100  # a filter longer than the longest label can match nothing anyway
USER_ID = re.compile(r"[UW][A-Z0-9]{1,30}")
PUBLIC_ID = re.compile(r"[A-Za-z0-9_]{1,32}")  # a token's public id (``tok_…``)
NUMBER_MAX = 2**31 - 1  # pages and versions beyond this are nobody's


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _loads(value: object) -> Any:
    """Our JSON, or None for anything else (not text, malformed, or nested past the
    parser's depth)."""
    if not isinstance(value, str):
        return None
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return None


def mapping(value: object) -> dict[str, Any]:
    """A part of a payload that should be an object, or an empty one if it is anything else
    (a crafted request may put a list or a number where Slack puts an object)."""
    return value if isinstance(value, dict) else {}


def number(value: object) -> int | None:
    """A page or a version as a button carries it: a whole number in range, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= NUMBER_MAX:
        return value
    return None


def _int(value: Any, default: int = 1) -> int:
    found = number(value)
    return default if found is None else found


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _status(value: Any) -> StatusFilter | None:
    try:
        return StatusFilter(value) if value else None
    except ValueError:
        return None


def _user(value: Any) -> str:
    return value if isinstance(value, str) and USER_ID.fullmatch(value) else ""


def _public_id(value: Any) -> str:
    return value if isinstance(value, str) and PUBLIC_ID.fullmatch(value) else ""


@dataclass(frozen=True)
class TableState:
    """The page and filter (label text, status, owner, one token) of the table a user is
    looking at. ``token``: a token's public id, the table showing that token alone (the
    button of an owner's DM), whatever its label has become."""

    page: int = 1
    query: str = ""
    status: StatusFilter | None = None
    owner: str = ""
    token: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "page", min(max(1, self.page), NUMBER_MAX))
        # No label holds a control character (a NUL would not even reach the database).
        query = "".join(ch for ch in self.query
                        if unicodedata.category(ch) not in NOT_IN_LABELS)
        object.__setattr__(self, "query", query.strip()[:QUERY_MAX])

    def at(self, page: int) -> TableState:
        return replace(self, page=page)

    @property
    def filters(self) -> TokenFilter:
        return TokenFilter(status=self.status, owner=self.owner or None, search=self.query,
                           public_id=self.token or None)

    def parts(self) -> list[Any]:
        """``[page, query]``, then ``status, owner`` and ``token`` only when set: the
        common unfiltered value stays short, and older drawings' shorter lists still
        decode (no drawing ever carried a fifth part)."""
        parts: list[Any] = [self.page, self.query]
        if self.status or self.owner or self.token:
            parts += [self.status.value if self.status else "", self.owner]
        if self.token:
            parts.append(self.token)
        return parts

    @classmethod
    def of(cls, parts: list[Any]) -> TableState:
        extra = [*parts[2:5], "", "", ""]
        return cls(page=_int(parts[0]), query=_str(parts[1]), status=_status(extra[0]),
                   owner=_user(extra[1]), token=_public_id(extra[2]))

    def encode(self) -> str:
        return _dumps(self.parts())

    @classmethod
    def decode(cls, value: str | None) -> TableState:
        data = _loads(value)
        if not isinstance(data, list) or len(data) < 2:  # an older drawing may carry more
            return cls()
        return cls.of(data)


FIRST_PAGE = TableState()


def token_value(value: str | None, *, length: int) -> list[Any]:
    """A button value of ours: a JSON list of at least ``length`` items (an older drawing
    may carry more), the first a token id. Anything else is reported the way an unknown
    token is."""
    data = _loads(value)
    if (
        not isinstance(data, list)
        or len(data) < length
        or not isinstance(data[0], str)
        or not data[0]
    ):
        raise NotFoundError()
    return data


@dataclass(frozen=True)
class RowRef:
    """A row button's value: which token, at which version, in which table."""

    public_id: str
    version: int
    state: TableState

    def encode(self) -> str:
        return _dumps([self.public_id, self.version, *self.state.parts()])

    @classmethod
    def decode(cls, value: str | None) -> RowRef:
        data = token_value(value, length=4)
        return cls(
            public_id=data[0][:64],
            version=_int(data[1], default=0),
            state=TableState.of(data[2:]),
        )


OPTION_VALUE_MAX = 150  # Slack's limit on a menu option's value


@dataclass(frozen=True)
class MenuChoice:
    """An option's value in a row's "More…" menu: which row action, on which row. Slack
    keeps an option's value to 150 characters, so a long label filter is shortened to fit,
    and next to a token filter the status and owner may go (the table drawn after the
    action then shows a little more than before)."""

    action: str
    ref: RowRef

    def encode(self) -> str:
        state = self.ref.state
        while True:
            text = _dumps([self.action, self.ref.public_id, self.ref.version, *state.parts()])
            excess = len(text) - OPTION_VALUE_MAX
            if excess <= 0:
                return text
            if state.query:
                state = replace(state, query=state.query[: max(0, len(state.query) - excess)])
            elif state.token and (state.status or state.owner):
                state = replace(state, status=None, owner="")
            else:
                return text

    @classmethod
    def decode(cls, value: str | None) -> MenuChoice:
        data = _loads(value)
        if not isinstance(data, list) or len(data) < 5 or not isinstance(data[0], str):
            raise NotFoundError()
        return cls(action=data[0], ref=RowRef.decode(_dumps(data[1:])))


class OriginKind(enum.StrEnum):
    MESSAGE = "m"  # an ephemeral table, redrawn through its response_url
    HOME = "h"  # the App Home tab, redrawn with views.publish
    COMMAND = "c"  # `/tokens create`: no table, but a response_url to answer in
    DIGEST = "d"  # an expiry digest message (channel and ts), redrawn with chat.update


@dataclass(frozen=True)
class Origin:
    """Where a modal was opened from, so its submission can answer there."""

    kind: OriginKind
    state: TableState = TableState()
    response_url: str | None = None
    channel: str | None = None  # a digest's message
    ts: str | None = None


@dataclass(frozen=True)
class ModalMetadata:
    """``action``: the row action a confirmation modal runs when submitted."""

    origin: Origin
    public_id: str | None = None
    version: int | None = None
    action: str = ""

    def encode(self) -> str:
        state = self.origin.state
        data: dict[str, Any] = {"k": self.origin.kind.value, "p": state.page, "q": state.query}
        if state.status or state.owner:
            data["s"], data["o"] = state.status.value if state.status else "", state.owner
        if state.token:
            data["i"] = state.token
        if self.action:
            data["a"] = self.action
        if self.origin.response_url:
            data["u"] = self.origin.response_url
        if self.origin.channel and self.origin.ts:
            data["c"], data["ts"] = self.origin.channel, self.origin.ts
        if self.public_id is not None:
            data["t"] = self.public_id
            data["v"] = self.version
        return _dumps(data)

    @classmethod
    def decode(cls, value: str | None) -> ModalMetadata:
        data = _loads(value)
        if not isinstance(data, dict):
            data = {}
        try:
            kind = OriginKind(str(data.get("k")))
        except ValueError:
            kind = OriginKind.COMMAND
        url = data.get("u") if isinstance(data.get("u"), str) else None
        channel, ts = _str(data.get("c")) or None, _str(data.get("ts")) or None
        if kind == OriginKind.DIGEST and not (channel and ts):
            kind = OriginKind.HOME  # a digest we cannot name: answer on the user's Home
        origin = Origin(
            kind=kind,
            state=TableState.of([data.get("p"), data.get("q"), data.get("s"), data.get("o"),
                                 data.get("i")]),
            response_url=url,
            channel=channel,
            ts=ts,
        )
        public_id = data.get("t") if isinstance(data.get("t"), str) else None
        return cls(origin=origin, public_id=public_id, version=_int(data.get("v"), default=0),
                   action=_str(data.get("a")))
