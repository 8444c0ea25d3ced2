"""Secrets at rest under the newest key: ``tokenbot keys rotate`` re-encrypts every stored
secret, a rotation's kept old secret and the key check value (``bot.db``)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import crypto
from bot.models import KeyCheck, Token


def reencrypt_all(session: Session, *, box: crypto.SecretBox, batch: int = 1000) -> int:
    """Re-encrypt every stored secret (and the key check value) under the newest key;
    returns how many secrets changed."""
    changed = 0
    last_id = 0
    while True:
        rows = session.execute(
            select(Token.id, Token.secret_encrypted)
            .where(Token.id > last_id)
            .order_by(Token.id)
            .limit(batch)
        ).all()
        if not rows:
            break
        for row_id, blob in rows:
            last_id = row_id
            if box.is_current(blob):
                continue
            # Only if the blob is still the one read: a token rotated meanwhile keeps its
            # new secret (written under the newest key already) instead of the old one.
            result = session.execute(
                Token.__table__.update()
                .where(
                    Token.__table__.c.id == row_id,
                    Token.__table__.c.secret_encrypted == blob,
                )
                .values(secret_encrypted=box.rotate(blob))
            )
            changed += result.rowcount
    # The old secrets of rotations with overlap too (a cancelled rotation restores one).
    for token in session.scalars(select(Token).where(Token.previous_secret_encrypted.is_not(None))):
        blob = token.previous_secret_encrypted
        if blob is not None and not box.is_current(blob):
            token.previous_secret_encrypted = box.rotate(blob)
            changed += 1
    # The key check value too (bot.db), or dropping the old key would fail start-up.
    for check in session.scalars(select(KeyCheck)):
        if not box.is_current(check.value):
            check.value = box.rotate(check.value)
    return changed
