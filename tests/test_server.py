"""HTTP mode: the real server (uvicorn + bot.http.server) on a local port, Slack's side played by
the SlackStandIn, requests signed exactly as Slack signs them.

Two Bolt apps are served: the product's (`bot.slack.app.create_app`) for what a user sees, and a
probe app whose only listener records that it ran, for "nothing happens" at the transport
level (bad signature, stale timestamp, oversized body never reach a listener).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from slack_bolt import App
from sqlalchemy import func, select

from bot.config import Settings
from bot.db import Database
from bot.models import AuditEvent, Token
from bot.http.server import MAX_BODY_BYTES, build_asgi_app
from bot.services.tokens import Actor, create_token
from bot.slack.client import make_web_client
from tests.support.blockkit import validate_message_blocks
from tests.support.signing import form_body, interactive_body, signed_headers
from tests.support.serving import serving
from tests.support.slack_standin import Failure, SlackStandIn
from tests.support.policy import NO_POLICY

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-test-token"
TEAM = "T1"
USER = "U123"
FORM = "application/x-www-form-urlencoded"


# -- plumbing ----------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: str
    headers: dict[str, str]


def request(
    base: tuple[str, int],
    method: str,
    path: str,
    body: bytes | str = b"",
    headers: dict[str, str] | None = None,
) -> Reply:
    data = body.encode("utf-8") if isinstance(body, str) else body
    connection = http.client.HTTPConnection(*base, timeout=10)
    try:
        connection.request(method, path, body=data, headers=headers or {})
        response = connection.getresponse()
        return Reply(
            response.status,
            response.read().decode("utf-8"),
            {k.lower(): v for k, v in response.getheaders()},
        )
    finally:
        connection.close()


def slash_command(standin: SlackStandIn, text: str = "", **extra: str) -> dict[str, str]:
    fields = {
        "token": "legacy-verification-token",
        "team_id": TEAM,
        "team_domain": "acme",
        "channel_id": "C1",
        "channel_name": "general",
        "user_id": USER,
        "user_name": "ada",
        "command": "/tokens",
        "text": text,
        "api_app_id": "A1",
        "is_enterprise_install": "false",
        "response_url": standin.response_url("cmd"),
        "trigger_id": "1337.42.abcdef",
    }
    fields.update(extra)
    return fields


def signed(body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    return signed_headers(secret, body, content_type=FORM, timestamp=timestamp)


@pytest.fixture
def slack_settings(make_settings: Callable[..., Settings], standin: SlackStandIn) -> Settings:
    return make_settings(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=standin.api_url,
        TOKENBOT_SCHEDULER="off",
    )


@pytest.fixture
def database(slack_settings: Settings) -> Iterator[Database]:
    database = Database(slack_settings, auto_upgrade=False)
    try:
        yield database
    finally:
        database.dispose()


def probe_app(settings: Settings, ran: list[str]) -> App:
    """A Bolt app on the same stack whose only listener records that it ran."""
    app = App(
        client=make_web_client(settings),
        signing_secret=settings.slack_signing_secret.get_secret_value(),  # type: ignore[union-attr]
        token_verification_enabled=False,
        request_verification_enabled=False,  # the server checks signatures first
    )

    @app.command("/tokens")
    def _command(ack: Callable[..., None], command: dict[str, Any]) -> None:
        ran.append(command["text"])
        ack()

    return app


@pytest.fixture
def probe(slack_settings: Settings, database: Database) -> Iterator[tuple[tuple[str, int], list[str]]]:
    ran: list[str] = []
    app = build_asgi_app(
        settings=slack_settings, database=database, bolt_app=probe_app(slack_settings, ran)
    )
    with serving(app) as address:
        yield address, ran


@pytest.fixture
def product(
    slack_settings: Settings, database: Database
) -> Iterator[tuple[str, int]]:
    app = build_asgi_app(settings=slack_settings, database=database)
    with serving(app) as address:
        yield address


def counts(database: Database) -> tuple[int, int, list[tuple[str, str, int]]]:
    with database.sessions.begin() as session:
        tokens = session.scalar(select(func.count()).select_from(Token)) or 0
        audits = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
        rows = [
            (t.public_id, t.status, t.version)
            for t in session.scalars(select(Token).order_by(Token.id))
        ]
    return tokens, audits, rows


def seed(database: Database, settings: Settings, label: str) -> None:
    with database.sessions.begin() as session:
        create_token(
            session,
            box=database.box,
            actor=Actor(team_id=TEAM, user_id=USER),
            label=label,
            scope="read",
            scopes=settings.tokenbot_scopes,
            now=dt.datetime.now(dt.timezone.utc), policy=NO_POLICY,
        )


# -- health ------------------------------------------------------------------------------


def test_healthz_answers_ok(probe: tuple[tuple[str, int], list[str]]) -> None:
    address, _ = probe
    reply = request(address, "GET", "/healthz")
    assert (reply.status, reply.body) == (200, "ok")


def test_readyz_checks_the_database(
    probe: tuple[tuple[str, int], list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    address, _ = probe
    with caplog.at_level(logging.INFO):
        replies = [request(address, "GET", "/readyz") for _ in range(3)]
    assert [reply.status for reply in replies] == [200, 200, 200]
    # A probe every few seconds must not fill the log.
    assert not [r for r in caplog.records if r.name.startswith(("bot", "alembic"))]


def test_readyz_is_503_when_the_database_is_unreachable(
    make_settings: Callable[..., Settings], standin: SlackStandIn
) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings = make_settings(
        DATABASE_URL=f"postgresql+psycopg://tokenbot:s3cret-pw@127.0.0.1:{port}/tokenbot",
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=standin.api_url,
    )
    database = Database(settings, auto_upgrade=False)
    ran: list[str] = []
    app = build_asgi_app(settings=settings, database=database, bolt_app=probe_app(settings, ran))
    try:
        with serving(app) as address:
            ready = request(address, "GET", "/readyz")
            alive = request(address, "GET", "/healthz")
    finally:
        database.dispose()
    assert ready.status == 503
    assert "s3cret-pw" not in ready.body
    assert alive.status == 200  # liveness never touches the database


def test_unknown_path_and_wrong_method(probe: tuple[tuple[str, int], list[str]]) -> None:
    address, ran = probe
    assert request(address, "GET", "/nope").status == 404
    assert request(address, "POST", "/slack/events/extra", "x=1").status == 404
    wrong = request(address, "GET", "/slack/events")
    assert (wrong.status, wrong.headers["allow"]) == (405, "POST")
    wrong = request(address, "POST", "/healthz")
    assert (wrong.status, wrong.headers["allow"]) == (405, "GET, HEAD")
    assert request(address, "PUT", "/readyz").headers["allow"] == "GET, HEAD"
    assert request(address, "HEAD", "/healthz").status == 200
    assert ran == []


# -- the Slack endpoint: transport ------------------------------------------------------------


def test_signed_command_reaches_the_listener(
    probe: tuple[tuple[str, int], list[str]], standin: SlackStandIn
) -> None:
    address, ran = probe
    body = form_body(slash_command(standin, "probe"))
    reply = request(address, "POST", "/slack/events", body, signed(body))
    assert reply.status == 200
    assert ran == ["probe"]


@pytest.mark.parametrize(
    "tamper",
    ["wrong-secret", "stale-timestamp", "no-signature", "body-changed"],
)
def test_unverified_requests_are_refused(
    probe: tuple[tuple[str, int], list[str]], standin: SlackStandIn, tamper: str
) -> None:
    address, ran = probe
    body = form_body(slash_command(standin, "probe"))
    headers = signed(body)
    if tamper == "wrong-secret":
        headers = signed(body, secret="not-the-secret")
    elif tamper == "stale-timestamp":
        headers = signed(body, timestamp=int(time.time()) - 6 * 60)
    elif tamper == "no-signature":
        headers = {"content-type": FORM}
    elif tamper == "body-changed":
        body = body.replace("probe", "other")
    reply = request(address, "POST", "/slack/events", body, headers)
    assert reply.status == 401
    assert ran == []


def test_oversized_body_is_413(
    probe: tuple[tuple[str, int], list[str]], standin: SlackStandIn
) -> None:
    address, ran = probe
    body = form_body(slash_command(standin, "x" * (MAX_BODY_BYTES + 10)))
    reply = request(address, "POST", "/slack/events", body, signed(body))
    assert reply.status == 413
    # Streamed without a Content-Length (chunked), the limit holds as well.
    connection = http.client.HTTPConnection(*address, timeout=10)
    try:
        chunks = (body[i : i + 65536].encode() for i in range(0, len(body), 65536))
        connection.request("POST", "/slack/events", body=chunks, headers=signed(body), encode_chunked=True)
        status = connection.getresponse().status
    finally:
        connection.close()
    assert status == 413
    assert ran == []


def test_an_announced_oversized_body_is_refused_before_reading(
    slack_settings: Settings, database: Database
) -> None:
    """In-process: the Content-Length alone earns the 413; a client gone mid-body gets no
    answer at all, and no listener runs."""
    ran: list[str] = []
    app = build_asgi_app(
        settings=slack_settings, database=database, bolt_app=probe_app(slack_settings, ran)
    )

    async def post(length: int, messages: list[dict[str, Any]]) -> tuple[list[Any], int]:
        scope = {
            "type": "http", "method": "POST", "path": "/slack/events", "query_string": b"",
            "headers": [(b"content-length", str(length).encode())],
        }
        sent: list[Any] = []
        reads = 0

        async def receive() -> dict[str, Any]:
            nonlocal reads
            reads += 1
            return messages[reads - 1]

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return sent, reads

    try:
        sent, reads = asyncio.run(post(MAX_BODY_BYTES + 1, []))
        assert (sent[0]["status"], reads) == (413, 0)
        partial = {"type": "http.request", "body": b"token=", "more_body": True}
        sent, reads = asyncio.run(post(100, [partial, {"type": "http.disconnect"}]))
        assert (sent, reads) == ([], 2)
    finally:
        app.close()
    assert ran == []


def test_introspect_is_routed_to_the_introspection_handler(
    probe: tuple[tuple[str, int], list[str]],
) -> None:
    address, ran = probe
    reply = request(address, "POST", "/introspect", "token=tkb_x", {"content-type": FORM})
    assert reply.status == 401  # no caller credentials: refused by the handler
    assert "www-authenticate" in reply.headers
    assert request(address, "GET", "/introspect").status == 405
    assert ran == []


# -- the product over HTTP ---------------------------------------------------------------------


def test_tokens_command_over_http_shows_the_table(
    product: tuple[str, int],
    standin: SlackStandIn,
    slack_settings: Settings,
    database: Database,
) -> None:
    seed(database, slack_settings, "deploy-bot")
    body = form_body(slash_command(standin))
    started = time.monotonic()
    reply = request(product, "POST", "/slack/events", body, signed(body))
    acked = time.monotonic() - started
    assert reply.status == 200
    assert acked < 3.0  # Slack's limit for the ack
    (call,) = standin.wait_for("response_url")
    blocks = call.body["blocks"]
    validate_message_blocks(blocks)
    shown = json.dumps(blocks)
    assert "deploy-bot" in shown
    assert call.body.get("response_type", "ephemeral") == "ephemeral"


def test_saving_the_request_url_passes_slacks_check_only_with_the_signing_secret(
    product: tuple[str, int],
) -> None:
    """HTTP set-up (README, app_manifest.yml): when the events URL is saved, Slack posts a
    signed url_verification challenge, and the URL is accepted only if it is echoed back;
    hence `tokenbot serve` runs, with SLACK_SIGNING_SECRET, before the URL is saved."""
    challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    body = json.dumps({"token": "legacy", "challenge": challenge, "type": "url_verification"})
    reply = request(product, "POST", "/slack/events", body,
                    signed_headers(SIGNING_SECRET, body, content_type="application/json"))
    assert reply.status == 200 and challenge in reply.body
    wrong = request(product, "POST", "/slack/events", body,
                    signed_headers("another-secret", body, content_type="application/json"))
    assert wrong.status == 401 and challenge not in wrong.body


def test_refused_requests_change_nothing_in_the_product(
    product: tuple[str, int],
    standin: SlackStandIn,
    slack_settings: Settings,
    database: Database,
) -> None:
    seed(database, slack_settings, "deploy-bot")
    before = counts(database)
    for text in ("create", "", "help"):
        body = form_body(slash_command(standin, text))
        assert request(product, "POST", "/slack/events", body, signed(body, secret="bad")).status == 401
        stale = signed(body, timestamp=int(time.time()) - 6 * 60)
        assert request(product, "POST", "/slack/events", body, stale).status == 401
    time.sleep(0.3)  # anything that did slip through would have called Slack by now
    assert standin.calls_to("response_url") == []
    assert standin.calls_to("views.open") == []
    assert counts(database) == before


# Bodies no Slack request has: half a document, the wrong kind of JSON, nesting past any
# parser's depth, bytes that are not UTF-8, a form whose payload is not JSON.
GARBAGE = {
    "half": b"{",
    "array": b"[1]",
    "null": b"null",
    "deep": b"[" * 100_000,
    "not-utf8": b"\xff\xfe\x00payload",
    "bad-payload": b"payload=%7B%22type",
}


def _traceback_free(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


@pytest.mark.parametrize("body", list(GARBAGE.values()), ids=list(GARBAGE))
@pytest.mark.parametrize("timestamp", ["now", "abc", "1.5", ""])
def test_unsigned_garbage_is_refused_with_401_before_it_is_parsed(
    probe: tuple[tuple[str, int], list[str]], caplog: pytest.LogCaptureFixture,
    body: bytes, timestamp: str,
) -> None:
    address, ran = probe
    headers = {"content-type": FORM, "x-slack-signature": "v0=" + "0" * 64,
               "x-slack-request-timestamp": str(int(time.time())) if timestamp == "now"
               else timestamp}
    reply = request(address, "POST", "/slack/events", body, headers)
    assert reply.status == 401
    assert ran == []
    _traceback_free(caplog)


@pytest.mark.parametrize("name", [n for n in GARBAGE if n != "not-utf8"])
def test_signed_garbage_is_400_with_one_short_log_line(
    probe: tuple[tuple[str, int], list[str]], caplog: pytest.LogCaptureFixture, name: str,
) -> None:
    address, ran = probe
    body = GARBAGE[name].decode("utf-8")
    content_type = FORM if name == "bad-payload" else "application/json"
    headers = signed_headers(SIGNING_SECRET, body, content_type=content_type)
    replies = [request(address, "POST", "/slack/events", body, headers) for _ in range(3)]
    assert [r.status for r in replies] == [400, 400, 400]
    assert ran == []
    _traceback_free(caplog)
    refused = [r for r in caplog.records if "refused a request" in r.getMessage()]
    assert len(refused) == 1  # a flood of them is one line a minute


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "block_actions", "actions": {}},
        {"type": "block_actions", "actions": []},
        {"type": "block_actions", "actions": [7]},
        {"type": "view_submission", "view": "x"},
        {"type": "event_callback", "event": None},
    ],
    ids=["actions-dict", "actions-empty", "actions-not-objects", "view-text", "no-event"],
)
def test_signed_payloads_bolt_cannot_dispatch_are_400(
    probe: tuple[tuple[str, int], list[str]], caplog: pytest.LogCaptureFixture,
    payload: dict[str, Any],
) -> None:
    address, ran = probe
    body = interactive_body({"user": {"id": USER}, "team": {"id": TEAM}, **payload})
    reply = request(address, "POST", "/slack/events", body, signed(body))
    assert reply.status == 400
    _traceback_free(caplog)


@pytest.mark.slow
@pytest.mark.parametrize(
    "failure",
    [
        Failure(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}),
        Failure(503, {"ok": False, "error": "service_unavailable"}),
    ],
    ids=["rate-limited", "server-error"],
)
def test_web_api_calls_are_retried(
    product: tuple[str, int], standin: SlackStandIn, failure: Failure
) -> None:
    """The served app's WebClient retries as slack_sdk's handlers do: `/tokens create`
    still opens the modal when Slack first answers 429 (after Retry-After) or 503."""
    standin.fail_next("views.open", failure)
    body = form_body(slash_command(standin, "create"))
    assert request(product, "POST", "/slack/events", body, signed(body)).status == 200
    first, second = standin.wait_for("views.open", count=2, timeout=10)
    if failure.status == 429:
        assert second.at - first.at >= 1.0  # honoured Retry-After
    assert second.body["view"]["callback_id"] == first.body["view"]["callback_id"]
    time.sleep(0.2)
    assert len(standin.calls_to("views.open")) == 2  # retried once, not more


# -- `tokenbot serve` / `tokenbot socket` as processes ----------------------------------------------


def cli_env(**values: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "TOKENBOT_")) and k != "DATABASE_URL"
    }
    env.update(values)
    return env


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_serve_without_signing_secret_stops_with_a_clear_message(tmp_path: Path) -> None:
    result = run_cli(["serve", "--port", "3999"], cli_env(SLACK_BOT_TOKEN=BOT_TOKEN), tmp_path)
    assert result.returncode == 2
    assert "SLACK_SIGNING_SECRET" in result.stderr
    assert "app_manifest.yml" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "tokenbot.db").exists()  # stopped before touching anything


@pytest.mark.slow
def test_serve_names_every_missing_variable(tmp_path: Path) -> None:
    result = run_cli(["serve"], cli_env(), tmp_path)
    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN" in result.stderr and "SLACK_SIGNING_SECRET" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_socket_without_app_token_stops_with_a_clear_message(tmp_path: Path) -> None:
    env = cli_env(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET)
    result = run_cli(["socket"], env, tmp_path)
    assert result.returncode == 2
    assert "SLACK_APP_TOKEN" in result.stderr
    assert "SLACK_SIGNING_SECRET" not in result.stderr  # not needed in Socket Mode
    assert "app_manifest.yml" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_serve_with_a_bot_token_slack_refuses_stops_with_a_clear_message(
    tmp_path: Path, standin: SlackStandIn
) -> None:
    standin.fail_next("auth.test", Failure(200, {"ok": False, "error": "invalid_auth"}))
    env = cli_env(SLACK_BOT_TOKEN="xoxb-wrong-one", SLACK_SIGNING_SECRET=SIGNING_SECRET,
                  SLACK_API_URL=standin.api_url, TOKENBOT_SCHEDULER="off")
    result = run_cli(["serve", "--port", "3999"], env, tmp_path)
    assert result.returncode == 2
    assert "Slack refused SLACK_BOT_TOKEN (invalid_auth)" in result.stderr
    assert "app_manifest.yml" in result.stderr
    assert "Traceback" not in result.stderr
    assert "xoxb-wrong-one" not in result.stderr + result.stdout
    assert not (tmp_path / "tokenbot.db").exists()  # stopped before touching anything
    (call,) = standin.calls_to("auth.test")
    assert call.headers.get("Authorization") == "Bearer xoxb-wrong-one"


@pytest.mark.slow
def test_the_bot_token_check_lets_start_up_go_on_when_slack_is_down(
    make_settings: Callable[..., Settings], standin: SlackStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from bot.cli.serve import check_bot_token

    closed = free_port()  # nothing listens there
    down = make_settings(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_API_URL=f"http://127.0.0.1:{closed}/api/")
    check_bot_token(down)  # no exception: start anyway
    assert "could not reach Slack" in caplog.text

    standin.fail_next("auth.test", *[Failure(503, {"ok": False})] * 3)
    failing = make_settings(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_API_URL=standin.api_url)
    check_bot_token(failing)
    assert "could not check SLACK_BOT_TOKEN" in caplog.text
    assert BOT_TOKEN not in caplog.text


def free_port() -> int:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return int(probe_socket.getsockname()[1])


def start_serve(tmp_path: Path, env: dict[str, str], port: int,
                workers: int = 1) -> tuple[subprocess.Popen[str], tuple[str, int]]:
    """`tokenbot serve` as a process, once `/readyz` answers 200."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    address = ("127.0.0.1", port)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise AssertionError(process.communicate()[0])
        try:
            if request(address, "GET", "/readyz").status == 200:
                return process, address
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("tokenbot serve did not become ready")
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_tokenbot_serve_runs_on_the_embedded_default(
    tmp_path: Path, standin: SlackStandIn, workers: int
) -> None:
    """`tokenbot serve` with no database set-up: SQLite file created and upgraded, ready,
    answering Slack, stopping cleanly on SIGTERM; the log names no secret. With
    ``--workers 2`` each uvicorn worker process builds its own app from the environment.
    The expiry-alert scheduler starts with the server (once, in the parent process) and
    stops with it."""
    port = free_port()
    scheduler = "on" if workers == 1 else "off"
    env = cli_env(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=standin.api_url,
        TOKENBOT_SCHEDULER=scheduler,
    )
    process, address = start_serve(tmp_path, env, port, workers=workers)
    try:
        assert (tmp_path / "tokenbot.db").exists()
        body = form_body(slash_command(standin))
        assert request(address, "POST", "/slack/events", body, signed(body)).status == 200
        (call,) = standin.wait_for("response_url", timeout=10)
        validate_message_blocks(call.body["blocks"])
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert f"127.0.0.1:{port}" in output and "sqlite" in output
    assert f"{workers} worker process" in output
    assert f"alert scheduler {scheduler}" in output
    assert "stopped by SIGTERM" in output or workers > 1
    for secret in (BOT_TOKEN, SIGNING_SECRET):
        assert secret not in output
    assert "Traceback" not in output


@pytest.mark.slow
def test_stopping_serve_finishes_the_work_already_acknowledged(
    tmp_path: Path, standin: SlackStandIn
) -> None:
    """SIGTERM right after ten create forms (opened from the table) were accepted, more
    than the bot's threads for the work after acknowledgements: every new secret and every
    redrawn table still reaches its user (Slack answering each in 1 s), then the process
    exits 0."""
    from bot.slack.app import WORK_THREADS
    from bot.slack.state import ModalMetadata, Origin, OriginKind
    from bot.slack.views.modals import FormMode, token_form
    from tests.slack.conftest import form_values

    env = cli_env(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                  SLACK_API_URL=standin.api_url, TOKENBOT_SCHEDULER="off")
    process, address = start_serve(tmp_path, env, free_port())
    forms = WORK_THREADS + 2

    def submission(n: int) -> str:
        origin = Origin(kind=OriginKind.MESSAGE, response_url=standin.response_url(f"t{n}"))
        view = token_form(mode=FormMode.CREATE, scopes=["read"],
                          metadata=ModalMetadata(origin=origin), policy=NO_POLICY).to_dict()
        view["state"] = {"values": form_values(label=f"made before the stop {n}")}
        return interactive_body({
            "type": "view_submission", "team": {"id": TEAM}, "api_app_id": "A1",
            "user": {"id": USER, "team_id": TEAM}, "view": view,
        })

    standin.slow_down(1.0, "response_url")
    try:
        for body in map(submission, range(forms)):
            assert request(address, "POST", "/slack/events", body, signed(body)).status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    calls = standin.calls_to("response_url")
    for n in range(forms):
        secret, table = [c for c in calls if c.path.endswith(f"/t{n}")]
        assert f"made before the stop {n}" in json.dumps(secret.body)
        assert table.body["replace_original"] is True


@pytest.mark.slow
def test_socket_with_a_refused_app_token_stops_with_a_clear_message(
    tmp_path: Path, standin: SlackStandIn
) -> None:
    standin.fail_next("apps.connections.open", Failure(200, {"ok": False, "error": "invalid_auth"}))
    env = cli_env(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_APP_TOKEN="xapp-1-refused",
        SLACK_API_URL=standin.api_url,
        TOKENBOT_SCHEDULER="off",
    )
    result = run_cli(["socket"], env, tmp_path)
    assert result.returncode == 2
    assert "Slack refused SLACK_APP_TOKEN (invalid_auth)" in result.stderr
    assert "app_manifest.yml" in result.stderr
    assert "Traceback" not in result.stderr
    assert "xapp-1-refused" not in result.stderr
    (call,) = standin.calls_to("apps.connections.open")
    assert call.headers.get("Authorization") == "Bearer xapp-1-refused"


class SocketSlackStandIn(SlackStandIn):
    """Slack's Web API stand-in whose apps.connections.open hands out a local ws:// URL."""

    ws_url = ""

    def _answer(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        if method == "apps.connections.open":
            return {"ok": True, "url": self.ws_url}
        return super()._answer(method, body)


@pytest.mark.slow
def test_tokenbot_socket_answers_over_socket_mode(
    tmp_path: Path, make_settings: Callable[..., Settings], database_url: str
) -> None:
    """`tokenbot socket` opens a Socket Mode connection with the app-level token, acks a
    /tokens envelope over the WebSocket and posts the table to the response_url; SIGTERM
    stops it cleanly."""
    from tests.support.socket_mode_standin import SocketModeStandIn

    settings = make_settings()
    database = Database(settings, auto_upgrade=False)
    try:
        seed(database, settings, "socket-bot")
    finally:
        database.dispose()
    web, wire = SocketSlackStandIn().start(), SocketModeStandIn().start()
    web.ws_url = wire.url
    env = cli_env(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_APP_TOKEN="xapp-1-socket",
        SLACK_API_URL=web.api_url,
        DATABASE_URL=database_url,
        TOKENBOT_SECRET_KEYS=settings.tokenbot_secret_keys[0].get_secret_value(),
        TOKENBOT_SCHEDULER="off",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "socket"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wire.wait_connected()
        (opened,) = web.calls_to("apps.connections.open")
        assert opened.headers.get("Authorization") == "Bearer xapp-1-socket"
        wire.send_envelope("slash_commands", slash_command(web), envelope_id="env-1")
        wire.wait_for_ack("env-1")
        (call,) = web.wait_for("response_url", timeout=10)
        validate_message_blocks(call.body["blocks"])
        assert "socket-bot" in json.dumps(call.body["blocks"])
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        web.stop()
        wire.stop()
    assert process.returncode == 0, output
    assert "Socket Mode" in output and "stopped by SIGTERM" in output
    assert "xapp-1-socket" not in output and BOT_TOKEN not in output
    assert "Traceback" not in output
