"""``/tokens``: the table (optionally filtered), ``create``, ``help``.

Filters are words, combinable: ``mine``, a status (``active``, ``disabled``, ``expired``,
``expiring``), an owner (a mention: the command has ``should_escape: true``, so Slack sends
``<@U123|name>``); every other word is label text (``/tokens mine deploy``)."""

from __future__ import annotations

import re
from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient

from bot.models import utcnow
from bot.services.listing import StatusFilter
from bot.slack.acks import on_command
from bot.slack.ids import USER_ID_PATTERN
from bot.slack.listeners import table
from bot.slack.listeners.common import actor_from, deps_of, draw_table, show
from bot.slack.views.formatting import truncate
from bot.slack.views.messages import help_message
from bot.slack.state import Origin, OriginKind, TableState

COMMAND = "/tokens"
LIST, CREATE, HELP = "list", "create", "help"
# Words that look like a subcommand but are not one: answered with help, not a search.
NOT_SUBCOMMANDS = frozenset(
    {
        "add", "new", "show", "get", "copy", "reveal", "edit", "update", "disable", "enable",
        "delete", "remove", "rm", "revoke", "rotate", "regenerate", "audit", "alerts",
        "?", "-h", "--help", "usage",
    }
)


def parse(text: str) -> tuple[str, str]:
    """``(subcommand, argument)``; plain text is a label filter (subcommand ``list``)."""
    text = " ".join(text.split())
    word, _, rest = text.partition(" ")
    lowered = word.lower()
    if not text or lowered == LIST:
        return LIST, rest
    if lowered in (CREATE, HELP) and not rest:
        return lowered, ""
    if lowered in NOT_SUBCOMMANDS:
        return HELP, text
    return LIST, text


MINE = "mine"
MENTION = re.compile(f"<@({USER_ID_PATTERN})(?:\\|[^>]*)?>")
_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))  # how Slack sends & < >
# With should_escape, Slack also turns "#general" and a typed link into references:
# searched for as the user typed them.
_REFERENCES = (
    (re.compile(r"<#[CG][A-Z0-9]+\|([^>]*)>"), r"#\1"),
    (re.compile(r"<((?:https?|mailto):[^|>]*)(?:\|([^>]*))?>"),
     lambda m: m.group(2) or m.group(1)),
)


def parse_filter(text: str, *, user_id: str) -> TableState:
    """The table's filter from the words after ``/tokens`` (see the module's docstring)."""
    owner, status, words = "", None, []
    for reference, typed in _REFERENCES:
        text = reference.sub(typed, text)
    for word in MENTION.sub(lambda m: f" <@{m.group(1)}> ", text).split():
        mention = MENTION.fullmatch(word)
        if mention:
            owner = mention.group(1)
        elif word.lower() == MINE:
            owner = user_id
        elif word.lower() in set(StatusFilter):
            status = StatusFilter(word.lower())
        else:
            words.append(word)
    query = " ".join(words)
    for entity, char in _ENTITIES:
        query = query.replace(entity, char)
    return TableState.of(query=query, status=status, owner=owner)  # a crafted user id: not found


def answer(command: dict[str, Any]) -> dict[str, Any] | None:
    """The acknowledgement's own content, which is the whole answer (help), or None when
    the command has work to do after a plain acknowledgement."""
    subcommand, argument = parse(command.get("text") or "")
    if subcommand == HELP:
        return help_message(unknown=truncate(argument, 60) if argument else None).payload()
    return None


def handle_tokens(command: dict[str, Any], body: dict[str, Any], context: BoltContext,
                  client: WebClient) -> None:
    """``/tokens``, ``/tokens <filter>``, ``/tokens create`` (``help`` is ``answer``'s)."""
    subcommand, argument = parse(command.get("text") or "")
    deps = deps_of(context)
    actor = actor_from(command, deps.settings)
    response_url = command.get("response_url")
    if subcommand == CREATE:
        # views.open as the first Web API call after ack(), while the trigger id is fresh.
        table.create_open(deps, client, actor=actor, trigger_id=command["trigger_id"],
                          origin=Origin(kind=OriginKind.COMMAND, response_url=response_url))
        return
    state = parse_filter(argument, user_id=actor.user_id)
    origin = Origin(kind=OriginKind.COMMAND, state=state, response_url=response_url)
    with deps.sessions.begin() as session:
        drawing = draw_table(session, deps, actor=actor, origin=origin, now=utcnow())
    show(drawing, client)


def register(app: App) -> None:
    on_command(app, COMMAND, handle_tokens,  # errors: one ephemeral line
               answer=lambda command, _: answer(command))
