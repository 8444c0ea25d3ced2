"""Secrets: format a scanner can match, checksum, mask, encryption at rest, key rotation,
and the embedded default's generated key file."""

from __future__ import annotations

import logging
import re
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st
from sqlalchemy import select

from bot.services import keys
from bot import crypto
from bot.config import load_settings
from bot.crypto import SecretBox, generate_key
from bot.db import Database
from bot.errors import ConfigurationError
from bot.models import Token
from bot.services import tokens
from bot.services.verification import verify
from tests.support.policy import NO_POLICY

README_REGEX = r"\btkb_[0-9A-Za-z]{40}\b"
OWNER = tokens.Actor(team_id="T1", user_id="UOWNER")


# -- format, checksum, mask -------------------------------------------------------------


def test_secret_format_is_what_the_readme_documents():
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    assert README_REGEX in readme
    assert crypto.SCANNER_REGEX == README_REGEX
    secrets = [crypto.generate_secret() for _ in range(500)]
    assert len(set(secrets)) == 500
    for secret in secrets:
        assert re.fullmatch(README_REGEX, secret)
        assert crypto.has_valid_checksum(secret)
    # A scanner finds it in a config file, a URL, a JSON string.
    secret = secrets[0]
    for context in (f"TOKEN={secret}\n", f"https://x/?t={secret}&a=1", f'{{"token": "{secret}"}}'):
        assert re.findall(README_REGEX, context) == [secret]
    # ... and not when it is glued into a longer word.
    assert re.findall(README_REGEX, secret + "x") == []


def test_secret_carries_at_least_160_random_bits():
    # 34 characters drawn uniformly from 62: log2(62) * 34 > 200 bits; every position
    # uses the whole alphabet.
    bodies = [crypto.generate_secret()[4:38] for _ in range(400)]
    for position in (0, 17, 33):
        assert len({body[position] for body in bodies}) > 50


def test_every_single_character_change_breaks_the_checksum():
    for _ in range(5):
        secret = crypto.generate_secret()
        for index in range(4, len(secret)):
            for replacement in crypto.ALPHABET:
                if replacement == secret[index]:
                    continue
                changed = secret[:index] + replacement + secret[index + 1:]
                assert not crypto.has_valid_checksum(changed), (index, replacement)


@hsettings(max_examples=200, deadline=None)
@given(candidate=st.text(max_size=50))
def test_arbitrary_text_is_not_taken_for_a_secret(candidate):
    # Anything that passes must have the documented shape.
    if crypto.has_valid_checksum(candidate):
        assert re.fullmatch(README_REGEX, candidate)


def test_checksum_refuses_wrong_shapes():
    secret = crypto.generate_secret()
    for bad in ("", secret[:-1], secret + "A", "tkc_" + secret[4:], secret.replace("tkb_", "TKB_"),
                secret[:20] + "-" + secret[21:], secret[:20] + "é" + secret[21:]):
        assert not crypto.has_valid_checksum(bad)


def test_mask_shows_first_ten_characters_then_ellipsis():
    secret = crypto.generate_secret()
    masked = crypto.mask(secret)
    assert masked == secret[:10] + "…"
    assert masked.startswith("tkb_") and len(masked) == 11


def test_digest_is_stable_and_distinct():
    a, b = crypto.generate_secret(), crypto.generate_secret()
    assert crypto.digest(a) == crypto.digest(a)
    assert crypto.digest(a) != crypto.digest(b)
    assert a not in crypto.digest(a)


# -- encryption and key rotation -----------------------------------------------------------


def test_secret_box_round_trip_and_ciphertext_hides_secret():
    box = SecretBox([generate_key()])
    secret = crypto.generate_secret()
    blob = box.encrypt(secret)
    assert secret.encode() not in blob
    assert box.encrypt(secret) != blob  # randomised
    assert box.decrypt(blob) == secret


def test_box_with_new_and_old_keys_reads_old_blobs():
    old, new = generate_key(), generate_key()
    secret = crypto.generate_secret()
    blob = SecretBox([old]).encrypt(secret)
    both = SecretBox([new, old])
    assert both.decrypt(blob) == secret
    assert not both.is_current(blob)
    rotated = both.rotate(blob)
    assert both.is_current(rotated)
    assert SecretBox([new]).decrypt(rotated) == secret
    with pytest.raises(ConfigurationError, match="TOKENBOT_SECRET_KEYS"):
        SecretBox([new]).decrypt(blob)
    # New secrets are written under the newest key.
    assert SecretBox([new]).decrypt(both.encrypt(secret)) == secret


@pytest.mark.parametrize("keys", [[], ["not-a-key"], ["é" * 44]])
def test_bad_keys_are_a_configuration_error(keys):
    with pytest.raises(ConfigurationError, match="TOKENBOT_SECRET_KEYS"):
        SecretBox(keys)


def test_reencrypt_all_moves_every_secret_to_the_newest_key(make_settings, now):
    old, new = generate_key(), generate_key()
    before = Database(make_settings(TOKENBOT_SECRET_KEYS=old), auto_upgrade=False)
    secrets = {}
    try:
        for i in range(7):
            with before.sessions.begin() as session:
                created = tokens.create_token(session, box=before.box, actor=OWNER, label=f"k{i}",
                                              scope="read", scopes=["read"], now=now,
                                              policy=NO_POLICY)
            secrets[created.token.public_id] = created.secret
    finally:
        before.dispose()

    both = Database(make_settings(TOKENBOT_SECRET_KEYS=f"{new},{old}"), auto_upgrade=False)
    try:
        with both.sessions.begin() as session:
            assert keys.reencrypt_all(session, box=both.box, batch=3) == 7
        with both.sessions.begin() as session:
            assert keys.reencrypt_all(session, box=both.box, batch=3) == 0  # idempotent
    finally:
        both.dispose()

    only_new = Database(make_settings(TOKENBOT_SECRET_KEYS=new), auto_upgrade=False)
    try:
        for public_id, secret in secrets.items():
            with only_new.sessions.begin() as session:
                _, revealed = tokens.reveal_token(session, box=only_new.box, actor=OWNER,
                                                  public_id=public_id, now=now)
                assert revealed == secret
                # Verification never needed a key at all.
                assert verify(session, secret=secret, now=now).public_id == public_id
        with only_new.sessions() as session:
            blobs = session.scalars(select(Token.secret_encrypted)).all()
        old_box = SecretBox([old])
        for blob in blobs:
            with pytest.raises(ConfigurationError):
                old_box.decrypt(blob)
    finally:
        only_new.dispose()


# -- key configuration --------------------------------------------------------------------------


def test_embedded_default_generates_a_private_key_file_and_says_so(tmp_path, caplog, now):
    caplog.set_level(logging.INFO)
    config = load_settings(_env_file=None)
    assert config.is_embedded_default
    first = Database(config)
    try:
        key_file = tmp_path / "tokenbot.key"
        assert key_file.exists()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        warnings = [r for r in caplog.records if "tokenbot.key" in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].levelno >= logging.INFO
        assert "TOKENBOT_SECRET_KEYS" in warnings[0].getMessage()
        key = key_file.read_text().strip()
        assert key not in caplog.text  # the log names the file, not the key
        with first.sessions.begin() as session:
            created = tokens.create_token(session, box=first.box, actor=OWNER, label="local",
                                          scope="read", scopes=["read"], now=now, policy=NO_POLICY)
    finally:
        first.dispose()

    # Next start: the same key is read back (no new file, no new message) and decrypts.
    caplog.clear()
    again = Database(load_settings(_env_file=None))
    try:
        assert key_file.read_text().strip() == key
        assert not [r for r in caplog.records if "generated" in r.getMessage()]
        with again.sessions.begin() as session:
            _, secret = tokens.reveal_token(session, box=again.box, actor=OWNER,
                                            public_id=created.token.public_id, now=now)
        assert secret == created.secret
    finally:
        again.dispose()


def test_configured_keys_win_over_the_key_file(tmp_path):
    key = generate_key()
    db = Database(load_settings(_env_file=None, TOKENBOT_SECRET_KEYS=key))
    try:
        assert not (tmp_path / "tokenbot.key").exists()
        assert SecretBox([key]).decrypt(db.box.encrypt("x")) == "x"
    finally:
        db.dispose()


@pytest.mark.parametrize(
    "url",
    ["sqlite:///elsewhere.db", "postgresql+psycopg://postgres@127.0.0.1:5432/whatever"],
)
def test_any_other_database_without_keys_is_an_error(tmp_path, url):
    config = load_settings(_env_file=None, DATABASE_URL=url)
    with pytest.raises(ConfigurationError, match="TOKENBOT_SECRET_KEYS"):
        Database(config)
    assert not (tmp_path / "tokenbot.key").exists()
    assert not (tmp_path / "elsewhere.key").exists()
    assert not (tmp_path / "elsewhere.db").exists()


def test_reencrypt_never_undoes_a_rotation_made_meanwhile(make_settings, now, monkeypatch):
    # `tokenbot keys rotate` runs while someone rotates a token in Slack: the token's
    # stored secret must stay the new one (the one its digest verifies), not come back
    # as the re-encrypted old one.
    old, new = generate_key(), generate_key()
    first = Database(make_settings(TOKENBOT_SECRET_KEYS=old), auto_upgrade=False)
    try:
        with first.sessions.begin() as session:
            created = tokens.create_token(session, box=first.box, actor=OWNER, label="busy",
                                          scope="read", scopes=["read"], now=now, policy=NO_POLICY)
    finally:
        first.dispose()
    pid = created.token.public_id

    db = Database(make_settings(TOKENBOT_SECRET_KEYS=f"{new},{old}"), auto_upgrade=False)
    try:
        rotated_meanwhile: list[str] = []
        real_rotate = db.box.rotate

        def rotate_with_a_user_in_between(blob: bytes) -> bytes:
            if not rotated_meanwhile:
                with db.sessions.begin() as other:
                    rotated_meanwhile.append(tokens.rotate_token(
                        other, box=db.box, actor=OWNER, public_id=pid, expected_version=1,
                        now=now).secret)
            return real_rotate(blob)

        monkeypatch.setattr(db.box, "rotate", rotate_with_a_user_in_between)
        with db.sessions.begin() as session:
            keys.reencrypt_all(session, box=db.box)
        with db.sessions.begin() as session:
            _, revealed = tokens.reveal_token(session, box=db.box, actor=OWNER, public_id=pid,
                                              now=now)
            assert revealed == rotated_meanwhile[0]
            assert verify(session, secret=revealed, now=now) is not None
    finally:
        db.dispose()


def test_find_secrets_finds_each_secret_once_wherever_it_sits_in_a_chat_message() -> None:
    first, second = crypto.generate_secret(), crypto.generate_secret()
    broken = first[:-1] + ("0" if first[-1] != "0" else "1")
    text = f"`{first}` and <https://x.example|{second}>, again ({first})."
    assert crypto.find_secrets(text) == [first, second]
    # A wrong checksum, glued to a word character, cut short: not the scanner's.
    assert crypto.find_secrets(f"{broken} {first}x x{second} {first[:30]}") == []
    assert crypto.find_secrets("no secret here, only tkb_ and tokens") == []
