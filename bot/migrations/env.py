"""Alembic environment: the engine is handed in by bot.db (no URL in an ini file)."""

from alembic import context

from bot.models import Base

config = context.config
target_metadata = Base.metadata


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    """Leave the search indexes that live outside the ORM metadata alone."""
    if type_ == "table" and name and name.startswith("tokens_label_fts"):
        return False
    if type_ == "index" and name == "ix_tokens_label_trgm":
        return False
    return True


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        from bot.config import load_settings
        from bot.db import make_engine

        engine = make_engine(load_settings().database_url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            include_object=include_object,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("Offline migrations are not supported; run `tokenbot db upgrade`.")
run_migrations_online()
