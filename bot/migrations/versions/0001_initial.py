"""tokens and audit events

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from bot.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

SQLITE_FTS = [
    "CREATE VIRTUAL TABLE tokens_label_fts USING fts5("
    "label_search, content='tokens', content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER tokens_label_fts_ai AFTER INSERT ON tokens BEGIN "
    "INSERT INTO tokens_label_fts(rowid, label_search) VALUES (new.id, new.label_search); END",
    "CREATE TRIGGER tokens_label_fts_ad AFTER DELETE ON tokens BEGIN "
    "INSERT INTO tokens_label_fts(tokens_label_fts, rowid, label_search) "
    "VALUES ('delete', old.id, old.label_search); END",
    "CREATE TRIGGER tokens_label_fts_au AFTER UPDATE OF label_search ON tokens BEGIN "
    "INSERT INTO tokens_label_fts(tokens_label_fts, rowid, label_search) "
    "VALUES ('delete', old.id, old.label_search); "
    "INSERT INTO tokens_label_fts(rowid, label_search) VALUES (new.id, new.label_search); END",
]


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("public_id", sa.String(32), nullable=False),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("label_search", sa.String(100), nullable=False),
        sa.Column("scope", sa.String(75), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("secret_digest", sa.String(64), nullable=False),
        sa.Column("secret_masked", sa.String(16), nullable=False),
        sa.Column("secret_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(32), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.Column("alert_channel", sa.String(32), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.UniqueConstraint("public_id", name="uq_tokens_public_id"),
        sa.UniqueConstraint("secret_digest", name="uq_tokens_secret_digest"),
    )
    op.create_index("ix_tokens_team_created", "tokens", ["team_id", "created_at", "id"])
    op.create_index(
        "ix_tokens_team_owner_created", "tokens", ["team_id", "created_by", "created_at", "id"]
    )
    op.create_index(
        "ix_tokens_team_status_created", "tokens", ["team_id", "status", "created_at", "id"]
    )
    op.create_index("ix_tokens_expires_at", "tokens", ["expires_at"])
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        # Substring search on labels (LIKE '%text%') uses a trigram index.
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(
            "CREATE INDEX ix_tokens_label_trgm ON tokens USING gin (label_search gin_trgm_ops)"
        )
    elif dialect == "sqlite":
        # SQLite: an FTS5 trigram index over the labels, kept in step by triggers.
        # NB: a later batch ("move and copy") migration of `tokens` drops these triggers;
        # such a migration must recreate them.
        for statement in SQLITE_FTS:
            op.execute(statement)

    op.create_table(
        "audit_events",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("token_public_id", sa.String(32), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
    )
    op.create_index("ix_audit_team_at", "audit_events", ["team_id", "at", "id"])
    op.create_index(
        "ix_audit_team_token_at", "audit_events", ["team_id", "token_public_id", "at", "id"]
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS tokens_label_fts")
    op.drop_table("audit_events")
    op.drop_table("tokens")
