"""owner separate from creator; owners who leave

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08

- ``tokens.owner``: who answers for a token (rights, reminders, notices); existing tokens'
  owner is their creator (``created_by``, kept as history). The owner filter's index moves
  from ``created_by`` to ``owner``.
- ``departed_owners``: users found deactivated while owning tokens.
- ``owner_checks``: when a team's owners were last checked with ``users.info``.
"""

import sqlalchemy as sa
from alembic import op

from bot.models import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Plain ADD COLUMN (SQLite keeps the table and its search triggers): NOT NULL needs a
    # default to add, then every row gets its creator.
    op.add_column("tokens", sa.Column("owner", sa.String(32), nullable=False,
                                      server_default=""))
    op.execute("UPDATE tokens SET owner = created_by")
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("tokens", "owner", server_default=None)
    op.drop_index("ix_tokens_team_owner_created", table_name="tokens")
    op.create_index("ix_tokens_team_owner_created", "tokens",
                    ["team_id", "owner", "created_at", "id"])
    op.create_table(
        "departed_owners",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("noticed_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("team_id", "user_id", name="uq_departed_owners"),
    )
    op.create_table(
        "owner_checks",
        sa.Column("team_id", sa.String(32), primary_key=True),
        sa.Column("checked_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("owner_checks")
    op.drop_table("departed_owners")
    op.drop_index("ix_tokens_team_owner_created", table_name="tokens")
    op.create_index("ix_tokens_team_owner_created", "tokens",
                    ["team_id", "created_by", "created_at", "id"])
    # SQLite 3.35+ drops a column in place (no table copy, the triggers stay).
    op.execute("ALTER TABLE tokens DROP COLUMN owner")
