"""`tokenbot db upgrade`, `tokenbot keys generate`, `tokenbot keys rotate`."""

from __future__ import annotations

import argparse

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from bot import crypto
from bot.cli.common import database_errors, quiet_migrations
from bot.config import load_settings
from bot.db import Database, check_database_url, make_engine, upgrade
from bot.services.keys import reencrypt_all


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    db = subparsers.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = db_commands.add_parser(
        "upgrade", help="apply the schema migrations to DATABASE_URL (up to the newest)"
    )
    up.set_defaults(handler=db_upgrade)

    keys = subparsers.add_parser("keys", help="encryption keys for the stored secrets")
    key_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    gen = key_commands.add_parser(
        "generate", help="print a new key for TOKENBOT_SECRET_KEYS (stores nothing)"
    )
    gen.set_defaults(handler=keys_generate)
    rot = key_commands.add_parser(
        "rotate",
        help="re-encrypt every stored secret under the first (newest) key of "
        "TOKENBOT_SECRET_KEYS",
    )
    rot.set_defaults(handler=keys_rotate)


def _revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        heads = MigrationContext.configure(connection).get_current_heads()
    return ", ".join(heads) if heads else None


def db_upgrade(args: argparse.Namespace) -> int:
    quiet_migrations(args)
    settings = load_settings()
    check_database_url(settings)
    with database_errors():
        shown = make_url(settings.database_url).render_as_string(hide_password=True)
        engine = make_engine(settings.database_url)
        try:
            before = _revision(engine)
            upgrade(engine)
            after = _revision(engine)
        finally:
            engine.dispose()
    if before == after:
        print(f"{shown}: already at the newest revision ({after}); nothing to do.")
    else:
        print(f"{shown}: upgraded from revision {before or '(empty database)'} to {after}.")
    return 0


def keys_generate(args: argparse.Namespace) -> int:
    print(crypto.generate_key())
    return 0


def keys_rotate(args: argparse.Namespace) -> int:
    quiet_migrations(args)
    settings = load_settings()
    with database_errors():
        database = Database(settings)
        try:
            with database.sessions.begin() as session:
                changed = reencrypt_all(session, box=database.box)
        finally:
            database.dispose()
    noun = "secret" if changed == 1 else "secrets"
    print(f"Re-encrypted {changed} stored {noun} under the newest key.")
    if changed or len(settings.tokenbot_secret_keys) > 1:
        print(
            "Every secret now uses the first key of TOKENBOT_SECRET_KEYS; "
            "older keys can be removed from it."
        )
    return 0
