"""Start-up refuses a broken setup with one clear line: a wrong encryption key, and a
database whose schema is behind the code (SQLite databases are simply brought up to date);
`/readyz` says 503 with the reason while the schema is behind."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import delete, inspect, text

from bot.services import keys
from bot import cli
from bot.config import Settings, load_settings
from bot.crypto import generate_key
from bot.db import Database, alembic_config, is_up_to_date, make_engine, upgrade
from bot.errors import ConfigurationError
from bot.models import KeyCheck
from bot.http.server import build_asgi_app
from bot.services import tokens
from bot.services.actor import Actor
from tests.conftest import PG_ADMIN_URL
from tests.support.databases import throwaway_postgresql
from tests.support.serving import serving
from tests.test_server import (
    BOT_TOKEN,
    SIGNING_SECRET,
    cli_env,
    free_port,
    probe_app,
    request,
)
from tests.support.policy import NO_POLICY


def _open(make_settings: Callable[..., Settings], *keys: str) -> Database:
    return Database(make_settings(TOKENBOT_SECRET_KEYS=",".join(keys)), auto_upgrade=False)


def test_a_wrong_key_is_refused_before_anything_is_written_under_it(make_settings, now):
    right, wrong = generate_key(), generate_key()
    first = _open(make_settings, right)
    with first.sessions.begin() as session:
        tokens.create_token(session, box=first.box, actor=Actor("T1", "U1"), label="ci",
                            scope="read", scopes=["read"], now=now, policy=NO_POLICY)
    first.dispose()
    with pytest.raises(ConfigurationError, match="TOKENBOT_SECRET_KEYS"):
        _open(make_settings, wrong)
    _open(make_settings, wrong, right).dispose()  # a new key in front of the old: fine


def test_an_upgraded_database_takes_its_reference_key_from_its_secrets(make_settings, now):
    """A database upgraded from before the key check holds secrets but no check value: the
    first start writes one only if its keys open those secrets."""
    right, wrong = generate_key(), generate_key()
    first = _open(make_settings, right)
    with first.sessions.begin() as session:
        tokens.create_token(session, box=first.box, actor=Actor("T1", "U1"), label="ci",
                            scope="read", scopes=["read"], now=now, policy=NO_POLICY)
        session.execute(delete(KeyCheck))  # as revision 0002 left it
    first.dispose()
    with pytest.raises(ConfigurationError, match="TOKENBOT_SECRET_KEYS"):
        _open(make_settings, wrong)
    _open(make_settings, right).dispose()
    with pytest.raises(ConfigurationError, match="TOKENBOT_SECRET_KEYS"):
        _open(make_settings, wrong)


def test_after_keys_rotate_the_old_key_can_go(make_settings):
    old, new = generate_key(), generate_key()
    _open(make_settings, old).dispose()
    both = _open(make_settings, new, old)
    with both.sessions.begin() as session:
        keys.reencrypt_all(session, box=both.box)
    both.dispose()
    _open(make_settings, new).dispose()


def test_the_cli_names_the_key_variable_in_one_line(database_url, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TOKENBOT_TEAM_ID", "T1")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.setenv("TOKENBOT_SECRET_KEYS", generate_key())
    assert cli.main(["tokens", "list"]) == 0
    monkeypatch.setenv("TOKENBOT_SECRET_KEYS", generate_key())
    capsys.readouterr()
    assert cli.main(["tokens", "list"]) == 2
    err = capsys.readouterr().err
    assert "TOKENBOT_SECRET_KEYS" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_an_explicit_sqlite_database_is_migrated_on_start(tmp_path):
    url = f"sqlite:///{tmp_path / 'explicit.db'}"
    db = Database(load_settings(_env_file=None, DATABASE_URL=url,
                                TOKENBOT_SECRET_KEYS=generate_key()))
    try:
        assert "tokens" in inspect(db.engine).get_table_names()
        assert is_up_to_date(db.engine)
    finally:
        db.dispose()


def test_a_schema_a_newer_version_upgraded_is_not_behind(database_url, make_settings):
    engine = make_engine(database_url)
    with engine.connect() as connection:
        head = connection.scalar(text("SELECT version_num FROM alembic_version"))
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        assert is_up_to_date(engine)  # a rolling deploy: the new version migrated first
        _open(make_settings, generate_key()).dispose()
    finally:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :head"),
                               {"head": head})
        engine.dispose()


@pytest.fixture
def behind_url(postgresql_url: str):
    """A PostgreSQL database one migration behind the code."""
    with throwaway_postgresql(PG_ADMIN_URL, "tokenbot_behind") as url:
        engine = make_engine(url)
        command.upgrade(alembic_config(engine), "0002")
        engine.dispose()
        yield url


def test_a_server_database_behind_is_refused_naming_db_upgrade(
    behind_url, monkeypatch, capsys
):
    settings = load_settings(_env_file=None, DATABASE_URL=behind_url,
                             TOKENBOT_SECRET_KEYS=generate_key())
    with pytest.raises(ConfigurationError, match="tokenbot db upgrade"):
        Database(settings)
    monkeypatch.setenv("DATABASE_URL", behind_url)
    monkeypatch.setenv("TOKENBOT_SECRET_KEYS", generate_key())
    for argv in (["alerts", "run", "--dry-run"], ["tokens", "list", "--team", "T1"]):
        capsys.readouterr()
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "tokenbot db upgrade" in err and "Traceback" not in err


def test_readyz_is_503_with_the_reason_while_the_schema_is_behind(
    postgresql_url, standin, make_settings
):
    with throwaway_postgresql(PG_ADMIN_URL, "tokenbot_ready") as url:
        engine = make_engine(url)
        upgrade(engine)
        settings = make_settings(DATABASE_URL=url, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                                 SLACK_BOT_TOKEN="xoxb-test", SLACK_API_URL=standin.api_url)
        database = Database(settings)
        app = build_asgi_app(settings=settings, database=database,
                             bolt_app=probe_app(settings, []))
        try:
            with serving(app) as address:
                assert request(address, "GET", "/readyz").status == 200
                command.downgrade(alembic_config(engine), "0002")
                behind = request(address, "GET", "/readyz")
                upgrade(engine)
                again = request(address, "GET", "/readyz")
        finally:
            app.close()
            database.dispose()
            engine.dispose()
    assert behind.status == 503 and "tokenbot db upgrade" in behind.body
    assert again.status == 200


@pytest.mark.slow
def test_serve_with_slack_unreachable_warns_once_and_logs_requests_to_stderr(
    tmp_path: Path,
) -> None:
    """Start-up with Slack down is one warning (not slack_sdk's ERROR line per try, nor
    Bolt's note that the token goes unused); the access log is on stderr, as every log."""
    port = free_port()
    env = cli_env(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                  SLACK_API_URL=f"http://127.0.0.1:{free_port()}/api/",
                  TOKENBOT_SCHEDULER="off")
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()
            try:
                if request(("127.0.0.1", port), "GET", "/healthz").status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "tokenbot serve did not start"
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    lines = err.splitlines()
    assert len([line for line in lines if "could not reach Slack" in line]) == 1
    assert not [line for line in lines if " ERROR " in line]
    assert "will be unused" not in err
    assert out == ""
    assert '"GET /healthz HTTP/1.1" 200' in err
