"""usage-aware lifecycle: named last use, rotation with overlap, dead-secret alarms

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

- ``tokens``: ``last_used_by`` (the introspection caller's name) and the old secret of a
  rotation with overlap (``previous_secret_*``, ``rotation_until``).
- ``retired_secrets``: tombstones of rotated-out secrets and deleted tokens (90 days).
- ``dead_secret_uses``: presentations of dead secrets per token, caller, hour and secret
  presented (why it was dead, its masked prefix).
- ``dead_secret_alarms``: one claim row per token and day (the alarm goes out once).
- ``lifecycle_notices``: the outbox of direct messages about rotations.
"""

import sqlalchemy as sa
from alembic import op

from bot.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _NEW_TOKEN_COLUMNS() -> list[sa.Column]:  # type: ignore[type-arg]  # noqa: N802
    return [
        sa.Column("last_used_by", sa.String(100), nullable=True),
        sa.Column("previous_secret_digest", sa.String(64), nullable=True),
        sa.Column("previous_secret_masked", sa.String(16), nullable=True),
        sa.Column("previous_secret_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("rotation_until", UTCDateTime(), nullable=True),
    ]


def upgrade() -> None:
    # Plain ADD COLUMN and CREATE INDEX: SQLite keeps the table (and its search triggers).
    for column in _NEW_TOKEN_COLUMNS():
        op.add_column("tokens", column)
    # Partial: only rotating tokens, so the planner sees it as selective.
    rotating = sa.text("previous_secret_digest IS NOT NULL")
    op.create_index("uq_tokens_previous_secret_digest", "tokens", ["previous_secret_digest"],
                    unique=True, sqlite_where=rotating, postgresql_where=rotating)
    op.create_table(
        "retired_secrets",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("secret_digest", sa.String(64), nullable=False),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("token_public_id", sa.String(32), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("owner", sa.String(32), nullable=False),
        sa.Column("secret_masked", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("retired_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("secret_digest", name="uq_retired_secrets_digest"),
    )
    op.create_index("ix_retired_secrets_retired_at", "retired_secrets", ["retired_at"])
    op.create_index("ix_retired_secrets_token", "retired_secrets",
                    ["team_id", "token_public_id"])
    op.create_table(
        "dead_secret_uses",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("token_public_id", sa.String(32), nullable=False),
        sa.Column("caller", sa.String(100), nullable=False),
        sa.Column("hour", UTCDateTime(), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("masked", sa.String(16), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("team_id", "token_public_id", "caller", "hour", "reason", "masked",
                            name="uq_dead_secret_uses"),
    )
    op.create_index("ix_dead_secret_uses_hour", "dead_secret_uses", ["hour"])
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


def downgrade() -> None:
    op.drop_table("lifecycle_notices")
    op.drop_table("dead_secret_alarms")
    op.drop_table("dead_secret_uses")
    op.drop_table("retired_secrets")
    op.drop_index("uq_tokens_previous_secret_digest", table_name="tokens")
    for column in reversed(_NEW_TOKEN_COLUMNS()):
        # SQLite 3.35+ drops a column in place (no table copy, the triggers stay).
        op.execute(f"ALTER TABLE tokens DROP COLUMN {column.name}")
