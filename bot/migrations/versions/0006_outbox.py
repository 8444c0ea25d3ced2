"""one outbox: every message Tokenbot posts on its own

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

``outbox`` replaces ``alerts`` (expiry reminders, copied as they are), ``lifecycle_notices``
(rotation notices: the unsent ones are copied) and ``dead_secret_alarms`` (today's and
recent claims become sent alarm rows under their once-per-day key). A reminder whose post
was uncertain at the upgrade is settled from history under its new id, so it is not found
there: it may be posted once more.
"""

import datetime as dt

import sqlalchemy as sa
from alembic import op

from bot.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_COPIED = ["team_id", "destination", "token_id", "threshold_days", "expires_at", "status",
           "attempts", "next_attempt_at", "claimed_by", "claimed_at", "post_attempted_at",
           "created_at", "sent_at", "message_channel", "message_ts", "last_error",
           "skip_reason", "acted_action", "acted_by", "acted_at"]


def upgrade() -> None:
    outbox = op.create_table(
        "outbox",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("audience", sa.String(16), nullable=False),
        sa.Column("destination", sa.String(32), nullable=False),
        sa.Column("key", sa.String(200), nullable=True),
        sa.Column("token_public_id", sa.String(32), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("token_id", BigIntPK,
                  sa.ForeignKey("tokens.id", ondelete="CASCADE", name="fk_outbox_token"),
                  nullable=True),
        sa.Column("threshold_days", sa.Integer(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_at", UTCDateTime(), nullable=True),
        sa.Column("post_attempted_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("message_channel", sa.String(32), nullable=True),
        sa.Column("message_ts", sa.String(32), nullable=True),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column("skip_reason", sa.String(32), nullable=True),
        sa.Column("acted_action", sa.String(16), nullable=True),
        sa.Column("acted_by", sa.String(32), nullable=True),
        sa.Column("acted_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("token_id", "threshold_days", "expires_at", "audience",
                            name="uq_outbox_expiry"),
        sa.UniqueConstraint("key", name="uq_outbox_key"),
    )
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_message", "outbox", ["message_channel", "message_ts"])
    op.create_index("ix_outbox_expires_at", "outbox", ["expires_at"])
    op.create_index("ix_outbox_created_at", "outbox", ["created_at"])
    columns = ", ".join(_COPIED)
    op.execute(f"INSERT INTO outbox (kind, audience, {columns}) "
               f"SELECT 'expiry', kind, {columns} FROM alerts")
    connection = op.get_bind()
    notices = connection.execute(sa.text(
        "SELECT team_id, token_public_id, owner, label, kind, caller, at FROM lifecycle_notices "
        "WHERE sent_at IS NULL")).all()
    now = dt.datetime.now(dt.timezone.utc)
    rows = [{"kind": "rotation_notice", "team_id": n.team_id, "audience": "owner",
             "destination": n.owner, "token_public_id": n.token_public_id,
             "payload": {"label": n.label, "ending": n.kind, "caller": n.caller,
                         "at": _iso(n.at)},
             "key": None, "status": "pending", "attempts": 0, "next_attempt_at": now,
             "created_at": now, "sent_at": None}
            for n in notices]
    alarms = connection.execute(sa.text(
        "SELECT team_id, token_public_id, day, claimed_at FROM dead_secret_alarms")).all()
    for alarm in alarms:
        claimed = _aware(alarm.claimed_at)
        for audience in ("owner", "channel"):
            rows.append({
                "kind": "dead_secret_alarm", "team_id": alarm.team_id, "audience": audience,
                "destination": "", "token_public_id": alarm.token_public_id,
                "key": f"dead_secret_alarm:{alarm.team_id}:{alarm.token_public_id}:"
                       f"{alarm.day}:{audience}",
                "payload": {}, "status": "sent", "attempts": 1, "next_attempt_at": claimed,
                "created_at": claimed, "sent_at": claimed})
    if rows:
        op.bulk_insert(outbox, rows)
    op.drop_table("alerts")
    op.drop_table("lifecycle_notices")
    op.drop_table("dead_secret_alarms")


def _aware(value: object) -> dt.datetime:
    if isinstance(value, str):  # SQLite hands text back through a plain SELECT
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _iso(value: object) -> str:
    return _aware(value).isoformat()


def downgrade() -> None:
    """Back to the three tables: the expiry reminders are copied back; the other kinds'
    rows (notices, alarms) are dropped."""
    op.create_table(
        "alerts",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("token_id", BigIntPK,
                  sa.ForeignKey("tokens.id", ondelete="CASCADE", name="fk_alerts_token"),
                  nullable=False),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("threshold_days", sa.Integer(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("destination", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("message_channel", sa.String(32), nullable=True),
        sa.Column("message_ts", sa.String(32), nullable=True),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column("skip_reason", sa.String(32), nullable=True),
        sa.Column("acted_action", sa.String(16), nullable=True),
        sa.Column("acted_by", sa.String(32), nullable=True),
        sa.Column("acted_at", UTCDateTime(), nullable=True),
        sa.Column("post_attempted_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("token_id", "threshold_days", "expires_at", "kind",
                            name="uq_alerts_once"),
    )
    op.create_index("ix_alerts_due", "alerts", ["status", "next_attempt_at"])
    op.create_index("ix_alerts_destination", "alerts", ["destination", "status"])
    op.create_index("ix_alerts_message", "alerts", ["message_channel", "message_ts"])
    op.create_index("ix_alerts_expires_at", "alerts", ["expires_at"])
    columns = ", ".join(_COPIED)
    op.execute(f"INSERT INTO alerts (kind, {columns}) SELECT audience, {columns} FROM outbox "
               "WHERE kind = 'expiry'")
    op.create_table(
        "dead_secret_alarms",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("token_public_id", sa.String(32), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=False),
        sa.Column("presented", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("team_id", "token_public_id", "day", name="uq_dead_secret_alarms"),
    )
    op.create_index("ix_dead_secret_alarms_claimed_at", "dead_secret_alarms", ["claimed_at"])
    op.create_table(
        "lifecycle_notices",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("token_public_id", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(32), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("caller", sa.String(100), nullable=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_at", UTCDateTime(), nullable=True),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_lifecycle_notices_pending", "lifecycle_notices",
                    ["sent_at", "claimed_at"])
    op.drop_table("outbox")
