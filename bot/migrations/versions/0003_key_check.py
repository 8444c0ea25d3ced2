"""key check value; labels searched with full case folding

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

- ``key_check``: one known value encrypted under TOKENBOT_SECRET_KEYS, decrypted at
  start-up to refuse a wrong key before anything is written under it.
- ``tokens.label_search`` is re-keyed as ``str.casefold`` folds case (İ as plain i, in
  NFC), which can be longer than the label: no length limit any more.
"""

import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_tokens = sa.table(
    "tokens", sa.column("id", sa.Integer), sa.column("label", sa.String),
    sa.column("label_search", sa.String),
)


def _search_key(text: str) -> str:
    """services.listing.search_key as of this revision (a migration keeps its own copy)."""
    composed = unicodedata.normalize("NFC", text)
    return unicodedata.normalize("NFC", composed.replace("\u0130", "i").casefold())


def _rekey(key: object) -> None:
    connection = op.get_bind()
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(_tokens.c.id, _tokens.c.label)
            .where(_tokens.c.id > last_id).order_by(_tokens.c.id).limit(1000)
        ).all()
        if not rows:
            return
        for row_id, label in rows:
            connection.execute(
                _tokens.update().where(_tokens.c.id == row_id).values(label_search=key(label))
            )
        last_id = rows[-1][0]


def upgrade() -> None:
    op.create_table(
        "key_check",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
    )
    if op.get_bind().dialect.name != "sqlite":  # SQLite keeps no length limit anyway
        op.alter_column("tokens", "label_search", type_=sa.String(),
                        existing_type=sa.String(100), existing_nullable=False)
    _rekey(_search_key)


def downgrade() -> None:
    op.drop_table("key_check")
    # Revision 0002's key: lower-cased character by character, never longer.
    _rekey(lambda text: "".join(low if len(low := ch.lower()) == 1 else ch for ch in text))
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("tokens", "label_search", type_=sa.String(100),
                        existing_type=sa.String(), existing_nullable=False)
