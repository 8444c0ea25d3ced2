"""What every listener needs: its dependencies from the Bolt context, the acting user from
the payload (never from button values), and drawing the table where the user looks."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from slack_bolt import BoltContext
from slack_bolt.context.respond import Respond
from slack_sdk import WebClient
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View
from sqlalchemy.orm import Session, sessionmaker

from bot.config import Settings
from bot.crypto import SecretBox
from bot.errors import PermissionDeniedError
from bot.models import utcnow
from bot.services.listing import list_tokens
from bot.services.policy import Policy, policy_of
from bot.services import tokens
from bot.slack.background import Background
from bot.slack.views.home import home_view
from bot.slack.views.messages import Message, table_message
from bot.slack.state import Origin, OriginKind, RowRef, TableState, mapping
from bot.slack.views.table import PAGE_SIZE, Notice, Surface

log = logging.getLogger("bot.slack.listeners")

CONTEXT_KEY = "tokenbot"


@dataclass(frozen=True)
class Deps:
    """Put into every request's Bolt context by the app's middleware."""

    settings: Settings
    sessions: sessionmaker[Session]
    box: SecretBox
    work: Background  # the pool that runs the work after an acknowledgement

    @property
    def policy(self) -> Policy:
        """The token hygiene rules (TOKENBOT_MAX_LIFETIME_DAYS and the others)."""
        return policy_of(self.settings)

    def form_rules(self, actor: tokens.Actor) -> dict[str, Any]:
        """What the token form needs beside the token: the policy (its default expiry,
        where "never" is offered) and whether the viewer may give an exception."""
        return {"policy": self.policy, "admin": actor.is_admin, "now": utcnow()}


def deps_of(context: BoltContext) -> Deps:
    return context[CONTEXT_KEY]  # type: ignore[no-any-return]


def actor_from(body: dict[str, Any], settings: Settings) -> tokens.Actor:
    """The acting user and team, from the signed payload itself."""
    user = mapping(body.get("user"))
    event = mapping(body.get("event"))
    team = mapping(body.get("team"))
    user_id = user.get("id") or body.get("user_id") or event.get("user")
    team_id = team.get("id") or user.get("team_id") or body.get("team_id")
    if not isinstance(user_id, str) or not isinstance(team_id, str) or not user_id or not team_id:
        raise PermissionDeniedError("Tokenbot could not tell who you are in which workspace.")
    return tokens.Actor(team_id=team_id, user_id=user_id, is_admin=settings.is_admin(user_id))


@dataclass(frozen=True)
class Row:
    """A click on a token's row, from its button or its "More…" menu: who acts (from the
    signed payload), the row as drawn, where the table is, and the click's trigger id."""

    deps: Deps
    client: WebClient
    actor: tokens.Actor
    ref: RowRef
    origin: Origin
    trigger_id: Any = None


#: What a row action does with a click (``table.ROWS``, ``rotation.ROWS``).
RowFunction = Callable[[Row], None]


def row_of(body: dict[str, Any], ref: RowRef, context: BoltContext, client: WebClient) -> Row:
    deps = deps_of(context)
    return Row(deps=deps, client=client, actor=actor_from(body, deps.settings), ref=ref,
               origin=origin_of_action(body, ref.state), trigger_id=body.get("trigger_id"))


def origin_of_action(body: dict[str, Any], state: TableState) -> Origin:
    """Where a button was clicked: the App Home tab, or an (ephemeral) message."""
    if mapping(body.get("view")).get("type") == "home":
        return Origin(kind=OriginKind.HOME, state=state)
    url = body.get("response_url") if isinstance(body.get("response_url"), str) else None
    return Origin(kind=OriginKind.MESSAGE, state=state, response_url=url)


@dataclass(frozen=True)
class Drawing:
    """A table drawn for one user, ready to be shown where they look."""

    origin: Origin
    user_id: str
    message: Message | None = None
    view: View | None = None


def draw_table(
    session: Session,
    deps: Deps,
    *,
    actor: tokens.Actor,
    origin: Origin,
    now: dt.datetime,
    notice: Notice | None = None,
    panel: Sequence[Block] = (),
) -> Drawing:
    """Query the page the user was on (the last one if the table shrank), with its filter,
    and build its view, for the message or the Home tab the user looks at. "Expiring"
    means within ``Settings.expiring_days``; rows over the lifetime ``deps.policy`` are
    flagged."""
    surface = Surface.HOME if origin.kind == OriginKind.HOME else Surface.MESSAGE
    page = list_tokens(
        session,
        team_id=actor.team_id,
        now=now,
        filters=origin.state.filters,
        expiring_days=deps.settings.expiring_days,
        policy=deps.policy,
        page=origin.state.page,
        per_page=PAGE_SIZE[surface],
    )
    origin = origin.model_copy(update={"state": origin.state.at(page.page)})
    if surface == Surface.HOME:
        view = home_view(page, now=now, state=origin.state, viewer=actor, notice=notice,
                         panel=panel)
        return Drawing(origin=origin, user_id=actor.user_id, view=view)
    message = table_message(page, now=now, state=origin.state, viewer=actor, notice=notice)
    return Drawing(origin=origin, user_id=actor.user_id, message=message)


SLACK_HOOKS = "https://hooks.slack.com/"


def _origin(url: str) -> tuple[str, str | None, int | None] | None:
    """scheme, host and port of ``url``; None for one that names a user or cannot be read."""
    try:
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None or not parts.hostname:
            return None
        return parts.scheme.lower(), parts.hostname.lower(), parts.port
    except ValueError:
        return None


def is_slack_url(url: str, *, api_url: str) -> bool:
    """Slack's own response_url: on https://hooks.slack.com/, or at the origin of the Web
    API Slack is reached at (``SLACK_API_URL``: a local stand-in in the tests)."""
    origin = _origin(url)
    return origin is not None and origin in (_origin(SLACK_HOOKS), _origin(api_url))


def respond_to(response_url: object, client: WebClient) -> Respond | None:
    """Where to answer a request that carried a response_url: only Slack's (``is_slack_url``,
    against ``client``'s Web API). A crafted one, in a payload or carried in
    private_metadata, is never posted to, so nothing (a secret least of all) goes
    anywhere but Slack."""
    if not isinstance(response_url, str) or not response_url:
        return None
    if not is_slack_url(response_url, api_url=client.base_url):
        log.warning("Ignored a response_url that is not Slack's")  # never the url itself
        return None
    return Respond(response_url=response_url)


def send(respond: Respond, message: Message, *, replace_original: bool) -> None:
    """Post to a response_url; an expired url is logged (never with the payload)."""
    result = respond(
        response_type="ephemeral",
        replace_original=replace_original,
        **message.payload(),
    )
    if result.status_code != 200:
        log.warning("response_url answered HTTP %s", result.status_code)


def show(drawing: Drawing, client: WebClient) -> None:
    """Redraw in place: views.publish for Home, replace_original for the ephemeral table."""
    if drawing.view is not None:
        client.views_publish(user_id=drawing.user_id, view=drawing.view)
        return
    respond = respond_to(drawing.origin.response_url, client)
    if respond is None or drawing.message is None:
        return
    replace_original = drawing.origin.kind == OriginKind.MESSAGE
    send(respond, drawing.message, replace_original=replace_original)


def redraw(
    deps_: Deps,
    client: WebClient,
    *,
    actor: tokens.Actor,
    origin: Origin,
    notice: Notice | None = None,
    panel: Sequence[Block] = (),
) -> None:
    with deps_.sessions.begin() as session:
        drawing = draw_table(session, deps_, actor=actor, origin=origin, now=utcnow(),
                             notice=notice, panel=panel)
    show(drawing, client)
