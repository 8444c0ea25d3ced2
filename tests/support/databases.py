"""Databases for tests and benchmarks: a throw-away PostgreSQL database, and bulk-loading
generated token rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.engine import make_url

from bot.models import Token

BATCH = 5000


@contextmanager
def throwaway_postgresql(admin_url: str, prefix: str) -> Iterator[str]:
    """The URL of a new, empty database ``<prefix>_<random>`` on ``admin_url``'s server;
    dropped on exit, whatever connections are still open to it."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    finally:
        admin.dispose()


def insert_tokens(engine: Engine, rows: Iterable[dict[str, Any]]) -> None:
    """Bulk-insert token rows, a batch per transaction."""
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            with engine.begin() as connection:
                connection.execute(insert(Token), batch)
            batch = []
    if batch:
        with engine.begin() as connection:
            connection.execute(insert(Token), batch)


def analyze(engine: Engine) -> None:
    """Bring a freshly bulk-loaded table to the state autovacuum keeps a live one in: the
    planner's statistics, and on PostgreSQL the visibility map too (VACUUM), without which
    every index-only scan (the table's capped count) still visits the table's pages."""
    if engine.dialect.name == "postgresql":
        # VACUUM cannot run inside a transaction block.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE tokens"))
        return
    with engine.begin() as connection:
        connection.execute(text("ANALYZE"))
