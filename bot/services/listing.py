"""Reading the registry a page at a time: the table in Slack, the CLI's list.

A page is read with Core into plain :class:`Listed` rows, newest first, with the team's
indexes; a label search uses the trigram index (SQLite's FTS5 table, PostgreSQL's pg_trgm);
the count stops at a cap, past which the table says "1,000+ tokens"."""

from __future__ import annotations

import datetime as dt
import enum
import unicodedata
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import and_, column, func, literal, select, table
from sqlalchemy.orm import Session

from bot.models import DisplayStatus, Token, TokenRules, status_clause
from bot.services.policy import Policy

# Counting a team's tokens costs one index entry per token; nobody pages through more
# than a thousand, so counting stops there.
COUNT_CAP: Final = 1_000
# A label search asks SQLite's trigram index when it narrows the table to at most this
# many candidates; a commoner text is faster found by walking the table's order.
FTS_SELECTIVE: Final = 2_000


@dataclass(frozen=True, slots=True)
class Listed(TokenRules):
    """A token as a list shows it (never the secret)."""

    public_id: str
    team_id: str
    label: str
    scope: str
    secret_masked: str
    created_by: str
    owner: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    status: str
    version: int
    last_used_by: str | None
    previous_secret_masked: str | None
    rotation_until: dt.datetime | None
    policy_exception: str | None  # an admin's reason for an expiry beyond the lifetime cap


class StatusFilter(enum.StrEnum):
    """The status filters of every list (``/tokens active``, ``tokenbot tokens list
    --status``): the statuses a person sees, and "expiring" (active, and expiring within
    the given number of days)."""

    ACTIVE = DisplayStatus.ACTIVE.value
    DISABLED = DisplayStatus.DISABLED.value
    EXPIRED = DisplayStatus.EXPIRED.value
    EXPIRING = "expiring"


@dataclass(frozen=True)
class TokenFilter:
    """Which tokens a list shows: a status, an owner, label text, one token (by its public
    id, whatever its label is now); all optional and combinable. The one filter of the
    Slack table and the CLI."""

    status: StatusFilter | None = None
    owner: str | None = None
    search: str = ""
    public_id: str | None = None

    @property
    def active(self) -> bool:
        return bool(self.status or self.owner or self.search or self.public_id)


NO_FILTER: Final = TokenFilter()


_tokens = Token.__table__  # for Core statements
_LISTED_COLUMNS: Final = tuple(_tokens.c[name] for name in Listed.__dataclass_fields__)


@dataclass(frozen=True)
class TokenPage:
    """One page of tokens. Past ``COUNT_CAP`` the count is not exact: ``total`` is the
    cap and ``pages`` a lower bound (show "1,000+ tokens")."""

    items: list[Listed]
    total: int
    page: int
    per_page: int
    total_exact: bool = True
    has_next: bool = False
    expiring_days: int = 0  # what "expiring" meant for this page's filter
    # Which of the items break the lifetime policy (set after they got their expiry).
    over_policy: frozenset[str] = frozenset()

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def total_text(self) -> str:
        """"42" or, past the count cap, "1,000+"."""
        return f"{self.total:,}" + ("" if self.total_exact else "+")

    @property
    def pages_text(self) -> str:
        return f"{self.pages:,}" + ("" if self.total_exact else "+")


def search_key(text: str) -> str:
    """Labels and searches compare case-blind, folded as ``str.casefold`` does ("ß" is
    "ss"), with the Turkic fold of "İ" (plain "i", so "ist" finds "İstanbul") and in NFC
    (however the accents were typed). Migration 0003 keyed stored labels this way."""
    composed = unicodedata.normalize("NFC", text)
    return unicodedata.normalize("NFC", composed.replace("\u0130", "i").casefold())


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# SQLite's FTS5 trigram index over labels (see migration 0001); PostgreSQL uses pg_trgm
# on the column itself. Not part of the ORM metadata: it is a virtual table.
_label_fts = table("tokens_label_fts", column("rowid"), column("label_search"))


def _label_conditions(session: Session, text: str) -> list[Any]:
    """Labels containing ``text`` literally (``%``, ``_`` and ``\\`` are not wildcards)."""
    key = search_key(text)
    # The pattern is written into the statement, not bound: PostgreSQL plans it for this
    # very text. A plan made once for any text (psycopg prepares a statement it has run
    # five times) scans the trigram index even for two letters every label holds (27 ms).
    pattern = literal(f"%{_like_escape(key)}%", literal_execute=True)
    conditions: list[Any] = [_tokens.c.label_search.like(pattern, escape="\\")]
    if session.get_bind().dialect.name == "sqlite" and len(key) >= 3:
        # A selective text: the trigram index gives the few candidates (the LIKE keeps
        # the exact rule). A common one: walking the table's order with the LIKE finds a
        # page sooner than materializing thousands of candidates.
        matches = _label_fts.c.label_search.match('"' + key.replace('"', '""') + '"')
        candidates = select(_label_fts.c.rowid).where(matches)
        found = session.scalar(
            select(func.count()).select_from(candidates.limit(FTS_SELECTIVE + 1).subquery())
        )
        if (found or 0) <= FTS_SELECTIVE:
            conditions.append(_tokens.c.id.in_(candidates))
    return conditions


def _status_condition(status: StatusFilter, now: dt.datetime, expiring_days: int) -> Any:
    if status == StatusFilter.EXPIRING:
        horizon = now + dt.timedelta(days=expiring_days)
        return and_(status_clause(DisplayStatus.ACTIVE, now), _tokens.c.expires_at.is_not(None),
                    _tokens.c.expires_at <= horizon)
    return status_clause(DisplayStatus(status.value), now)


def list_tokens(
    session: Session,
    *,
    team_id: str,
    now: dt.datetime,
    filters: TokenFilter = NO_FILTER,
    expiring_days: int = 30,
    page: int = 1,
    per_page: int = 10,
    policy: Policy,
) -> TokenPage:
    """One page of a team's tokens that pass ``filters``, newest first, and how many there
    are (up to the cap). "Expiring" is active and expiring within ``expiring_days`` (the
    largest alert threshold). A page past the end (the table shrank under the user) gives
    the last page. The page says which of its tokens are over the lifetime ``policy``
    (``services.policy.policy_of(settings)``)."""
    if per_page < 1:
        raise ValueError("per_page must be positive")
    conditions: list[Any] = [_tokens.c.team_id == team_id]
    if filters.status is not None:
        conditions.append(_status_condition(StatusFilter(filters.status), now, expiring_days))
    if filters.owner:
        conditions.append(_tokens.c.owner == filters.owner)
    if filters.public_id:
        conditions.append(_tokens.c.public_id == filters.public_id)
    text = filters.search.strip()
    if text:
        conditions.extend(_label_conditions(session, text))
    counted = session.scalar(
        select(func.count()).select_from(
            select(_tokens.c.id).where(*conditions).limit(COUNT_CAP + 1).subquery()
        )
    ) or 0
    total, total_exact = min(counted, COUNT_CAP), counted <= COUNT_CAP
    page = max(page, 1)
    if total_exact:
        page = min(page, max(1, -(-total // per_page)))
    rows = [Listed(*row) for row in session.execute(
        select(*_LISTED_COLUMNS)
        .where(*conditions)
        .order_by(_tokens.c.created_at.desc(), _tokens.c.id.desc())
        .offset((page - 1) * per_page)
        .limit(per_page + 1)  # the extra row tells that a next page exists
    )]
    over = frozenset(t.public_id for t in rows[:per_page]
                     if policy.breaks(t, now))
    return TokenPage(
        over_policy=over,
        items=rows[:per_page],
        total=total,
        page=page,
        per_page=per_page,
        total_exact=total_exact,
        has_next=len(rows) > per_page,
        expiring_days=expiring_days,
    )
