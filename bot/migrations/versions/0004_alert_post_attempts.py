"""alerts remember when a post of theirs was attempted

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

- ``alerts.post_attempted_at``: set just before the alert's message is posted and cleared
  once the outcome is known (sent, or refused by Slack). A record that still has it was
  perhaps posted (the pass died, the answer timed out, the database failed after Slack
  accepted): the next pass reads the destination's history before posting it again.
"""

import sqlalchemy as sa
from alembic import op

from bot.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("alerts", sa.Column("post_attempted_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:  # SQLite rebuilds the table
        batch.drop_column("post_attempted_at")
