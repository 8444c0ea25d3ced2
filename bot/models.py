"""SQLAlchemy 2 typed models. Every datetime is timezone-aware UTC."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


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


class AuditAction(enum.StrEnum):
    CREATE = "create"
    EDIT = "edit"
    DISABLE = "disable"
    ENABLE = "enable"
    DELETE = "delete"
    ROTATE = "rotate"
    REVEAL = "reveal"


# An integer primary key keeps the b-tree small; the public id is what people see.
_BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class Token(Base):
    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(_BigIntPK, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(32))
    team_id: Mapped[str] = mapped_column(String(32))
    label: Mapped[str] = mapped_column(String(100))
    # Lower-cased label, for case-insensitive search on every database.
    label_search: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(75))
    status: Mapped[TokenStatus] = mapped_column(String(16), default=TokenStatus.ACTIVE)
    secret_digest: Mapped[str] = mapped_column(String(64))
    secret_masked: Mapped[str] = mapped_column(String(16))
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    alert_channel: Mapped[str | None] = mapped_column(String(32), default=None)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        UniqueConstraint("public_id", name="uq_tokens_public_id"),
        UniqueConstraint("secret_digest", name="uq_tokens_secret_digest"),
        # The table's order (newest first) within a team, and the owner filter.
        Index("ix_tokens_team_created", "team_id", "created_at", "id"),
        Index("ix_tokens_team_owner_created", "team_id", "created_by", "created_at", "id"),
        Index("ix_tokens_team_status_created", "team_id", "status", "created_at", "id"),
        Index("ix_tokens_expires_at", "expires_at"),
    )

    def display_status(self, now: dt.datetime) -> DisplayStatus:
        if self.status == TokenStatus.DISABLED:
            return DisplayStatus.DISABLED
        if self.is_expired(now):
            return DisplayStatus.EXPIRED
        return DisplayStatus.ACTIVE

    def is_expired(self, now: dt.datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    @property
    def expires_on(self) -> dt.date | None:
        return self.expires_at.date() if self.expires_at else None

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
