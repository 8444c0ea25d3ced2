"""Engine, session factory and migrations."""

from __future__ import annotations

import logging
import time
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.orm import Session, sessionmaker

from bot.config import Settings
from bot.crypto import SecretBox, load_or_create_key_file
from bot.errors import ConfigurationError

log = logging.getLogger(__name__)

SessionFactory = sessionmaker[Session]


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


# A pooled server connection used less than this long ago is handed out as it is; an older
# one is pinged first and, if the server dropped it (restart, idle timeout in between),
# replaced before anyone sees an error. SQLAlchemy's pool_pre_ping would ping every time:
# one more round trip on every click, for connections that served a request a moment ago.
PING_AFTER_IDLE_SECONDS = 5.0


def _ping_when_idle(engine: Engine) -> None:
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _stamp(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("checked_in")
        if since is not None and time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:  # any failure: this connection is gone
            # The pool discards it and checks out another (a fresh one, if need be).
            raise exc.DisconnectionError(str(error)) from error


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_idle(engine)
    return engine


def make_session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(resources.files("bot") / "migrations"))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    command.upgrade(alembic_config(engine), "head")


def is_up_to_date(engine: Engine) -> bool:
    script = ScriptDirectory.from_config(alembic_config(engine))
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
    return set(current) == set(script.get_heads())


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
    """What every entry point needs: engine, session factory and the secret box."""

    def __init__(self, settings: Settings, *, auto_upgrade: bool | None = None) -> None:
        self.settings = settings
        self.box = secret_box(settings)
        self.engine = make_engine(settings.database_url)
        self.sessions: SessionFactory = make_session_factory(self.engine)
        if auto_upgrade is None:
            auto_upgrade = settings.is_embedded_default
        if auto_upgrade:
            path: Path | None = settings.sqlite_path
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            upgrade(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()
