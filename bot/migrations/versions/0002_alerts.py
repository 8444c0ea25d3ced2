"""expiry alerts: one row per (token, threshold, expiry, destination kind)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from bot.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column(
            "token_id",
            BigIntPK,
            sa.ForeignKey("tokens.id", ondelete="CASCADE", name="fk_alerts_token"),
            nullable=False,
        ),
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
        sa.UniqueConstraint(
            "token_id", "threshold_days", "expires_at", "kind", name="uq_alerts_once"
        ),
    )
    op.create_index("ix_alerts_due", "alerts", ["status", "next_attempt_at"])
    op.create_index("ix_alerts_destination", "alerts", ["destination", "status"])
    op.create_index("ix_alerts_message", "alerts", ["message_channel", "message_ts"])
    op.create_index("ix_alerts_expires_at", "alerts", ["expires_at"])


def downgrade() -> None:
    op.drop_table("alerts")
