"""SQLAlchemy 2 typed models. Every datetime is timezone-aware UTC."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    TypeDecorator,
    UniqueConstraint,
    and_,
    not_,
    or_,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from bot import dates


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stores UTC, always returns aware datetimes (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware one is required")
        value = value.astimezone(dt.timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


class Base(DeclarativeBase):
    pass


class TokenStatus(enum.StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class DisplayStatus(enum.StrEnum):
    """What a person sees: Expired is derived from the date."""

    ACTIVE = "active"
    DISABLED = "disabled"
    EXPIRED = "expired"


class AuditSource(enum.StrEnum):
    SLACK = "slack"
    CLI = "cli"
    API = "api"
    SCHEDULER = "scheduler"
    POLICY = "policy"  # the token hygiene rules acting on their own (bot.services.hygiene)
    LEAK_SCAN = "leak_scan"  # Tokenbot itself, on a live secret seen in Slack


class AuditAction(enum.StrEnum):
    CREATE = "create"
    EDIT = "edit"
    DISABLE = "disable"
    ENABLE = "enable"
    DELETE = "delete"
    ROTATE = "rotate"
    REVEAL = "reveal"
    # rotation with overlap (bot.services.rotation)
    # the old secret stopped: the new one's first use, the deadline, or by hand
    RETIRE_OLD = "retire_old"
    CANCEL_ROTATION = "cancel_rotation"
    # a live secret was seen in a Slack message (the actor: who posted it)
    LEAK = "leak"
    REASSIGN = "reassign"  # a new owner (bot.services.owners)


# An integer primary key keeps the b-tree small; the public id is what people see.
_BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> dt.datetime:
    """The current moment, timezone-aware UTC: what entry points pass to services as ``now``."""
    return dt.datetime.now(dt.timezone.utc)


# -- "is this token usable now": the one rule, in Python and in SQL, side by side ---------


def has_expired(expires_at: dt.datetime | None, now: dt.datetime) -> bool:
    """A token stops working at its expiry instant (00:00 UTC of its expiry date)."""
    return expires_at is not None and expires_at <= now


def is_usable(status: str, expires_at: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a token authenticates at ``now``: active, and not past its expiry."""
    return status == TokenStatus.ACTIVE and not has_expired(expires_at, now)


def secret_is_usable(
    status: str,
    expires_at: dt.datetime | None,
    now: dt.datetime,
    *,
    superseded_until: dt.datetime | None = None,
) -> bool:
    """Whether a presented secret authenticates at ``now``: the token is usable, and when
    the secret is the old one of a rotation with overlap (``superseded_until`` is its
    deadline), the deadline has not come."""
    if not is_usable(status, expires_at, now):
        return False
    return superseded_until is None or superseded_until > now


def old_secret_until(
    expires_at: dt.datetime | None, rotation_until: dt.datetime | None
) -> dt.datetime | None:
    """When the old secret of a rotation with overlap stops at the latest: the overlap's
    deadline, or the token's expiry when that comes first (None: no rotation)."""
    if rotation_until is None:
        return None
    return rotation_until if expires_at is None else min(expires_at, rotation_until)


def shown_status(
    status: str, expires_at: dt.datetime | None, now: dt.datetime
) -> DisplayStatus:
    """What a person sees of a token at ``now``: Disabled, else Expired past its date."""
    if status == TokenStatus.DISABLED:
        return DisplayStatus.DISABLED
    if not is_usable(status, expires_at, now):
        return DisplayStatus.EXPIRED
    return DisplayStatus.ACTIVE


def status_clause(status: DisplayStatus, now: dt.datetime) -> ColumnElement[bool]:
    """SQL for "shows as ``status`` at ``now``": the rules above over the tokens table."""
    if status == DisplayStatus.DISABLED:
        return Token.status == TokenStatus.DISABLED
    unexpired = or_(Token.expires_at.is_(None), Token.expires_at > now)
    if status == DisplayStatus.EXPIRED:
        return and_(Token.status == TokenStatus.ACTIVE, not_(unexpired))
    return and_(Token.status == TokenStatus.ACTIVE, unexpired)


class TokenRules:
    """The rules above as a token row answers them (a ``Token``, or a listed row with the
    same ``status``, ``expires_at`` and ``rotation_until``)."""

    __slots__ = ()

    def display_status(self, now: dt.datetime) -> DisplayStatus:
        return shown_status(self.status, self.expires_at, now)  # type: ignore[attr-defined]

    def rotating(self, now: dt.datetime) -> bool:
        """Whether the old secret of a rotation with overlap still works at ``now``."""
        until = self.rotation_until  # type: ignore[attr-defined]
        return until is not None and secret_is_usable(
            self.status, self.expires_at, now, superseded_until=until)  # type: ignore[attr-defined]

    @property
    def old_secret_until(self) -> dt.datetime | None:
        """When a rotation's old secret stops at the latest (:func:`old_secret_until`)."""
        return old_secret_until(self.expires_at,  # type: ignore[attr-defined]
                                self.rotation_until)  # type: ignore[attr-defined]

    @property
    def expires_on(self) -> dt.date | None:
        """The calendar date picked (``bot.dates``), or None."""
        expires_at = self.expires_at  # type: ignore[attr-defined]
        return dates.expiry_date(expires_at) if expires_at else None


class Token(TokenRules, Base):
    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(_BigIntPK, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(32))
    team_id: Mapped[str] = mapped_column(String(32))
    label: Mapped[str] = mapped_column(String(100))
    # The label as a search compares it (services.listing.search_key); it may be longer.
    label_search: Mapped[str] = mapped_column(String())
    scope: Mapped[str] = mapped_column(String(75))
    status: Mapped[TokenStatus] = mapped_column(String(16), default=TokenStatus.ACTIVE)
    secret_digest: Mapped[str] = mapped_column(String(64))
    secret_masked: Mapped[str] = mapped_column(String(16))
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(32))  # who created it; never changes
    # Who answers for it (rights, reminders, notices follow it): at first its creator's
    # choice; an admin may reassign it (bot.services.owners).
    owner: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    alert_channel: Mapped[str | None] = mapped_column(String(32), default=None)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # The name of the introspection caller that last presented it (with last_used_at).
    last_used_by: Mapped[str | None] = mapped_column(String(100), default=None)
    # A rotation with overlap: the old secret keeps working until the new one is first
    # presented or until ``rotation_until``, whichever comes first (bot.services.rotation).
    previous_secret_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    previous_secret_masked: Mapped[str | None] = mapped_column(String(16), default=None)
    previous_secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    rotation_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Token hygiene (bot.services.policy, bot.services.hygiene): why an admin let its expiry
    # go beyond the lifetime cap, and when it was last noticed as dormant (listed in a
    # hygiene digest, or disabled for it): at most once per 30 days.
    policy_exception: Mapped[str | None] = mapped_column(String(500), default=None)
    dormant_noticed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    # When a person last enabled it again: its dormancy counts from then at the earliest;
    # when a digest last warned that the policy would disable it (DORMANT_ACTION=disable).
    enabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    dormant_warned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        UniqueConstraint("public_id", name="uq_tokens_public_id"),
        UniqueConstraint("secret_digest", name="uq_tokens_secret_digest"),
        # Partial: only rotating tokens are in it, so the planner knows it is selective
        # (with every NULL in it, SQLite's statistics made it look useless: a table scan).
        Index("uq_tokens_previous_secret_digest", "previous_secret_digest", unique=True,
              sqlite_where=text("previous_secret_digest IS NOT NULL"),
              postgresql_where=text("previous_secret_digest IS NOT NULL")),
        # The table's order (newest first) within a team, and the owner filter.
        Index("ix_tokens_team_created", "team_id", "created_at", "id"),
        Index("ix_tokens_team_owner_created", "team_id", "owner", "created_at", "id"),
        Index("ix_tokens_team_status_created", "team_id", "status", "created_at", "id"),
        Index("ix_tokens_expires_at", "expires_at"),
    )

    def __repr__(self) -> str:  # never the secret
        return f"<Token {self.public_id} team={self.team_id} status={self.status}>"


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(_BigIntPK, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(String(32))
    # No foreign key: a deleted token keeps its history.
    token_public_id: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[AuditAction] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    source: Mapped[AuditSource] = mapped_column(String(16))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (
        Index("ix_audit_team_at", "team_id", "at", "id"),
        Index("ix_audit_team_token_at", "team_id", "token_public_id", "at", "id"),
    )


class HygieneScan(Base):
    """When the token hygiene step last looked at the registry (one row): the scheduled
    pass scans at most once per ``services.hygiene.SCAN_EVERY``, whatever the number of
    processes, so a pass with nothing due stays cheap."""

    __tablename__ = "hygiene_scans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    scanned_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class KeyCheck(Base):
    """One known value encrypted under the configured keys. Start-up decrypts it, so a
    wrong TOKENBOT_SECRET_KEYS (or a lost key file) is refused before anything is written
    under it."""

    __tablename__ = "key_check"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    value: Mapped[bytes] = mapped_column(LargeBinary)


# -- the outbox: every message Tokenbot posts on its own (bot/outbox) -----------------


class MessageKind(enum.StrEnum):
    """What an outbox message is; its builder and its rules are in ``bot.outbox.kinds``."""

    EXPIRY = "expiry"  # an expiry reminder: one token, in a digest per destination
    OWNER_NOTICE = "owner_notice"  # someone else acted on your token
    ROTATION_NOTICE = "rotation_notice"  # how a rotation with overlap ended
    DEAD_SECRET_ALARM = "dead_secret_alarm"  # a dead secret is still presented
    HYGIENE = "hygiene"  # the weekly hygiene digest: dormant tokens, tokens over policy
    DORMANT_DISABLED = "dormant_disabled"  # your dormant token was disabled by the policy
    LEAK_NOTICE = "leak_notice"  # a live secret was posted in Slack
    REASSIGN_NOTICE = "reassign_notice"  # a token changed owner (to the old and new owner)
    DEPARTED_OWNER = "departed_owner"  # a deactivated user's tokens, to the alert channel


class Audience(enum.StrEnum):
    """Where a message goes: a channel, or a token's owner by direct message."""

    CHANNEL = "channel"
    OWNER = "owner"


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"  # due, or waiting for a retry (next_attempt_at)
    SENT = "sent"  # Slack accepted the message (message_channel, message_ts)
    SKIPPED = "skipped"  # no longer wanted (skip_reason), never posted


class OutboxMessage(Base):
    """One thing to post once: queued in the transaction of what causes it, claimed with a
    lease (``claimed_by``, ``claimed_at``), its attempt recorded (``post_attempted_at``),
    then sent, failed (retried with backoff) or settled from Slack's history. Several
    rows of one kind and destination may go out as one message (a digest); the message's
    metadata names them. The protocol is in ``bot.outbox``; ``docs/ARCHITECTURE.md``."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(_BigIntPK, primary_key=True, autoincrement=True)
    kind: Mapped[MessageKind] = mapped_column(String(32))
    team_id: Mapped[str] = mapped_column(String(32))
    audience: Mapped[Audience] = mapped_column(String(16))
    destination: Mapped[str] = mapped_column(String(32))  # channel id, or a user id
    # Queued at most once per key (a dead-secret alarm: token, day and audience).
    key: Mapped[str | None] = mapped_column(String(200), default=None)
    token_public_id: Mapped[str | None] = mapped_column(String(32), default=None)
    # What the builder needs besides the token (never a secret).
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=dict)
    # An expiry reminder: its token (deleting the token deletes them), threshold, expiry.
    token_id: Mapped[int | None] = mapped_column(
        _BigIntPK, ForeignKey("tokens.id", ondelete="CASCADE", name="fk_outbox_token"),
        default=None)
    threshold_days: Mapped[int | None] = mapped_column(Integer, default=None)  # 0: at expiry
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    status: Mapped[OutboxStatus] = mapped_column(String(16), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    claimed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Set just before a post, cleared once its outcome is known: a row that still has it
    # was perhaps posted, and its destination's history says whether.
    post_attempted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    message_channel: Mapped[str | None] = mapped_column(String(32), default=None)
    message_ts: Mapped[str | None] = mapped_column(String(32), default=None)
    last_error: Mapped[str | None] = mapped_column(String(200), default=None)
    skip_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    # What someone did from the posted message (a digest's buttons), shown when redrawn.
    acted_action: Mapped[str | None] = mapped_column(String(16), default=None)
    acted_by: Mapped[str | None] = mapped_column(String(32), default=None)
    acted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)

    __table_args__ = (
        # An expiry reminder goes out once however many processes arm it; keyed by the
        # expiry, so a token whose date changes is re-armed. (NULLs never conflict: the
        # other kinds are not constrained by it.)
        UniqueConstraint("token_id", "threshold_days", "expires_at", "audience",
                         name="uq_outbox_expiry"),
        UniqueConstraint("key", name="uq_outbox_key"),
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_message", "message_channel", "message_ts"),
        Index("ix_outbox_expires_at", "expires_at"),
        Index("ix_outbox_created_at", "created_at"),
    )

    def __repr__(self) -> str:
        return (f"<OutboxMessage {self.id} {self.kind} {self.audience}:{self.destination} "
                f"{self.status}>")


# -- rotation with an overlap, dead secrets (bot.services.rotation, bot.services.dead_secrets) ---


class RetiredReason(enum.StrEnum):
    ROTATED = "rotated"  # replaced by a rotation (or discarded by a cancelled one)
    DELETED = "deleted"  # its token was deleted


#: How long a retired secret's tombstone is kept (then purged by the scheduled pass).
TOMBSTONE_DAYS = 90


class RetiredSecret(Base):
    """A tombstone: the digest of a secret that no longer belongs to a token (rotated out,
    or its token deleted), kept so a presentation of it can be told to the owner. Nothing
    secret: the digest, the masked prefix people already see, and who it was."""

    __tablename__ = "retired_secrets"

    id: Mapped[int] = mapped_column(_BigIntPK, primary_key=True, autoincrement=True)
    secret_digest: Mapped[str] = mapped_column(String(64))
    team_id: Mapped[str] = mapped_column(String(32))
    token_public_id: Mapped[str] = mapped_column(String(32))
    label: Mapped[str] = mapped_column(String(100))
    owner: Mapped[str] = mapped_column(String(32))
    secret_masked: Mapped[str] = mapped_column(String(16))
    reason: Mapped[RetiredReason] = mapped_column(String(16))
    retired_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("secret_digest", name="uq_retired_secrets_digest"),
        Index("ix_retired_secrets_retired_at", "retired_at"),
        Index("ix_retired_secrets_token", "team_id", "token_public_id"),
    )


class DeadSecretUse(Base):
    """How often a dead secret of a token was presented by one caller within one hour
    (counts added by every process: ``count = count + n``), with what was presented: why
    that secret did not work then (``reason``: disabled, expired, deleted, rotated out)
    and its masked prefix."""

    __tablename__ = "dead_secret_uses"

    id: Mapped[int] = mapped_column(_BigIntPK, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(String(32))
    token_public_id: Mapped[str] = mapped_column(String(32))
    caller: Mapped[str] = mapped_column(String(100))
    hour: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(String(16))
    masked: Mapped[str] = mapped_column(String(16))
    count: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (
        UniqueConstraint("team_id", "token_public_id", "caller", "hour", "reason", "masked",
                         name="uq_dead_secret_uses"),
        Index("ix_dead_secret_uses_hour", "hour"),
    )


# -- owners who leave (bot.services.departed) --------------------------------------------


class DepartedOwner(Base):
    """A Slack user found deactivated (a ``user_change`` event, or the weekly check with
    ``users.info``) while owning tokens: the hygiene digest lists their tokens."""

    __tablename__ = "departed_owners"

    id: Mapped[int] = mapped_column(_BigIntPK, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    noticed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("team_id", "user_id", name="uq_departed_owners"),
    )


class OwnerCheck(Base):
    """When a team's owners were last checked with ``users.info`` (at most weekly, by one
    process: a conditional update claims the check)."""

    __tablename__ = "owner_checks"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    checked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
