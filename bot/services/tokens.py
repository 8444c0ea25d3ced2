"""The token registry's rules. Plain functions: keyword-only arguments, ``now`` passed in,
domain exceptions, no Slack, and no commits (the caller owns the transaction)."""

from __future__ import annotations

import datetime as dt
import functools
import secrets as _random
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Select, and_, bindparam, column, func, or_, select, table, update
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key
from sqlalchemy.orm.exc import StaleDataError

from bot import crypto
from bot.errors import (
    InvalidStateError,
    NotFoundError,
    PermissionDeniedError,
    StaleTokenError,
    ValidationError,
)
from bot.models import (
    AuditAction,
    AuditSource,
    DisplayStatus,
    Token,
    TokenStatus,
    UTCDateTime,
    shown_status,
)
from bot.services.audit import LABEL_DETAILS, record, update_recorded

LABEL_MAX = 100
# Counting a team's tokens costs one index entry per token; past 1,000 the table says
# "1,000+ tokens" (nobody pages through more), which keeps every redraw cheap.
COUNT_CAP: Final = 1_000
SEARCH_COUNT_CAP: Final = 1_000
FTS_SELECTIVE: Final = 2_000
ADMIN_SCOPE: Final = "admin"
PUBLIC_ID_PREFIX: Final = "tok_"
_PUBLIC_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged()


@dataclass(frozen=True)
class Actor:
    """Who acts: a Slack user of a team, or an operator at the CLI."""

    team_id: str
    user_id: str
    is_admin: bool = False
    source: AuditSource = AuditSource.SLACK


@dataclass(frozen=True)
class CreatedToken:
    token: Token
    secret: str

    def __repr__(self) -> str:  # keep the secret out of reprs and logs
        return f"CreatedToken(token={self.token!r}, secret=<hidden>)"


@dataclass(frozen=True, slots=True)
class Listed:
    """A token as a list shows it. A page is read on every click, so its rows are read
    with Core, without the ORM's identity map and instrumented objects."""

    public_id: str
    team_id: str
    label: str
    scope: str
    secret_masked: str
    created_by: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    status: str
    version: int

    def display_status(self, now: dt.datetime) -> DisplayStatus:
        return shown_status(self.status, self.expires_at, now)

    @property
    def expires_on(self) -> dt.date | None:
        return self.expires_at.date() if self.expires_at else None


@dataclass(frozen=True)
class TokenPage:
    """One page of tokens. Counting stops at ``COUNT_CAP`` (``SEARCH_COUNT_CAP`` with a
    label search): past it ``total_exact`` is False, ``total`` is the cap and ``pages`` a
    lower bound (show "1,000+ tokens")."""

    items: list[Listed]
    total: int
    page: int
    per_page: int
    total_exact: bool = True
    has_next: bool = False

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


@dataclass
class Prefetch:
    """The page of a team's table (unfiltered) that the caller draws right after changing
    one of its tokens. A status change or an edit given one reads it on the way, in its own
    statement on PostgreSQL (a round trip less on every click), and ``list_tokens`` given
    the same object takes those rows, with the changed token as it now is."""

    team_id: str
    page: int
    per_page: int
    past_cap: bool = False
    rows: list[Any] | None = None  # as read on the way, before the change
    changed: Listed | None = None  # the changed token, after the change

    @property
    def statement(self) -> Select[Any]:
        return _page_statements(None, False, False, False, not self.past_cap)[0]

    @property
    def params(self) -> dict[str, Any]:
        return {"in_team": self.team_id, "cap": COUNT_CAP + 1, "limit": self.per_page + 1,
                "offset": (max(self.page, 1) - 1) * self.per_page}

    def found(self, *, team_id: str, page: int, per_page: int, past_cap: bool,
              filtered: bool) -> list[Any] | None:
        """The rows read on the way, if they answer this very read; else None."""
        if (self.rows is None or self.changed is None or filtered
                or (team_id, max(page, 1), per_page, past_cap)
                != (self.team_id, max(self.page, 1), self.per_page, self.past_cap)):
            return None
        changed = self.changed
        return [(*_listed_values(changed), *row[len(_LISTED):])
                if row[0] == changed.public_id else row for row in self.rows]


def _listed_values(token: Listed) -> tuple[Any, ...]:
    return tuple(getattr(token, name) for name in Listed.__dataclass_fields__)


def _listed(values: Mapping[str, Any]) -> Listed:
    return Listed(*(values[name] for name in Listed.__dataclass_fields__))


@dataclass(frozen=True)
class EditResult:
    token: Token
    changes: dict[str, tuple[Any, Any]]


@dataclass(frozen=True)
class Seen:
    """A token's editable fields as an edit form showed them, at the form's version. Every
    write of these fields moves the version on, so at that version they are the token's."""

    label: str
    scope: str
    expires_at: dt.datetime | None
    alert_channel: str | None

    @classmethod
    def of(cls, token: Token) -> Seen:
        return cls(label=token.label, scope=token.scope, expires_at=token.expires_at,
                   alert_channel=token.alert_channel)


# -- validation --------------------------------------------------------------


def clean_label(label: str | None) -> str:
    text = (label or "").strip()
    if not text:
        raise ValidationError("Give the token a label.", field="label")
    if len(text) > LABEL_MAX:
        raise ValidationError(
            f"The label is {len(text)} characters; keep it to {LABEL_MAX} or fewer.",
            field="label",
        )
    # Cc/Cs: control characters and lone surrogates; Zl/Zp: U+2028/U+2029 line breaks.
    if any(unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") for ch in text):
        raise ValidationError(
            "The label cannot contain line breaks or control characters.", field="label"
        )
    return text


def clean_scope(scope: str | None, *, scopes: Sequence[str], actor: Actor) -> str:
    if not scope:
        raise ValidationError("Choose a scope.", field="scope")
    if scope not in scopes:
        raise ValidationError(
            f"Unknown scope; choose one of: {', '.join(scopes)}.", field="scope"
        )
    if scope == ADMIN_SCOPE and not actor.is_admin:
        raise PermissionDeniedError(
            "Only a workspace admin can grant the admin scope.", field="scope"
        )
    return scope


def clean_expiry(expires_on: dt.date | None, *, now: dt.datetime) -> dt.datetime | None:
    """A date later than today (UTC) becomes 00:00 UTC of that date; None clears expiry."""
    if expires_on is None:
        return None
    if isinstance(expires_on, dt.datetime):
        expires_on = expires_on.date()
    if expires_on <= now.astimezone(dt.timezone.utc).date():
        raise ValidationError(
            "The expiry date must be in the future (after today, UTC). "
            "Clear it for a token that never expires.",
            field="expires",
        )
    return dt.datetime.combine(expires_on, dt.time(0, 0), tzinfo=dt.timezone.utc)


def _new_public_id() -> str:
    return PUBLIC_ID_PREFIX + "".join(_random.choice(_PUBLIC_ALPHABET) for _ in range(12))


def search_key(text: str) -> str:
    """Lower-cased for case-insensitive search, one character for one character, so it fits
    the label's column (``"İ".lower()`` alone is two characters)."""
    return "".join(low if len(low := ch.lower()) == 1 else ch for ch in text)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# SQLite's FTS5 trigram index over labels (see migration 0001); PostgreSQL uses pg_trgm
# on the column itself. Not part of the ORM metadata: it is a virtual table.
_label_fts = table("tokens_label_fts", column("rowid"), column("label_search"))


@dataclass(frozen=True)
class _Search:
    """A label filter's parameters: the LIKE pattern, and the FTS5 phrase when SQLite's
    trigram index is worth asking."""

    like: str
    phrase: str | None = None


def _search(session: Session, text: str) -> _Search:
    """Labels containing ``text`` literally (``%``, ``_`` and ``\\`` are not wildcards)."""
    like = f"%{_like_escape(text)}%"
    if session.get_bind().dialect.name == "sqlite" and len(text) >= 3:
        # A selective text: the trigram index gives the few candidates (the LIKE keeps
        # the exact rule). A common one: walking the table's order with the LIKE finds a
        # page sooner than materializing thousands of candidates.
        phrase = '"' + text.replace('"', '""') + '"'
        candidates = session.scalar(
            select(func.count()).select_from(
                select(_label_fts.c.rowid)
                .where(_label_fts.c.label_search.match(phrase))
                .limit(FTS_SELECTIVE + 1)
                .subquery()
            )
        )
        if (candidates or 0) <= FTS_SELECTIVE:
            return _Search(like=like, phrase=phrase)
    return _Search(like=like)


# -- reads -------------------------------------------------------------------


# The statements of the hot paths (every click reads or changes one token) are built once
# with their values bound at execution: building an ORM statement costs about as much as
# running it.
_TOKENS: Final = Token.__table__
_TOKEN_BY_PUBLIC_ID: Final = select(Token).where(
    Token.team_id == bindparam("team_id"), Token.public_id == bindparam("public_id")
)


def get_token(session: Session, *, team_id: str, public_id: str) -> Token:
    token = session.scalars(
        _TOKEN_BY_PUBLIC_ID, {"team_id": team_id, "public_id": public_id}
    ).one_or_none()
    if token is None:
        raise NotFoundError()
    return token


def _as_changed(session: Session, values: Mapping[str, Any]) -> Token:
    """The token as a Core ``UPDATE ... RETURNING`` gave it back. The hot paths write with
    Core (the ORM's unit of work costs more than the statement); an instance this session
    loaded before is refreshed so it does not show the old values, else a detached one is
    made from the row."""
    loaded = session.identity_map.get(identity_key(Token, (values["id"],)))
    if loaded is None:
        token = Token(**values)
        make_transient_to_detached(token)
        return token
    for name, value in values.items():
        set_committed_value(loaded, name, value)
    return loaded  # type: ignore[no-any-return]


def _status_clause(status: DisplayStatus, now: Any) -> Any:
    t = _TOKENS
    if status == DisplayStatus.DISABLED:
        return t.c.status == TokenStatus.DISABLED
    if status == DisplayStatus.EXPIRED:
        return and_(t.c.status == TokenStatus.ACTIVE, t.c.expires_at <= now)
    return and_(
        t.c.status == TokenStatus.ACTIVE,
        or_(t.c.expires_at.is_(None), t.c.expires_at > now),
    )


# The columns of a ``Listed`` row, in its fields' order.
_LISTED: Final = tuple(_TOKENS.c[name] for name in Listed.__dataclass_fields__)


@functools.lru_cache(maxsize=64)
def _page_statements(
    status: DisplayStatus | None, owner: bool, like: bool, fts: bool, counted: bool = True
) -> tuple[Select[Any], Select[Any]]:
    """A page of tokens with their capped count riding along (unless not ``counted``), and
    the count alone, for one combination of filters; values are bound at execution. Built
    once: building a statement costs about as much as running it."""
    t = _TOKENS
    # Bound names are no column's: the page can ride along in a statement that changes
    # tokens and inserts audit events, whose columns' names are reserved there.
    conditions: list[Any] = [t.c.team_id == bindparam("in_team")]
    if status is not None:
        conditions.append(_status_clause(status, bindparam("now", type_=UTCDateTime())))
    if owner:
        conditions.append(t.c.created_by == bindparam("owner"))
    if like:
        conditions.append(t.c.label_search.like(bindparam("like"), escape="\\"))
    if fts:
        matches = _label_fts.c.label_search.match(bindparam("phrase"))
        conditions.append(t.c.id.in_(select(_label_fts.c.rowid).where(matches)))
    # Count at most cap + 1 rows: an exact count of a 100k-token team costs more than
    # the page itself, and nobody pages through thousands of tokens.
    count = select(func.count()).select_from(
        select(t.c.id).where(*conditions).limit(bindparam("cap")).subquery()
    )
    columns = (*_LISTED, count.scalar_subquery()) if counted else _LISTED
    page = (
        select(*columns)
        .where(*conditions)
        .order_by(t.c.created_at.desc(), t.c.id.desc())
        .offset(bindparam("offset"))
        .limit(bindparam("limit"))  # per page + 1: the extra row tells a next page exists
    )
    return page, count


def list_tokens(
    session: Session,
    *,
    team_id: str,
    now: dt.datetime,
    status: DisplayStatus | None = None,
    owner: str | None = None,
    search: str | None = None,
    page: int = 1,
    per_page: int = 10,
    past_cap: bool = False,
    prefetched: Prefetch | None = None,
) -> TokenPage:
    """One page of a team's tokens, newest first, and how many there are in all.

    ``past_cap``: the caller's table already showed a count past the cap ("1,000+") and
    nothing since can have taken tokens away from it (a click that changes one token), so
    counting again, the dearest part of a big team's page, is skipped.

    ``prefetched``: the ``Prefetch`` a change in this transaction was given; when it read
    this very page on the way, its rows are used instead of reading again."""
    if per_page < 1:
        raise ValueError("per_page must be positive")
    text = search.strip() if search else ""
    label = _search(session, search_key(text)) if text else None
    cap = COUNT_CAP if label is None else SEARCH_COUNT_CAP
    statement, count = _page_statements(
        DisplayStatus(status) if status is not None else None,
        bool(owner),
        label is not None,
        label is not None and label.phrase is not None,
        not past_cap,
    )
    params: dict[str, Any] = {"in_team": team_id, "now": now, "owner": owner,
                              "cap": cap + 1, "limit": per_page + 1}
    if label is not None:
        params.update(like=label.like, phrase=label.phrase)

    connection = session.connection()

    def read(number: int) -> list[Any]:
        return list(connection.execute(statement, {**params, "offset": (number - 1) * per_page}))

    page = max(page, 1)
    found = prefetched.found(
        team_id=team_id, page=page, per_page=per_page, past_cap=past_cap,
        filtered=bool(status or owner or label),
    ) if prefetched is not None else None
    if found is None:
        found = read(page)
    if past_cap:
        counted = cap + 1
    else:
        counted = found[0][-1] if found else (connection.scalar(count, params) or 0)
    total_exact = counted <= cap
    total = min(counted, cap)
    pages = max(1, -(-total // per_page))
    if not found and total_exact and page > pages:
        page = pages  # the table shrank under the user: show its last page
        found = read(page)
    width = len(_LISTED)
    rows = [Listed(*row[:width]) for row in found]
    return TokenPage(
        items=rows[:per_page],
        total=total,
        page=page,
        per_page=per_page,
        total_exact=total_exact,
        has_next=len(rows) > per_page,
    )


def verify(session: Session, *, secret: str, now: dt.datetime) -> Token | None:
    """The active, unexpired token with this secret, or None. Never decrypts anything."""
    if not crypto.has_valid_checksum(secret):
        return None
    token = session.scalars(
        select(Token).where(Token.secret_digest == crypto.digest(secret))
    ).one_or_none()
    if token is None or token.status != TokenStatus.ACTIVE or token.is_expired(now):
        return None
    return token


# -- changes -----------------------------------------------------------------


def _authorize(token: Token, actor: Actor, verb: str) -> None:
    if actor.is_admin or token.created_by == actor.user_id:
        return
    raise PermissionDeniedError(
        f"Only the token's owner (<@{token.created_by}>) or a workspace admin can {verb} it."
    )


def _load_for_change(
    session: Session, *, actor: Actor, public_id: str, expected_version: int, verb: str
) -> Token:
    token = get_token(session, team_id=actor.team_id, public_id=public_id)
    _authorize(token, actor, verb)
    if token.version != expected_version:
        raise StaleTokenError()
    return token


def load_for_edit(
    session: Session, *, actor: Actor, public_id: str, expected_version: int
) -> Token:
    """The token as an edit form shows it: the actor may edit it, the version is the one
    they saw, and it is not disabled (checked before a form is even opened)."""
    token = _load_for_change(
        session, actor=actor, public_id=public_id, expected_version=expected_version, verb="edit"
    )
    if token.status == TokenStatus.DISABLED:
        raise InvalidStateError("A disabled token cannot be edited. Enable it first, then edit.")
    return token


def _flush(session: Session) -> None:
    """Write now, so a concurrent change shows up as a stale version here."""
    try:
        session.flush()
    except StaleDataError:
        raise StaleTokenError() from None


def create_token(
    session: Session,
    *,
    box: crypto.SecretBox,
    actor: Actor,
    label: str,
    scope: str,
    scopes: Sequence[str],
    now: dt.datetime,
    expires_on: dt.date | None = None,
    alert_channel: str | None = None,
    owner: str | None = None,
) -> CreatedToken:
    """``owner`` (default: the actor) becomes ``created_by``; the audit names the actor.
    Only an admin may create a token on someone else's behalf."""
    if owner and owner != actor.user_id and not actor.is_admin:
        raise PermissionDeniedError("Only a workspace admin can create a token for someone else.")
    label = clean_label(label)
    scope = clean_scope(scope, scopes=scopes, actor=actor)
    expires_at = clean_expiry(expires_on, now=now)
    secret = crypto.generate_secret()
    token = Token(
        public_id=_new_public_id(),
        team_id=actor.team_id,
        label=label,
        label_search=search_key(label),
        scope=scope,
        status=TokenStatus.ACTIVE,
        secret_digest=crypto.digest(secret),
        secret_masked=crypto.mask(secret),
        secret_encrypted=box.encrypt(secret),
        created_at=now,
        created_by=owner or actor.user_id,
        updated_at=now,
        expires_at=expires_at,
        alert_channel=alert_channel,
    )
    session.add(token)
    session.flush()
    record(
        session,
        actor=actor,
        token=token,
        action=AuditAction.CREATE,
        now=now,
        details={
            "label": label,
            "scope": scope,
            "expires_on": expires_at.date().isoformat() if expires_at else None,
        },
    )
    return CreatedToken(token=token, secret=secret)


def _change_rules(*, not_status: str, owner_only: bool) -> list[Any]:
    """Where a change of one token applies: this team's token, at the version the user
    saw, not in the status bound as ``not_status``, and (``owner_only``) their own."""
    t = _TOKENS
    rules = [
        t.c.team_id == bindparam("b_team_id"),
        t.c.public_id == bindparam("b_public_id"),
        t.c.version == bindparam("expected_version"),
        t.c.status != bindparam(not_status),
    ]
    if owner_only:
        rules.append(t.c.created_by == bindparam("owner"))
    return rules


def _rule_values(actor: Actor, public_id: str, expected_version: int) -> dict[str, Any]:
    """The values ``_change_rules`` binds (all but ``not_status``)."""
    return {"b_team_id": actor.team_id, "b_public_id": public_id,
            "expected_version": expected_version, "owner": actor.user_id}


@functools.lru_cache(maxsize=2)
def _edit_update(*, owner_only: bool) -> Any:
    """An edit's UPDATE ... RETURNING: all its fields, under all its rules (this team, owner
    or admin, the version the editor saw, not disabled)."""
    t = _TOKENS
    return (
        update(t)
        .where(*_change_rules(not_status="disabled", owner_only=owner_only))
        .values(
            label=bindparam("new_label"),
            label_search=bindparam("new_label_search"),
            scope=bindparam("new_scope"),
            expires_at=bindparam("new_expires_at"),
            alert_channel=bindparam("new_alert_channel"),
            updated_at=bindparam("b_now"),
            version=t.c.version + 1,
        )
        .returning(*t.c)
    )


def edit_token(
    session: Session,
    *,
    actor: Actor,
    public_id: str,
    expected_version: int,
    scopes: Sequence[str],
    now: dt.datetime,
    label: str | _Unchanged = UNCHANGED,
    scope: str | _Unchanged = UNCHANGED,
    expires_on: dt.date | None | _Unchanged = UNCHANGED,
    alert_channel: str | None | _Unchanged = UNCHANGED,
    seen: Seen | None = None,
    prefetch: Prefetch | None = None,
) -> EditResult:
    """Change label, scope, expiry (None clears it) or alert channel; a disabled token
    cannot be edited. Returns the changed fields as (before, after).

    ``prefetch``: see ``Prefetch``.

    ``seen``: what the editor's form showed at ``expected_version`` (the Slack modal keeps
    it). The change is then written without reading the token first: the UPDATE applies
    only at that version, to a token of the actor's team that they may edit and that is not
    disabled; where it applies nothing, the token is read to say why."""
    token: Token | None = None
    if seen is None:
        token = load_for_edit(session, actor=actor, public_id=public_id,
                              expected_version=expected_version)
        seen = Seen.of(token)
    changes: dict[str, tuple[Any, Any]] = {}
    new_label = seen.label
    if not isinstance(label, _Unchanged):
        new_label = clean_label(label)
        if new_label != seen.label:
            changes["label"] = (seen.label, new_label)
    new_scope = seen.scope
    if not isinstance(scope, _Unchanged) and scope != seen.scope:
        new_scope = clean_scope(scope, scopes=scopes, actor=actor)
        changes["scope"] = (seen.scope, new_scope)
    new_expires = seen.expires_at
    seen_on = seen.expires_at.date() if seen.expires_at else None
    if not isinstance(expires_on, _Unchanged) and expires_on != seen_on:
        new_expires = clean_expiry(expires_on, now=now)
        changes["expires_on"] = (
            seen_on.isoformat() if seen_on else None,
            new_expires.date().isoformat() if new_expires else None,
        )
    new_channel = seen.alert_channel
    if not isinstance(alert_channel, _Unchanged) and alert_channel != seen.alert_channel:
        changes["alert_channel"] = (seen.alert_channel, alert_channel)
        new_channel = alert_channel
    if not changes:
        if token is None:
            token = load_for_edit(session, actor=actor, public_id=public_id,
                                  expected_version=expected_version)
        return EditResult(token=token, changes={})
    edited = update_recorded(
        session,
        _edit_update(owner_only=not actor.is_admin),
        {
            **_rule_values(actor, public_id, expected_version),
            "disabled": TokenStatus.DISABLED,
            "new_label": new_label,
            "new_label_search": search_key(new_label),
            "new_scope": new_scope,
            "new_expires_at": new_expires,
            "new_alert_channel": new_channel,
            "b_now": now,
        },
        actor=actor, action=AuditAction.EDIT, now=now,
        details={
            "before": {name: before for name, (before, _) in changes.items()},
            "after": {name: after for name, (_, after) in changes.items()},
        },
        then=prefetch,
    )
    if edited is None:
        load_for_edit(session, actor=actor, public_id=public_id,
                      expected_version=expected_version)  # raises what stopped it
        raise StaleTokenError()  # it changed between the two statements
    if prefetch is not None:
        prefetch.changed = _listed(edited)
    token = _as_changed(session, edited)
    return EditResult(token=token, changes=changes)


@functools.lru_cache(maxsize=2)
def _status_update(*, owner_only: bool) -> Any:
    """UPDATE ... RETURNING of a status change under all its rules."""
    t = _TOKENS
    return (
        update(t)
        .where(*_change_rules(not_status="new_status", owner_only=owner_only))
        .values(status=bindparam("new_status"), updated_at=bindparam("b_now"),
                version=t.c.version + 1)
        .returning(*t.c)
    )


def _set_status(
    session: Session,
    *,
    actor: Actor,
    public_id: str,
    expected_version: int,
    now: dt.datetime,
    status: TokenStatus,
    prefetch: Prefetch | None = None,
) -> Token:
    verb, action = (
        ("disable", AuditAction.DISABLE)
        if status == TokenStatus.DISABLED
        else ("enable", AuditAction.ENABLE)
    )
    # The common case in one statement: the change applies only where every rule holds
    # (this team, owner or admin, the version the user saw, the other status), and the
    # changed row comes back. No row: find out which rule failed, for the right message.
    changed = update_recorded(
        session,
        _status_update(owner_only=not actor.is_admin),
        {**_rule_values(actor, public_id, expected_version), "new_status": status, "b_now": now},
        actor=actor, action=action, now=now, details=LABEL_DETAILS, then=prefetch,
    )
    if changed is None:
        current = _load_for_change(
            session, actor=actor, public_id=public_id, expected_version=expected_version,
            verb=verb,
        )
        if current.status == status:
            raise InvalidStateError(
                "This token is already disabled."
                if status == TokenStatus.DISABLED
                else "This token is already active."
            )
        raise StaleTokenError()  # it changed between the two statements
    if prefetch is not None:
        prefetch.changed = _listed(changed)
    return _as_changed(session, changed)


def disable_token(
    session: Session, *, actor: Actor, public_id: str, expected_version: int,
    now: dt.datetime, prefetch: Prefetch | None = None,
) -> Token:
    """Any process using the token loses access at once; enabling reverses it."""
    return _set_status(session, actor=actor, public_id=public_id,
                       expected_version=expected_version, now=now, status=TokenStatus.DISABLED,
                       prefetch=prefetch)


def enable_token(
    session: Session, *, actor: Actor, public_id: str, expected_version: int,
    now: dt.datetime, prefetch: Prefetch | None = None,
) -> Token:
    """The token is active again immediately."""
    return _set_status(session, actor=actor, public_id=public_id,
                       expected_version=expected_version, now=now, status=TokenStatus.ACTIVE,
                       prefetch=prefetch)


def delete_token(
    session: Session, *, actor: Actor, public_id: str, expected_version: int, now: dt.datetime
) -> str:
    """Delete for good; returns the label. A disabled token must be enabled first."""
    token = _load_for_change(
        session, actor=actor, public_id=public_id, expected_version=expected_version,
        verb="delete",
    )
    if token.status == TokenStatus.DISABLED:
        raise InvalidStateError(
            "A disabled token cannot be deleted. Enable it first, then delete it."
        )
    label = token.label
    record(session, actor=actor, token=token, action=AuditAction.DELETE, now=now,
           details={"label": label, "scope": token.scope})
    session.delete(token)
    _flush(session)
    return label


def rotate_token(
    session: Session,
    *,
    box: crypto.SecretBox,
    actor: Actor,
    public_id: str,
    expected_version: int,
    now: dt.datetime,
) -> CreatedToken:
    """A new secret for the same token; the old one stops working at once."""
    token = _load_for_change(
        session, actor=actor, public_id=public_id, expected_version=expected_version,
        verb="rotate",
    )
    secret = crypto.generate_secret()
    old_masked = token.secret_masked
    token.secret_digest = crypto.digest(secret)
    token.secret_masked = crypto.mask(secret)
    token.secret_encrypted = box.encrypt(secret)
    token.updated_at = now
    _flush(session)
    record(session, actor=actor, token=token, action=AuditAction.ROTATE, now=now,
           details={"before": {"masked": old_masked}, "after": {"masked": token.secret_masked}})
    return CreatedToken(token=token, secret=secret)


def reveal_token(
    session: Session, *, box: crypto.SecretBox, actor: Actor, public_id: str, now: dt.datetime
) -> tuple[Token, str]:
    """The full secret, for its owner or an admin; every reveal is audited."""
    token = get_token(session, team_id=actor.team_id, public_id=public_id)
    _authorize(token, actor, "copy")
    secret = box.decrypt(token.secret_encrypted)
    record(session, actor=actor, token=token, action=AuditAction.REVEAL, now=now,
           details={"masked": token.secret_masked})
    return token, secret


def reencrypt_all(session: Session, *, box: crypto.SecretBox, batch: int = 1000) -> int:
    """Re-encrypt every stored secret under the newest key; returns how many changed."""
    changed = 0
    last_id = 0
    while True:
        rows = session.execute(
            select(Token.id, Token.secret_encrypted)
            .where(Token.id > last_id)
            .order_by(Token.id)
            .limit(batch)
        ).all()
        if not rows:
            return changed
        for row_id, blob in rows:
            last_id = row_id
            if box.is_current(blob):
                continue
            # Only if the blob is still the one read: a token rotated meanwhile keeps its
            # new secret (written under the newest key already) instead of the old one.
            result = session.execute(
                Token.__table__.update()
                .where(
                    Token.__table__.c.id == row_id,
                    Token.__table__.c.secret_encrypted == blob,
                )
                .values(secret_encrypted=box.rotate(blob))
            )
            changed += result.rowcount
