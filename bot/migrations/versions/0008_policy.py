"""token hygiene: a token's policy exception and when it was last noticed as dormant;
when the hygiene step last scanned the registry

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08

(Written beside 0007, the owner/creator split; the merge re-chains it after 0007.)
"""

import sqlalchemy as sa
from alembic import op

from bot.models import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN: SQLite keeps the table (and its search triggers).
    op.add_column("tokens", sa.Column("policy_exception", sa.String(500), nullable=True))
    op.add_column("tokens", sa.Column("dormant_noticed_at", UTCDateTime(), nullable=True))
    op.create_table(
        "hygiene_scans",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("scanned_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("hygiene_scans")
    # SQLite 3.35+ drops a column in place (no table copy, the triggers stay).
    op.execute("ALTER TABLE tokens DROP COLUMN dormant_noticed_at")
    op.execute("ALTER TABLE tokens DROP COLUMN policy_exception")
