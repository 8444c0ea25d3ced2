"""app_manifest.yml: valid for Slack, and in step with what the code registers and calls.

The manifest is what an admin pastes to create the app; if it lacks the slash command,
the event or a scope the bot needs, the bot fails in production in ways no other test
sees (a command Slack never sends, `missing_scope` on chat.postMessage). So:

- it validates against Slack's published manifest schema (Draft 7);
- the slash commands and bot events are exactly those the Bolt app registers listeners for;
- interactivity and the Home tab are on because the app handles clicks and Home;
- the bot scopes are exactly the ones needed by the Web API methods called in `bot/`
  (found by reading the source), no more (least privilege), no less.
"""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from slack_sdk import WebClient
from slack_sdk.web.base_client import BaseClient

from bot.config import Settings
from bot.db import Database
from tests.support.slack_standin import SlackStandIn

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "app_manifest.yml"
SCHEMA = ROOT / "tests" / "schemas" / "manifest.schema.json"
SOURCE = ROOT / "bot"

# Bot scopes of each Web API method (per Slack's method reference). A method the bot
# calls that is missing here fails the test: look its scopes up and add them.
SCOPES_BY_METHOD: dict[str, frozenset[str]] = {
    "chat_postMessage": frozenset({"chat:write"}),
    "chat_postEphemeral": frozenset({"chat:write"}),
    "chat_update": frozenset({"chat:write"}),
    "chat_delete": frozenset({"chat:write"}),
    "chat_scheduleMessage": frozenset({"chat:write"}),
    "chat_getPermalink": frozenset(),
    "conversations_open": frozenset({"im:write"}),
    # The alert pass reads back its own posts in channels (public, private) and DMs.
    "conversations_history": frozenset({"channels:history", "groups:history", "im:history"}),
    "conversations_join": frozenset({"channels:join"}),
    "users_info": frozenset({"users:read"}),
    "views_open": frozenset(),
    "views_update": frozenset(),
    "views_push": frozenset(),
    "views_publish": frozenset(),
    "auth_test": frozenset(),
    "apps_connections_open": frozenset(),  # app-level token (connections:write)
}
# Bot events that need a scope of their own (per Slack's event reference): the message
# events of each kind of conversation.
SCOPES_BY_EVENT: dict[str, frozenset[str]] = {
    "message.channels": frozenset({"channels:history"}),
    "message.groups": frozenset({"groups:history"}),
    "message.im": frozenset({"im:history"}),
    "message.mpim": frozenset({"mpim:history"}),
}
# Bolt's say() posts with chat.postMessage; respond() uses the response_url (no scope).
SCOPES_BY_UTILITY: dict[str, frozenset[str]] = {"say": frozenset({"chat:write"})}

INTERACTIVE_MATCHERS = {
    "action",
    "block_action",
    "attachment_action",
    "view",
    "view_submission",
    "view_closed",
    "shortcut",
    "global_shortcut",
    "message_shortcut",
    "options",
    "block_suggestion",
}


def load_manifest() -> dict[str, Any]:
    return yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))


def web_api_methods() -> set[str]:
    """Names of WebClient's Web API methods (chat_postMessage, views_open, …)."""
    base = set(dir(BaseClient))
    return {
        name
        for name, member in vars(WebClient).items()
        if callable(member) and not name.startswith("_") and name not in base
    }


def called_slack_methods(root: Path = SOURCE) -> dict[str, list[str]]:
    """Web API methods (and Bolt utilities) called anywhere in the bot's source."""
    methods = web_api_methods()
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = None
            if isinstance(func, ast.Attribute) and func.attr in methods:
                name = func.attr
            elif isinstance(func, ast.Name) and func.id in SCOPES_BY_UTILITY:
                name = func.id
            if name is not None:
                found.setdefault(name, []).append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def registered(app: Any) -> dict[str, set[Any]]:
    """What the Bolt app listens to, read from its listeners' built-in matchers."""
    kinds: dict[str, set[Any]] = {"command": set(), "event": set(), "interactive": set()}
    for listener in app._listeners:
        for matcher in listener.matchers:
            func = getattr(matcher, "func", None)
            if func is None:
                continue
            kind = func.__qualname__.split(".", 1)[0]
            values = inspect.getclosurevars(func).nonlocals
            if kind == "command":
                kinds["command"].add(str(values["command"]))
            elif kind == "event":
                event_type = values.get("event_type") or values["constraints"]["type"]
                kinds["event"].add(str(event_type))
            elif kind in INTERACTIVE_MATCHERS:
                kinds["interactive"].add(kind)
    return kinds


# -- the manifest on its own ---------------------------------------------------------


def test_manifest_is_valid_for_slack() -> None:
    manifest = load_manifest()
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(manifest), key=lambda e: list(e.path)
    )
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_manifest_describes_the_product() -> None:
    manifest = load_manifest()
    features = manifest["features"]
    assert features["bot_user"]["display_name"]
    (command,) = [c for c in features["slash_commands"] if c["command"] == "/tokens"]
    assert command["description"] and command["usage_hint"]
    for word in ("list", "create", "help"):
        assert word in command["usage_hint"]
    # `/tokens @someone` filters by owner: Slack sends mentions as <@U…|name> only then.
    assert command["should_escape"] is True
    for word in ("mine", "expiring", "@owner"):
        assert word in command["usage_hint"]
    assert features["app_home"]["home_tab_enabled"] is True
    settings = manifest["settings"]
    assert settings["interactivity"]["is_enabled"] is True
    assert "app_home_opened" in settings["event_subscriptions"]["bot_events"]
    assert settings["socket_mode_enabled"] is True  # development default
    # Switching to HTTP is explained where the URLs go, and all of them are one endpoint.
    text = MANIFEST.read_text(encoding="utf-8")
    assert text.count("# request_url: https://HOST/slack/events") == 2
    assert "# url: https://HOST/slack/events" in text


def readme_set_up_command() -> str:
    """The first shell command under the README's "## Set-up": the one that runs the bot."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Set-up\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```sh\n", 1)[1].split("\n```", 1)[0]


def test_the_readme_set_up_runs_the_app_the_manifest_makes() -> None:
    """An app created from the manifest verbatim and run by the README's set-up command
    works: Socket Mode is `tokenbot socket` with an app-level token, HTTP mode would be
    `tokenbot serve` with the signing secret (and the request URLs set)."""
    from bot.cli.serve import REQUIRED

    command = readme_set_up_command()
    mode = "socket" if load_manifest()["settings"]["socket_mode_enabled"] else "serve"
    assert f"/tokenbot {mode}" in command
    for variable in REQUIRED[mode]:
        assert f"{variable}=" in command
    other = "serve" if mode == "socket" else "socket"
    assert f"tokenbot {other}" not in command


def test_http_mode_variant_is_valid_too() -> None:
    """Following the comments (socket mode off, the URLs set) still gives a valid manifest."""
    manifest = load_manifest()
    url = "https://tokenbot.example.com/slack/events"
    manifest["settings"]["socket_mode_enabled"] = False
    manifest["settings"]["interactivity"]["request_url"] = url
    manifest["settings"]["event_subscriptions"]["request_url"] = url
    for command in manifest["features"]["slash_commands"]:
        command["url"] = url
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator(schema).validate(manifest)


def test_bot_scopes_are_exactly_what_the_code_calls_for() -> None:
    manifest = load_manifest()
    granted = set(manifest["oauth_config"]["scopes"]["bot"])
    calls = called_slack_methods()
    unknown = sorted(set(calls) - set(SCOPES_BY_METHOD) - set(SCOPES_BY_UTILITY))
    assert not unknown, f"add the scopes of these Slack methods to SCOPES_BY_METHOD: {unknown}"
    needed: dict[str, list[str]] = {}
    for name, where in calls.items():
        for scope in SCOPES_BY_METHOD.get(name) or SCOPES_BY_UTILITY.get(name, frozenset()):
            needed.setdefault(scope, []).extend(where)
    if manifest["features"].get("slash_commands"):
        needed.setdefault("commands", []).append("features.slash_commands")
    for event in manifest["settings"]["event_subscriptions"]["bot_events"]:
        for scope in SCOPES_BY_EVENT.get(event, frozenset()):
            needed.setdefault(scope, []).append(f"bot_events: {event}")
    missing = {scope: where[:3] for scope, where in needed.items() if scope not in granted}
    assert not missing, f"scopes the code needs but the manifest lacks: {missing}"
    extra = sorted(granted - set(needed))
    assert not extra, f"scopes granted that no code uses (least privilege): {extra}"


def test_scope_scan_sees_calls(tmp_path: Path) -> None:
    """The source scan finds client calls in any form the bot writes them."""
    (tmp_path / "m.py").write_text(
        "def f(client, say, respond):\n"
        "    client.chat_postMessage(channel='C', text='x')\n"
        "    context.client.conversations_open(users='U')\n"
        "    say('hi')\n"
        "    respond('no scope')\n"
        "    client.views_open(trigger_id='t', view={})\n",
        encoding="utf-8",
    )
    found = called_slack_methods(tmp_path)
    assert set(found) == {"chat_postMessage", "conversations_open", "say", "views_open"}


# -- the manifest against the Bolt app ------------------------------------------------


def test_manifest_matches_the_registered_listeners(
    make_settings: Any, standin: SlackStandIn
) -> None:
    from bot.slack import app as app_module

    settings: Settings = make_settings(
        SLACK_BOT_TOKEN="xoxb-test",
        SLACK_SIGNING_SECRET="test-signing-secret",
        SLACK_API_URL=standin.api_url,
    )
    database = Database(settings, auto_upgrade=False)
    try:
        app = app_module.create_app(settings=settings, database=database)
        listens = registered(app)
    finally:
        database.dispose()
    manifest = load_manifest()
    commands = {c["command"] for c in manifest["features"]["slash_commands"]}
    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    assert listens["command"] == commands
    # One `message` listener takes the message events of every kind of conversation.
    assert listens["event"] == {event.split(".", 1)[0] for event in events}
    assert set(SCOPES_BY_EVENT) <= events
    assert "/tokens" in commands and "app_home_opened" in events
    # The app handles button clicks and modal submissions: Slack must send them.
    assert listens["interactive"] >= {"view_submission"} and (
        listens["interactive"] & {"action", "block_action"}
    )
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
