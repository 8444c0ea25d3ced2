"""A token's owner in Slack: the row's "Reassign…" (admins) opens the reassign modal,
whose submission reassigns and redraws the table; a deactivated user (``user_change``)
has their active tokens posted once to the alert channel, whose per-token Reassign (a
user picker) and Disable redraw that post. Thin: parse, call a service, draw."""

from __future__ import annotations

import datetime as dt
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError
from sqlalchemy.orm import Session

from bot.errors import NotFoundError, PermissionDeniedError, ValidationError
from bot.models import utcnow
from bot.services import departed, owners
from bot.services import tokens
from bot.slack.acks import on_actions, on_event, on_submission
from bot.slack.background import Task
from bot.slack.ids import ActionId, BlockId, CallbackId
from bot.slack.listeners import modals, table
from bot.slack.listeners.common import (
    Deps,
    Row,
    RowFunction,
    actor_from,
    deps_of,
    draw_table,
    redraw,
    show,
)
from bot.slack.listeners.digests import (
    DigestRedraw,
    Where,
    act_on_post,
    disable_from_post,
    post_surface,
)
from bot.slack.listeners.errors import Body, tell_nobody, user_text
from bot.slack.state import ModalMetadata, RowRef, mapping
from bot.slack.views.formatting import escape, mention
from bot.slack.views.modals import field_errors
from bot.slack.views.owners import departed_post, read_reassign_form, reassign_modal
from bot.slack.views.table import Notice, NoticeKind

# -- "Reassign…" from a row's menu ------------------------------------------------------


def reassign_open(row: Row) -> None:
    """Check first (an admin, the version seen), then open the modal."""
    with row.deps.sessions.begin() as session:
        token = owners.check_reassign(session, actor=row.actor, public_id=row.ref.public_id,
                                      expected_version=row.ref.version)
        view = reassign_modal(label=token.label, masked=token.secret_masked,
                              owner=token.owner,
                              metadata=ModalMetadata(origin=row.origin,
                                                     public_id=token.public_id,
                                                     version=token.version))
    row.client.views_open(trigger_id=row.trigger_id, view=view)


def _reassigned(result: owners.Reassigned) -> str:
    """The reply: what was done, and who was told (not an owner who has left)."""
    told = ("Both were told." if len(result.told) == 2
            else f"{mention(result.told[0])} was told." if result.told else "")
    return (f"Reassigned *{escape(result.token.label)}* from {mention(result.before)} to "
            f"{mention(result.after)}. {told}").rstrip()


def handle_reassign_submit(ack: Ack, body: Body, view: dict[str, Any], context: BoltContext,
                           client: WebClient) -> Task | None:
    """Check (a refused new owner inline on the picker), acknowledge, then, after the
    acknowledgement, ask Slack whether the pick is a bot or a deactivated account (the
    acknowledgement waits on no Web API call) and reassign; the table behind the modal is
    redrawn with what was done, or why nothing was."""
    deps = deps_of(context)
    actor = actor_from(body, deps.settings)
    metadata = ModalMetadata.decode(view.get("private_metadata"))
    if metadata.public_id is None:
        raise NotFoundError()
    public_id = metadata.public_id
    try:
        new_owner = read_reassign_form(view)
        with deps.sessions.begin() as session:
            owners.check_new_owner(session, actor=actor, public_id=public_id,
                                   new_owner=new_owner, expected_version=metadata.version)
    except (ValidationError, PermissionDeniedError) as error:
        errors = field_errors(error, view)
        if errors is None:
            raise  # the modal's error surface: the reason in the modal, the table redrawn
        ack(response_action="errors", errors=errors)
        return None
    ack()

    def then() -> None:
        try:
            refuse_unfit(client, new_owner)
            with deps.sessions.begin() as session:
                now = utcnow()
                result = owners.reassign(session, actor=actor, public_id=public_id,
                                         new_owner=new_owner, now=now,
                                         expected_version=metadata.version)
                drawing = draw_table(session, deps, actor=actor, origin=metadata.origin, now=now,
                                     notice=Notice(_reassigned(result)))
        except (ValidationError, PermissionDeniedError) as error:  # the modal has closed
            redraw(deps, client, actor=actor, origin=metadata.origin,
                   notice=Notice(f"{user_text(error)} Nothing changed.", NoticeKind.ERROR))
            return
        show(drawing, client)

    return then


ROWS: dict[str, RowFunction] = {ActionId.REASSIGN: reassign_open}


# -- owners who leave --------------------------------------------------------------------


#: How long (seconds) the list of departed users is trusted by the acknowledgement of a
#: ``user_change`` (read at most this often per process; one noted here is added at once).
DEPARTURES_FRESH: Final = 60.0


@dataclass(frozen=True)
class _Departures:
    users: frozenset[str]
    read_at: float


_departures: weakref.WeakKeyDictionary[Any, _Departures] = weakref.WeakKeyDictionary()
_departures_lock = threading.Lock()


def _departed_users(deps: Deps) -> frozenset[str]:
    """Who is recorded as departed (any team), as read at most :data:`DEPARTURES_FRESH`
    seconds ago for this database."""
    with _departures_lock:
        known = _departures.get(deps.sessions)
    if known is None or time.monotonic() - known.read_at > DEPARTURES_FRESH:
        with deps.sessions() as session:
            known = _Departures(frozenset(departed.everyone_departed(session)),
                                time.monotonic())
        with _departures_lock:
            _departures[deps.sessions] = known
    return known.users


def _note_locally(deps: Deps, user_id: str, *, gone: bool) -> None:
    with _departures_lock:
        known = _departures.get(deps.sessions)
        if known is not None:
            users = known.users | {user_id} if gone else known.users - {user_id}
            _departures[deps.sessions] = _Departures(users, known.read_at)


def nothing_to_note(event: dict[str, Any], deps: Deps) -> dict[str, Any] | None:
    """In the acknowledgement: ``{}`` (done) for a profile or status edit of a user who is
    not a known departure, which is nearly every ``user_change``; None for a deactivation
    or a known departure's return (the listener then runs on the pool)."""
    user = mapping(event.get("user"))
    user_id = user.get("id")
    if user.get("deleted") is True:
        return None
    if isinstance(user_id, str) and user_id in _departed_users(deps):
        return None
    return {}


def handle_user_change(event: dict[str, Any], body: Body, context: BoltContext,
                       client: WebClient) -> None:
    """A deactivated user: recorded, and their active tokens posted once per departure to
    the alert channel (the outbox's drain posts it after the commit). Reactivated:
    forgotten."""
    user = mapping(event.get("user"))
    user_id, team_id = user.get("id"), body.get("team_id") or user.get("team_id")
    if not isinstance(user_id, str) or not isinstance(team_id, str) or not user_id:
        return
    deps = deps_of(context)
    gone = user.get("deleted") is True
    with deps.sessions.begin() as session:
        if gone:
            departed.note_departure(session, team_id=team_id, user_id=user_id, now=utcnow(),
                                    channel=deps.settings.tokenbot_alert_channel)
        else:
            departed.note_return(session, team_id=team_id, user_id=user_id)
    _note_locally(deps, user_id, gone=gone)


def _token_of_picker(action: dict[str, Any]) -> tuple[str, int | None]:
    """The token (and the version drawn) a post's picker is about: its block id names
    them (``departed_actions:{public id}:{version}``; a post drawn before the version was
    added names the token only)."""
    block_id = action.get("block_id")
    prefix = f"{BlockId.DEPARTED_ITEM_ACTIONS}:"
    if not isinstance(block_id, str) or not block_id.startswith(prefix):
        raise NotFoundError()
    public_id, _, version = block_id[len(prefix):].partition(":")
    if not public_id or (version and not version.isdigit()):
        raise NotFoundError()
    return public_id, int(version) if version else None


#: A change from a departure post: (what the post remembers, the new owner, the reply).
PostChange = Callable[[Session, tokens.Actor, dt.datetime], tuple[str, str | None, str]]


def _on_post(body: Body, context: BoltContext, client: WebClient, public_id: str,
             change: PostChange) -> None:
    """Run ``change(session, actor, now)`` -> (what the post remembers, to, reply), note
    it on the post, and redraw the post in place; the clicker gets the reply."""

    def noted(session: Session, actor: tokens.Actor, where: Where, now: dt.datetime) -> str:
        message = departed.posted(session, channel=where.channel, ts=where.ts, lock=True)
        if message is None:
            raise NotFoundError(_MISSING)
        acted, to, text = change(session, actor, now)
        departed.record_action(message=message, public_id=public_id, action=acted,
                               user_id=actor.user_id, to=to)
        return text

    act_on_post(body, context, client, missing=_MISSING, change=noted, redraw=_redraw_post)


_MISSING = "That message could not be found."


def _redraw_post(session: Session, where: Where, text: str | None = None) -> DigestRedraw:
    """The departure post as it now is (nothing to update when it is unknown)."""
    message = departed.posted(session, channel=where.channel, ts=where.ts)
    if message is None:
        return DigestRedraw(where=where, text=text)
    post = departed_post(departed.current_post(session, message=message))
    return DigestRedraw(where=where, headline=post.text, blocks=post.blocks, text=text)


def refuse_unfit(client: WebClient, user_id: object) -> None:
    """A bot or a deactivated account is refused, when ``users.info`` can tell (called
    after the acknowledgement; an answer it cannot read leaves it to the service)."""
    if not isinstance(user_id, str) or not user_id:
        return
    try:
        user = mapping(client.users_info(user=user_id).get("user"))
    except (SlackClientError, OSError):  # cannot tell: the service's own checks still hold
        return
    if user.get("is_bot") is True or user.get("deleted") is True:
        what = "a bot" if user.get("is_bot") is True else "deactivated"
        raise ValidationError(f"{mention(user_id)} is {what}; choose a person who is still "
                              "in the workspace.", field=owners.FIELD)


def handle_departed_reassign(body: Body, action: dict[str, Any], context: BoltContext,
                             client: WebClient) -> None:
    """An admin only (checked before Slack is asked about the pick), then a bot or a
    deactivated pick refused, then the reassignment at the version the post showed."""
    (public_id, version), new_owner = _token_of_picker(action), action.get("selected_user")
    if not owners.may_reassign(actor_from(body, deps_of(context).settings)):
        raise PermissionDeniedError("Only a workspace admin can reassign a token.")
    refuse_unfit(client, new_owner)

    def change(session: Session, actor: tokens.Actor, now: dt.datetime) -> tuple[str, str, str]:
        result = owners.reassign(session, actor=actor, public_id=public_id,
                                 new_owner=new_owner if isinstance(new_owner, str) else "",
                                 now=now, expected_version=version)
        return departed.Acted.REASSIGNED, result.after, _reassigned(result)

    _on_post(body, context, client, public_id, change)


def handle_departed_disable(body: Body, action: dict[str, Any], context: BoltContext,
                            client: WebClient) -> None:
    ref = RowRef.decode(action.get("value"))

    def change(session: Session, actor: tokens.Actor, now: dt.datetime) -> tuple[str, None, str]:
        return departed.Acted.DISABLED, None, disable_from_post(session, actor, ref, now)[1]

    _on_post(body, context, client, ref.public_id, change)


answer_departed_error = post_surface(_redraw_post)


def register(app: App) -> None:
    on_actions(app, [ActionId.REASSIGN], table.on_row(reassign_open), surface=table.answer_error)
    on_submission(app, CallbackId.REASSIGN, handle_reassign_submit, surface=modals.answer_error)
    on_event(app, "user_change", handle_user_change, surface=tell_nobody,
             answer=nothing_to_note)
    on_actions(app, [ActionId.DEPARTED_REASSIGN], handle_departed_reassign,
               surface=answer_departed_error)
    on_actions(app, [ActionId.DEPARTED_DISABLE], handle_departed_disable,
               surface=answer_departed_error)
