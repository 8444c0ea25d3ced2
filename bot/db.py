"""Engine, session factory and migrations."""

from __future__ import annotations

import functools
import logging
from importlib import resources
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from bot.config import Settings
from bot.crypto import SecretBox, load_or_create_key_file
from bot.errors import ConfigurationError
from bot.models import KeyCheck, Token

log = logging.getLogger(__name__)

SessionFactory = sessionmaker[Session]


def dialect_insert(bind: Connection | Session) -> Any:
    """``insert`` of the database's dialect, for ``ON CONFLICT`` clauses (both SQLite and
    PostgreSQL have them)."""
    engine = bind.get_bind() if isinstance(bind, Session) else bind
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``. SQLite: WAL and a busy timeout. PostgreSQL: a pooled
    connection is pinged as it is checked out, so one the server dropped (a restart, an
    idle timeout) is replaced before anyone sees an error."""
    if url.startswith("sqlite"):
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, **{"pool_pre_ping": True, **kwargs})


def make_session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(engine, expire_on_commit=False)


MIGRATIONS = str(resources.files("bot") / "migrations")


def alembic_config(engine: Engine | None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", MIGRATIONS)
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    command.upgrade(alembic_config(engine), "head")


@functools.cache
def _scripts() -> ScriptDirectory:
    """This code's migrations (read once)."""
    return ScriptDirectory.from_config(alembic_config(None))


def is_up_to_date(engine: Engine) -> bool:
    """Whether the schema has every migration this code needs: at its newest revision, or
    at one it does not know (a newer version upgraded it first, as a rolling deploy does).
    An empty database, or one at an older revision, is behind."""
    with engine.connect() as connection:  # read directly: Alembic's context logs at INFO
        current: set[str] = set()
        if inspect(connection).has_table("alembic_version"):
            current = set(connection.scalars(text("SELECT version_num FROM alembic_version")))
    scripts = _scripts()
    known = {revision.revision for revision in scripts.walk_revisions()}
    return bool(current) and (current == set(scripts.get_heads()) or not current <= known)


#: What DATABASE_URL may name: (backend, driver) pairs this install can open.
SUPPORTED_URLS = "sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
_SUPPORTED = {("sqlite", "pysqlite"), ("postgresql", "psycopg")}


def check_database_url(settings: Settings) -> None:
    """DATABASE_URL names a database Tokenbot can open (SQLite or PostgreSQL through
    psycopg) and, for a SQLite file, a folder that exists: a typo in the path is refused
    rather than a new empty database created somewhere unexpected."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(settings.database_url)
    except ArgumentError:
        raise ConfigurationError(
            f"DATABASE_URL is not a database URL: use {SUPPORTED_URLS}."
        ) from None
    if (url.get_backend_name(), url.get_driver_name()) not in _SUPPORTED:
        raise ConfigurationError(
            f"DATABASE_URL names an unsupported database ({url.drivername}): use "
            f"{SUPPORTED_URLS}."
        )
    path = settings.sqlite_path
    if path is not None and not path.parent.is_dir():
        raise ConfigurationError(
            f"DATABASE_URL names a SQLite file in a folder that does not exist "
            f"({path.parent}): create the folder, or fix the path."
        )


SCHEMA_BEHIND = (
    "The database schema is behind this version of Tokenbot: run `tokenbot db upgrade` "
    "(with the same DATABASE_URL), then start again."
)
KEY_CHECK_TEXT = "tokenbot key check"


def secret_box(settings: Settings) -> SecretBox:
    """The configured keys; the embedded default falls back to a generated key file."""
    keys = [key.get_secret_value() for key in settings.tokenbot_secret_keys]
    if keys:
        return SecretBox(keys)
    if settings.is_embedded_default and settings.sqlite_path is not None:
        key_path = settings.sqlite_path.with_suffix(".key")
        return SecretBox([load_or_create_key_file(key_path)])
    raise ConfigurationError(
        "TOKENBOT_SECRET_KEYS is required with any database but the embedded default "
        "(generate one with `tokenbot keys generate`)."
    )


class Database:
    """What every entry point needs: engine, session factory and the secret box.

    Opening it is every command's start-up check: a SQLite database is brought to the
    newest schema (``auto_upgrade``, the default for SQLite); any other database that is
    behind is refused with one line naming ``tokenbot db upgrade``; and the configured
    keys must open the database's key check value (written under them on first use)."""

    def __init__(self, settings: Settings, *, auto_upgrade: bool | None = None) -> None:
        check_database_url(settings)
        self.settings = settings
        self.box = secret_box(settings)
        self.engine = make_engine(settings.database_url)
        self.sessions: SessionFactory = make_session_factory(self.engine)
        if auto_upgrade is None:
            auto_upgrade = self.engine.dialect.name == "sqlite"
        if auto_upgrade:
            upgrade(self.engine)
        try:
            if not is_up_to_date(self.engine):
                raise ConfigurationError(SCHEMA_BEHIND)
            self._check_keys()
        except OperationalError as exc:  # the server may be down for now; /readyz says so
            log.warning("database unreachable at start-up (%s): schema and key checks "
                        "skipped", type(exc).__name__)
        except BaseException:
            self.engine.dispose()
            raise

    def _check_keys(self) -> None:
        try:
            with self.sessions.begin() as session:
                stored = session.scalar(select(KeyCheck.value).where(KeyCheck.id == 1))
                if stored is None:
                    # First start under this check: the value is written under these keys,
                    # once they open a secret stored before it (an upgraded database).
                    stored = session.scalar(select(Token.secret_encrypted).limit(1))
                    if stored is None or self.box.opens(stored):
                        session.add(KeyCheck(id=1, value=self.box.encrypt(KEY_CHECK_TEXT)))
                        return
        except IntegrityError:  # another process wrote it first: check that one
            with self.sessions() as session:
                stored = session.scalar(select(KeyCheck.value).where(KeyCheck.id == 1))
        if not self.box.opens(stored):
            raise ConfigurationError(
                "TOKENBOT_SECRET_KEYS does not hold the key this database's secrets are "
                "encrypted with (on the embedded default: the key file beside the database), "
                "so stored secrets cannot be decrypted. Restore the key (newest first, older "
                "ones after it) and start again."
            )

    def dispose(self) -> None:
        self.engine.dispose()
