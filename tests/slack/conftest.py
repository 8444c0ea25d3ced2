"""The Slack app through Bolt's real pipeline: signed Slack-shaped requests into
``app.dispatch``, a local stand-in for Slack's Web API and response_urls, and every Block
Kit payload validated (recorded calls at teardown, ack bodies as they come back)."""

from __future__ import annotations

import datetime as dt
import http.client
import itertools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from slack_bolt import App, BoltResponse
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import select

from bot.slack.app import create_app, work_pool
from bot.slack.background import Background
from bot.config import Settings
from bot.db import Database
from bot.http.server import BadSlackRequest, build_asgi_app, to_bolt_request
from bot.slack.ids import ActionId
from bot.slack.state import MenuChoice
from bot.models import AuditEvent, Token
from bot.services import tokens
from tests.support.blockkit import validate_message_blocks, validate_slack_call, validate_view
from tests.support.serving import serving
from tests.support.signing import form_body, interactive_body, signed_headers
from tests.support.slack_standin import Call, SlackStandIn
from tests.support.policy import NO_POLICY

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
INTROSPECTION_SECRET = "slack-tests-introspection-credential"
TEAM = "T1"
OTHER_TEAM = "T2"
OWNER = "U1"
OTHER_USER = "U2"
ADMIN = "UADMIN"  # the conftest's TOKENBOT_ADMINS
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def slack_settings(make_settings: Callable[..., Settings], standin: SlackStandIn) -> Settings:
    return make_settings(
        SLACK_API_URL=standin.api_url,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_BOT_TOKEN="xoxb-test",
        TOKENBOT_INTROSPECTION_SECRETS=f"ci-runner={INTROSPECTION_SECRET}",
    )


class SlackBot:
    """The app under test, with helpers that send what Slack sends."""

    def __init__(self, app: App, standin: SlackStandIn, work: Background) -> None:
        self.app = app
        self.standin = standin
        self.work = work
        self.acks: list[dict[str, Any]] = []
        self.verifier = SignatureVerifier(SIGNING_SECRET)
        self._urls = itertools.count(1)

    # -- transport ---------------------------------------------------------------

    def send(
        self,
        body: str,
        *,
        content_type: str = FORM,
        secret: str = SIGNING_SECRET,
        timestamp: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> BoltResponse:
        sent = headers or signed_headers(secret, body, content_type=content_type,
                                         timestamp=timestamp)
        # Through the HTTP server's front door: signature on the raw bytes, then parsing.
        scope = {"headers": [(k.lower().encode(), v.encode()) for k, v in sent.items()]}
        try:
            request = to_bolt_request(scope, body.encode("utf-8"), self.verifier)
        except BadSlackRequest as refused:
            return BoltResponse(status=refused.status, body="")
        response = self.app.dispatch(request)
        self._check_ack(response)
        return response

    def _check_ack(self, response: BoltResponse) -> None:
        """Every ack body is Block Kit-valid: message blocks, views, errors."""
        if not response.body:
            return
        try:
            data = json.loads(response.body)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        self.acks.append(data)
        if data.get("blocks") is not None:
            validate_message_blocks(data["blocks"])
        if data.get("response_action") in ("update", "push"):
            validate_view(data["view"])
        if data.get("response_action") == "errors":
            assert isinstance(data["errors"], dict) and data["errors"]
            assert all(isinstance(v, str) and v for v in data["errors"].values())

    def settle(self) -> None:
        """Wait until the work after ack() of every request sent so far is done."""
        assert self.work.wait_idle(timeout=10.0), "the work after ack() is still running"

    def next_response_url(self) -> str:
        return self.standin.response_url(f"r{next(self._urls)}")

    # -- Slack's payloads -------------------------------------------------------

    def command(self, text: str = "", *, user: str = OWNER, team: str = TEAM,
                settle: bool = True, response_url: str | None = None) -> BoltResponse:
        body = form_body(
            {
                "token": "legacy-verification-token",
                "team_id": team,
                "team_domain": "acme",
                "channel_id": "C1",
                "channel_name": "general",
                "user_id": user,
                "user_name": user.lower(),
                "command": "/tokens",
                "text": text,
                "api_app_id": "A1",
                "is_enterprise_install": "false",
                "response_url": response_url or self.next_response_url(),
                "trigger_id": f"{next(self._urls)}.1.trigger",
            }
        )
        response = self.send(body)
        if settle:
            self.settle()
        return response

    def click(
        self,
        element: dict[str, Any],
        *,
        user: str = OWNER,
        team: str = TEAM,
        home: bool = False,
        block_id: str = "b",
        settle: bool = True,
        selected_option: dict[str, Any] | None = None,
        view: dict[str, Any] | None = None,
        response_url: str | None = None,
    ) -> BoltResponse:
        """Click a button (an element dict as drawn) on an ephemeral message or on Home;
        with ``selected_option``, choose that option of a menu (``element`` the menu).
        ``view``: the Home view clicked (its private_metadata comes back).
        ``response_url``: instead of the stand-in's next one (e.g. a crafted one)."""
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team},
            "api_app_id": "A1",
            "token": "legacy-verification-token",
            "trigger_id": f"{next(self._urls)}.1.trigger",
            "team": {"id": team, "domain": "acme"},
            "enterprise": None,
            "is_enterprise_install": False,
            "actions": [
                {
                    "type": "button",
                    "action_id": element["action_id"],
                    "block_id": block_id,
                    "text": element.get("text", {"type": "plain_text", "text": "x"}),
                    "value": element.get("value", ""),
                    "action_ts": f"{time.time():.6f}",
                }
                if selected_option is None
                else {
                    "type": element.get("type", "overflow"),
                    "action_id": element["action_id"],
                    "block_id": block_id,
                    "selected_option": selected_option,
                    "action_ts": f"{time.time():.6f}",
                }
            ],
            "state": {"values": {}},
        }
        if home:
            payload["container"] = {"type": "view", "view_id": "VHOME"}
            payload["view"] = {"id": "VHOME", "type": "home", "team_id": team,
                               "blocks": (view or {}).get("blocks", []),
                               "private_metadata": (view or {}).get("private_metadata", ""),
                               "callback_id": "", "hash": "h", "state": {"values": {}}}
        else:
            payload["container"] = {"type": "message", "message_ts": "1.1", "channel_id": "C1",
                                    "is_ephemeral": True}
            payload["channel"] = {"id": "C1", "name": "general"}
            payload["response_url"] = response_url or self.next_response_url()
        response = self.send(interactive_body(payload))
        if settle:
            self.settle()
        return response

    def submit(self, view: dict[str, Any], values: dict[str, Any], *, user: str = OWNER,
               team: str = TEAM, settle: bool = True) -> BoltResponse:
        """Submit a modal as drawn (its callback id and private_metadata) with values."""
        payload = {
            "type": "view_submission",
            "team": {"id": team, "domain": "acme"},
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team},
            "api_app_id": "A1",
            "token": "legacy-verification-token",
            "trigger_id": f"{next(self._urls)}.1.trigger",
            "view": {
                "id": "VMODAL",
                "team_id": team,
                "type": "modal",
                "blocks": view["blocks"],
                "private_metadata": view.get("private_metadata", ""),
                "callback_id": view["callback_id"],
                "state": {"values": values},
                "hash": "h",
                "title": view["title"],
                "close": view.get("close"),
                "submit": view.get("submit"),
            },
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        response = self.send(interactive_body(payload))
        if settle:
            self.settle()
        return response

    def home_opened(self, *, user: str = OWNER, team: str = TEAM) -> BoltResponse:
        body = json.dumps(
            {
                "token": "legacy-verification-token",
                "team_id": team,
                "api_app_id": "A1",
                "event": {"type": "app_home_opened", "user": user, "channel": "D1",
                          "tab": "home", "event_ts": f"{time.time():.6f}"},
                "type": "event_callback",
                "event_id": f"Ev{next(self._urls)}",
                "event_time": int(time.time()),
                "authorizations": [{"enterprise_id": None, "team_id": team, "user_id": "UBOT",
                                    "is_bot": True, "is_enterprise_install": False}],
            }
        )
        return self.send(body, content_type="application/json")


def form_values(
    *,
    label: str | None = "ci",
    scope: str | None = "read",
    expires: str | None = None,
    channel: str | None = None,
    clear_expiry: bool = False,
) -> dict[str, Any]:
    """``view.state.values`` as Slack sends them for the token form."""
    values: dict[str, Any] = {
        "label": {ActionId.LABEL_INPUT.value: {"type": "plain_text_input", "value": label}},
        "scope": {
            ActionId.SCOPE_SELECT.value: {
                "type": "static_select",
                "selected_option": (
                    {"text": {"type": "plain_text", "text": scope, "emoji": False},
                     "value": scope}
                    if scope is not None else None
                ),
            }
        },
        "expires": {ActionId.EXPIRES_PICK.value: {"type": "datepicker", "selected_date": expires}},
        "alert_channel": {
            ActionId.ALERT_CHANNEL_SELECT.value: {
                "type": "conversations_select", "selected_conversation": channel,
            }
        },
    }
    if clear_expiry:
        values["no_expiry"] = {
            ActionId.NO_EXPIRY_CHECK.value: {
                "type": "checkboxes",
                "selected_options": [{"text": {"type": "plain_text", "text": "x"},
                                      "value": "no_expiry"}],
            }
        }
    return values


@contextmanager
def running_bot(settings: Settings, db: Database, standin: SlackStandIn) -> Iterator[SlackBot]:
    """The app for these settings and database, with what every test checks afterwards:
    the work after each ack is done, and every payload sent to Slack is valid Block Kit."""
    pool = work_pool()
    harness = SlackBot(create_app(settings=settings, database=db, work=pool), standin, pool)
    try:
        yield harness
        harness.settle()
        for call in standin.calls:
            validate_slack_call(call.method, call.body)
    finally:
        pool.close(timeout=10)


class HttpSlackBot(SlackBot):
    """Sends what Slack sends over HTTP to the served app (``/slack/events`` of the
    product's ASGI application under uvicorn), and times each answer."""

    def __init__(self, address: tuple[str, int], *args: Any) -> None:
        super().__init__(*args)
        self.address = address
        self.seconds: list[float] = []

    def send(self, body: str, *, content_type: str = FORM, **_: Any) -> BoltResponse:
        headers = signed_headers(self.verifier.signing_secret, body, content_type=content_type)
        connection = http.client.HTTPConnection(*self.address, timeout=10)
        started = time.monotonic()
        try:
            connection.request("POST", "/slack/events", body=body.encode(), headers=headers)
            response = connection.getresponse()
            answer = response.read().decode()
        finally:
            connection.close()
        self.seconds.append(time.monotonic() - started)
        bolt_response = BoltResponse(status=response.status, body=answer)
        self._check_ack(bolt_response)
        return bolt_response


@pytest.fixture
def served(slack_settings: Settings, db: Database, standin: SlackStandIn,
           work: Background) -> Iterator[HttpSlackBot]:
    """The Slack app behind the product's HTTP server (introspection included)."""
    app = create_app(settings=slack_settings, database=db, work=work)
    with serving(build_asgi_app(settings=slack_settings, database=db, bolt_app=app)) as address:
        yield HttpSlackBot(address, app, standin, work)
        sent = list(standin.calls)
        # What was acknowledged still runs; let it finish against an answering Slack, so
        # that no late call reaches the next test.
        standin.reset()
        assert work.wait_idle(timeout=30)
        sent += standin.calls
    for call in sent:  # every payload the bot sent Slack is valid Block Kit
        validate_slack_call(call.method, call.body)


@pytest.fixture
def work() -> Iterator[Background]:
    pool = work_pool()
    yield pool
    pool.close(timeout=10)


@pytest.fixture
def app(slack_settings: Settings, db: Database, work: Background) -> App:
    return create_app(settings=slack_settings, database=db, work=work)


@pytest.fixture
def bot(app: App, standin: SlackStandIn, work: Background) -> Iterator[SlackBot]:
    harness = SlackBot(app, standin, work)
    yield harness
    harness.settle()
    for call in standin.calls:  # every payload the bot sent Slack is valid Block Kit
        validate_slack_call(call.method, call.body)


# -- reading what the user sees ------------------------------------------------


def texts(blocks: list[dict[str, Any]]) -> str:
    """All the text of some blocks, in order (what a reader sees, modulo rendering)."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str):
                out.append(node["text"])
                return
            for key, value in node.items():
                if key not in ("value", "action_id", "block_id", "confirm"):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(blocks)
    return "\n".join(out)


def mrkdwn_texts(node: Any) -> list[str]:
    """Every mrkdwn text anywhere in a payload: where Slack parses mentions and links."""
    found: list[str] = []
    if isinstance(node, dict):
        if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
            found.append(node["text"])
        for value in node.values():
            found.extend(mrkdwn_texts(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(mrkdwn_texts(item))
    return found


def buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every button: in actions blocks, and a section's accessory (e.g. Clear filter)."""
    found: list[dict[str, Any]] = []
    for block in blocks:
        elements = list(block.get("elements", [])) if block.get("type") == "actions" else []
        if block.get("type") == "section" and block.get("accessory"):
            elements.append(block["accessory"])
        found.extend(element for element in elements if element.get("type") == "button")
    return found


def row_buttons(blocks: list[dict[str, Any]], public_id: str) -> dict[str, dict[str, Any]]:
    """The buttons of one token's row, by action id."""
    for block in blocks:
        if block.get("block_id") == f"row_actions:{public_id}":
            return {element["action_id"]: element for element in block["elements"]}
    raise AssertionError(f"no row for {public_id}")


def row_menu(blocks: list[dict[str, Any]], public_id: str) -> dict[str, dict[str, Any]]:
    """The "More…" options of one token's row, by the action each runs (empty: none)."""
    for block in blocks:
        if block.get("block_id") == f"row_actions:{public_id}":
            for element in block["elements"]:
                if element["type"] == "overflow":
                    assert element["action_id"] == ActionId.ROW_MORE
                    return {MenuChoice.decode(o["value"]).action: o for o in element["options"]}
            return {}
    raise AssertionError(f"no row for {public_id}")


def choose(bot: SlackBot, blocks: list[dict[str, Any]], public_id: str, action: ActionId,
           **kwargs: Any) -> BoltResponse:
    """Choose ``action`` in the row's "More…" menu."""
    option = row_menu(blocks, public_id)[action]
    return bot.click({"action_id": ActionId.ROW_MORE, "type": "overflow"},
                     selected_option=option, **kwargs)


def choose_and_confirm(bot: SlackBot, standin: SlackStandIn, blocks: list[dict[str, Any]],
                       public_id: str, action: ActionId, *, user: str = OWNER,
                       home: bool = False, values: dict[str, Any] | None = None,
                       ) -> dict[str, Any]:
    """Choose a "More…" option that asks first, then submit the modal it opens (the
    confirmation, or Rotate's own modal: "immediately" unless ``values`` say otherwise);
    returns the modal as drawn."""
    opened = len(standin.calls_to("views.open"))
    choose(bot, blocks, public_id, action, user=user, home=home)
    modal = standin.wait_for("views.open", opened + 1)[-1].body["view"]
    assert modal["callback_id"] in ("token_confirm_modal", "token_rotate_modal")
    if values is None and modal["callback_id"] == "token_rotate_modal":
        values = rotate_values(None)
    bot.submit(modal, values or {}, user=user)
    return modal


def last_response(standin: SlackStandIn) -> Call:
    calls = standin.calls_to("response_url")
    assert calls, "nothing was posted to a response_url"
    return calls[-1]


# -- data --------------------------------------------------------------------------


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def seed(
    db: Database,
    *,
    label: str = "ci",
    owner: str = OWNER,
    team: str = TEAM,
    scope: str = "read",
    expires_on: dt.date | None = None,
    disabled: bool = False,
) -> tokens.CreatedToken:
    """A token made through the service, as an admin of ``team`` acting for ``owner``."""
    actor = tokens.Actor(team_id=team, user_id=ADMIN, is_admin=True)
    with db.sessions.begin() as session:
        created = tokens.create_token(
            session, box=db.box, actor=actor, label=label, scope=scope,
            scopes=["read", "write", "admin"], now=utcnow(), expires_on=expires_on,
            owner=owner, policy=NO_POLICY,
        )
        if disabled:  # by its owner: nobody else acted, so nobody is told
            tokens.disable_token(session, actor=tokens.Actor(team_id=team, user_id=owner),
                                 public_id=created.token.public_id,
                                 expected_version=created.token.version, now=utcnow())
    return created


def load(db: Database, public_id: str, team: str = TEAM) -> Token | None:
    with db.sessions.begin() as session:
        return session.scalars(
            select(Token).where(Token.public_id == public_id, Token.team_id == team)
        ).one_or_none()


def audit_actions(db: Database, public_id: str) -> list[str]:
    with db.sessions.begin() as session:
        return list(
            session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.token_public_id == public_id)
                .order_by(AuditEvent.id)
            )
        )


@pytest.fixture
def table(bot: SlackBot, standin: SlackStandIn) -> Callable[..., list[dict[str, Any]]]:
    """Draw the table with ``/tokens`` as ``user`` and return its blocks."""

    def draw(text: str = "", *, user: str = OWNER, team: str = TEAM) -> list[dict[str, Any]]:
        before = len(standin.calls_to("response_url"))
        bot.command(text, user=user, team=team)
        calls = standin.wait_for("response_url", before + 1)
        return calls[-1].body["blocks"]

    return draw


def rotate_values(overlap: str | None = None) -> dict[str, Any]:
    """The rotate modal's state: immediately, or keep the old secret (``1h``/``24h``/``7d``)."""
    mode = "overlap" if overlap else "now"
    return {
        "rotate_mode": {ActionId.ROTATE_MODE: {"type": "radio_buttons",
                                               "selected_option": {"value": mode}}},
        "rotate_overlap": {ActionId.ROTATE_OVERLAP: {
            "type": "static_select", "selected_option": {"value": overlap or "24h"}}},
    }


def rotate_by_modal(bot: SlackBot, standin: SlackStandIn, blocks: list[dict[str, Any]],
                    public_id: str, overlap: str | None = None,
                    **kwargs: Any) -> dict[str, Any]:
    """Choose "Rotate…" in the row's menu and submit its modal; returns the modal."""
    return choose_and_confirm(bot, standin, blocks, public_id, ActionId.ROTATE,
                              values=rotate_values(overlap), **kwargs)
