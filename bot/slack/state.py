"""What a drawing carries to the click on it: button values, menu option values and
modals' ``private_metadata``, as pydantic models with short keys and one codec
(``Carried``). A value that does not decode is ``NotFoundError``; none is trusted for
authorization."""

from __future__ import annotations

import enum
import unicodedata
from typing import Annotated, Any, Self

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from bot.errors import NotFoundError
from bot.logs import note_token
from bot.services.listing import StatusFilter, TokenFilter
from bot.services.tokens import NOT_IN_LABELS
from bot.slack.ids import USER_ID_PATTERN

OPTION_VALUE_MAX, METADATA_MAX = 150, 3000  # Slack's limits (a button's value: 2,000)
QUERY_MAX = 100  # a filter longer than the longest label can match nothing anyway
NUMBER_MAX = 2**31 - 1  # pages and versions beyond this are nobody's
Number = Annotated[int, Field(strict=True, ge=0, le=NUMBER_MAX)]
UserId = Annotated[str, Field(pattern=f"^(?:{USER_ID_PATTERN})?$")]  # "": none
PublicId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,32}$")]  # a token's ``tok_…``


def mapping(value: object) -> dict[str, Any]:
    """A part of a payload that should be an object, or an empty one if it is anything else
    (a crafted request may put a list or a number where Slack puts an object)."""
    return value if isinstance(value, dict) else {}


class Carried(BaseModel):
    """The one codec: compact JSON under the short keys, defaults left out."""

    model_config = ConfigDict(frozen=True, validate_by_name=True, validate_by_alias=True)

    def encode(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_defaults=True)

    @classmethod
    def decode(cls, value: object, *, otherwise: Self | None = None) -> Self:
        """The value drawn, else ``otherwise`` or ``NotFoundError`` (not text, longer than
        Slack carries, or not ours)."""
        if isinstance(value, str) and len(value) <= METADATA_MAX:
            try:
                decoded = cls.model_validate_json(value)
            except ValidationError:
                pass
            else:
                note_token(getattr(decoded, "public_id", None))  # for the request's logs
                return decoded
        if otherwise is None:
            raise NotFoundError()
        return otherwise

    @classmethod
    def of(cls, **fields: Any) -> Self:
        """Built from what a payload holds (a menu's choice): ``NotFoundError`` if not ours."""
        try:
            return cls.model_validate(fields)
        except ValidationError:
            raise NotFoundError() from None


class TableState(Carried):
    """The page and filter of the table a user looks at: label text, status, owner, and
    ``token`` (a public id: that token alone, whatever its label has become)."""

    page: Annotated[Number, Field(ge=1)] = Field(1, alias="p")
    query: str = Field("", alias="q")
    status: StatusFilter | None = Field(None, alias="s")
    owner: UserId = Field("", alias="o")
    token: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{0,32}$")] = Field("", alias="i")

    @field_validator("query")
    @classmethod
    def _searchable(cls, query: str) -> str:
        """No label holds a control character (a NUL would not even reach the database)."""
        kept = "".join(ch for ch in query if unicodedata.category(ch) not in NOT_IN_LABELS)
        return kept.strip()[:QUERY_MAX]

    def at(self, page: int) -> TableState:
        return self.model_copy(update={"page": page})

    @property
    def filters(self) -> TokenFilter:
        return TokenFilter(status=self.status, owner=self.owner or None, search=self.query,
                           public_id=self.token or None)


FIRST_PAGE = TableState()


class RowRef(Carried):
    """A row's button (or a digest's): which token, at the version shown, in which table."""

    public_id: PublicId = Field(alias="t")
    version: Number = Field(alias="v")
    state: TableState = Field(FIRST_PAGE, alias="s")


class MenuChoice(Carried):
    """A "More…" option: which row action, on which row."""

    action: str = Field(alias="a", max_length=64)
    ref: RowRef = Field(alias="r")

    def encode(self) -> str:
        """Within Slack's 150 characters: a long label filter is shortened to fit, then the
        status and owner filters go (the table drawn after shows a little more)."""
        state = self.ref.state
        while True:
            ref = self.ref.model_copy(update={"state": state})
            text = Carried.encode(self.model_copy(update={"ref": ref}))
            excess = len(text) - OPTION_VALUE_MAX
            if excess > 0 and state.query:
                state = state.model_copy(update={"query": state.query[:-excess]})
            elif excess > 0 and (state.status or state.owner):
                state = state.model_copy(update={"status": None, "owner": ""})
            else:
                return text


class OriginKind(enum.StrEnum):
    MESSAGE = "m"  # an ephemeral table, redrawn through its response_url
    HOME = "h"  # the App Home tab, redrawn with views.publish
    COMMAND = "c"  # `/tokens create`: no table, but a response_url to answer in
    DIGEST = "d"  # an expiry digest message (channel and ts), redrawn with chat.update


class Origin(Carried):
    """Where a modal was opened from, so its submission can answer there."""

    kind: OriginKind = Field(alias="k")
    state: TableState = Field(FIRST_PAGE, alias="s")
    response_url: str | None = Field(None, alias="u")
    channel: str | None = Field(None, alias="c")  # a digest's message
    ts: str | None = Field(None, alias="ts")

    @model_validator(mode="after")
    def _named(self) -> Self:
        if self.kind == OriginKind.DIGEST and not (self.channel and self.ts):
            raise ValueError("a digest is named by its channel and ts")
        return self


class ModalMetadata(Carried):
    """A modal's ``private_metadata``: where it came from, the token and version it is about
    (none to create one) and, for a confirmation, the row action it runs."""

    origin: Origin = Field(alias="o")
    public_id: PublicId | None = Field(None, alias="t")
    version: Number = Field(0, alias="v")
    action: str = Field("", alias="a", max_length=64)


NOWHERE = ModalMetadata(origin=Origin(kind=OriginKind.COMMAND))  # metadata that did not decode
