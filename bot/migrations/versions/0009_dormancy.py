"""token hygiene: when a person last enabled a token (its dormancy counts from then), and
when a digest last warned that the policy would disable it

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

from bot.models import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN: SQLite keeps the table (and its search triggers).
    op.add_column("tokens", sa.Column("enabled_at", UTCDateTime(), nullable=True))
    op.add_column("tokens", sa.Column("dormant_warned_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    # SQLite 3.35+ drops a column in place (no table copy, the triggers stay).
    op.execute("ALTER TABLE tokens DROP COLUMN dormant_warned_at")
    op.execute("ALTER TABLE tokens DROP COLUMN enabled_at")
