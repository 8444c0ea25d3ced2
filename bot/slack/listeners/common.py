"""What every listener needs: its dependencies from the Bolt context, the acting user from
the payload (never from button values), and drawing the table where the user looks."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from slack_bolt import BoltContext
from slack_bolt.context.respond import Respond
from slack_sdk import WebClient
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View
from sqlalchemy.orm import Session, sessionmaker

from bot.config import Settings
from bot.crypto import SecretBox
from bot.errors import PermissionDeniedError
from bot.services import tokens as svc
from bot.slack.views.home import home_view
from bot.slack.views.messages import Message, table_message
from bot.slack.state import Origin, OriginKind, TableState
from bot.slack.views.table import PAGE_SIZE, Notice, Surface

log = logging.getLogger("bot.slack.listeners")

CONTEXT_KEY = "tokenbot"


@dataclass(frozen=True)
class Deps:
    """Put into every request's Bolt context by the app's middleware."""

    settings: Settings
    sessions: sessionmaker[Session]
    box: SecretBox


def deps(context: BoltContext) -> Deps:
    return context[CONTEXT_KEY]  # type: ignore[no-any-return]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def actor_from(body: dict[str, Any], settings: Settings) -> svc.Actor:
    """The acting user and team, from the signed payload itself."""
    user = _mapping(body.get("user"))
    event = _mapping(body.get("event"))
    team = _mapping(body.get("team"))
    user_id = user.get("id") or body.get("user_id") or event.get("user")
    team_id = team.get("id") or user.get("team_id") or body.get("team_id")
    if not isinstance(user_id, str) or not isinstance(team_id, str) or not user_id or not team_id:
        raise PermissionDeniedError("Tokenbot could not tell who you are in which workspace.")
    return svc.Actor(team_id=team_id, user_id=user_id, is_admin=settings.is_admin(user_id))


def origin_of_action(body: dict[str, Any], state: TableState) -> Origin:
    """Where a button was clicked: the App Home tab, or an (ephemeral) message."""
    view = body.get("view") if isinstance(body.get("view"), dict) else None
    if view is not None and view.get("type") == "home":
        return Origin(kind=OriginKind.HOME, state=state)
    url = body.get("response_url") if isinstance(body.get("response_url"), str) else None
    return Origin(kind=OriginKind.MESSAGE, state=state, response_url=url)


@dataclass(frozen=True)
class Drawing:
    """A table drawn for one user, ready to be shown where they look."""

    origin: Origin
    user_id: str
    total: int
    message: Message | None = None
    view: View | None = None


def draw_table(
    session: Session,
    *,
    actor: svc.Actor,
    origin: Origin,
    now: dt.datetime,
    notice: Notice | None = None,
    panel: Sequence[Block] = (),
    recount: bool = True,
    prefetch: svc.Prefetch | None = None,
) -> Drawing:
    """Query the page the user was on (clamped if it shrank) and build its view.
    ``recount=False``: after a change that cannot take tokens away, a count the user's
    table showed past the cap is not taken again. ``prefetch``: from ``prefetch_for``,
    given to the change before."""
    state = origin.state
    page = svc.list_tokens(
        session,
        team_id=actor.team_id,
        now=now,
        search=state.query or None,
        page=state.page,
        per_page=PAGE_SIZE[_surface(origin)],
        past_cap=state.many and not recount,
        prefetched=prefetch,
    )
    origin = replace(origin, state=replace(state, page=page.page, many=not page.total_exact))
    if _surface(origin) == Surface.HOME:
        view = home_view(page, now=now, state=origin.state, notice=notice, panel=panel)
        return Drawing(origin=origin, user_id=actor.user_id, total=page.total, view=view)
    message = table_message(page, now=now, state=origin.state, notice=notice)
    return Drawing(origin=origin, user_id=actor.user_id, total=page.total, message=message)


def _surface(origin: Origin) -> Surface:
    return Surface.HOME if origin.kind == OriginKind.HOME else Surface.MESSAGE


def prefetch_for(actor: svc.Actor, origin: Origin) -> svc.Prefetch | None:
    """For a change of one token followed by ``draw_table(recount=False)``: the page to
    read on the way. None where no table is drawn (a digest) or a filter could drop the
    changed token."""
    state = origin.state
    if origin.kind == OriginKind.DIGEST or state.query:
        return None
    return svc.Prefetch(team_id=actor.team_id, page=state.page,
                        per_page=PAGE_SIZE[_surface(origin)], past_cap=state.many)


def respond_to(response_url: str | None) -> Respond | None:
    return Respond(response_url=response_url) if response_url else None


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
    respond = respond_to(drawing.origin.response_url)
    if respond is None or drawing.message is None:
        return
    replace_original = drawing.origin.kind == OriginKind.MESSAGE
    send(respond, drawing.message, replace_original=replace_original)


def redraw(
    deps_: Deps,
    client: WebClient,
    *,
    actor: svc.Actor,
    origin: Origin,
    notice: Notice | None = None,
    panel: Sequence[Block] = (),
) -> None:
    now = utcnow()
    with deps_.sessions.begin() as session:
        drawing = draw_table(session, actor=actor, origin=origin, now=now, notice=notice,
                             panel=panel)
    show(drawing, client)
