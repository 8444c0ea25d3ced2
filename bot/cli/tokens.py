"""`tokenbot tokens …` and `tokenbot audit`: the operator's view of the token registry.

The CLI acts as an operator: an admin of the chosen team (``--team``, else
``TOKENBOT_TEAM_ID``, else the only team in the database), audited with source ``cli`` and
the user given by ``--as`` (default ``operator``). Every change goes through the service
rules with the version just read, so a token changed in between is refused, not
overwritten.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import re
import sys
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import select, union
from sqlalchemy.orm import Session

from bot.config import Settings, load_settings
from bot.db import Database
from bot.errors import ConfigurationError, TokenbotError
from bot.models import AuditEvent, AuditSource, DisplayStatus, Token
from bot.serialize import audit_summary, token_summary
from bot.services import audit as audit_svc
from bot.services import tokens as svc

log = logging.getLogger(__name__)

DEFAULT_ACTOR = "operator"
LABEL_COLUMN_MAX = 40
PER_PAGE_MAX = 1000
ID_MAX = 32

SECURITY_NOTE = (
    "Security note: Only copy tokens when necessary, and never share them publicly or "
    "commit them to version control."
)


@dataclass(frozen=True)
class Confirmation:
    question: str
    warnings: tuple[str, ...]
    confirm: str


# The guide's confirmation dialogs (SPEC "Lifecycle rules"), word for word where it has them.
CONFIRMATIONS: dict[str, Confirmation] = {
    "disable": Confirmation(
        question="Disable this token?",
        warnings=(
            "Any processes using this token will immediately lose access.",
            "CI/CD pipelines and integrations will fail to authenticate.",
            "This action can be reversed by enabling the token.",
        ),
        confirm="Disable Token",
    ),
    "enable": Confirmation(
        question="Enable this token?",
        warnings=(
            "Integrations and automation using this token will regain access.",
            "The token will be immediately active.",
        ),
        confirm="Enable Token",
    ),
    "delete": Confirmation(
        question="Delete this token?",
        warnings=(
            "This action cannot be undone.",
            "Any processes using this token will immediately stop working.",
            "CI/CD pipelines, automation scripts, and integrations will fail.",
        ),
        confirm="Delete Token",
    ),
    "rotate": Confirmation(
        question="Rotate this token's secret?",
        warnings=(
            "A new secret replaces the current one, which stops working immediately.",
            "Any processes using the current secret will fail to authenticate until they "
            "are given the new one.",
        ),
        confirm="Rotate Token",
    ),
}


class ConfirmationRequired(TokenbotError):
    """A destructive command was run without --yes where nobody can answer a prompt."""


# -- argument types -------------------------------------------------------------------


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def date_arg(text: str) -> dt.date:
    """``YYYY-MM-DD``, or a clear argparse error."""
    value = text.strip()
    if _DATE_RE.match(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a date; write it as YYYY-MM-DD (for example 2027-01-31)"
    )


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return value


def per_page_arg(text: str) -> int:
    value = positive_int(text)
    if value > PER_PAGE_MAX:
        raise argparse.ArgumentTypeError(f"at most {PER_PAGE_MAX} tokens per page")
    return value


def ident_arg(text: str) -> str:
    """A Slack id or similar handle: no spaces, 1-32 characters."""
    value = text.strip()
    if not value or len(value) > ID_MAX or any(ch.isspace() for ch in value):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an id: use 1-{ID_MAX} characters without spaces "
            "(a Slack id such as T0123ABCD or U0123ABCD)"
        )
    return value


# -- parser ---------------------------------------------------------------------------


def _team_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--team",
        type=ident_arg,
        metavar="T",
        help="Slack team id to act on (default: TOKENBOT_TEAM_ID, else the only team in "
        "the database)",
    )
    return parent


def _actor_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--as",
        dest="as_user",
        type=ident_arg,
        default=DEFAULT_ACTOR,
        metavar="U",
        help=f"who the audit log names as the actor (default: {DEFAULT_ACTOR})",
    )
    return parent


def _json_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help="print JSON")
    return parent


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    team, actor, as_json = _team_parent(), _actor_parent(), _json_parent()

    tokens = subparsers.add_parser(
        "tokens", help="list, create, edit, disable, enable, delete, rotate, reveal tokens"
    )
    commands = tokens.add_subparsers(dest="tokens_command", metavar="ACTION", required=True)

    p = commands.add_parser("list", parents=[team, as_json], help="a page of the team's tokens")
    p.add_argument("--status", choices=[s.value for s in DisplayStatus],
                   help="only tokens with this status (expired: past their expiry date)")
    p.add_argument("--owner", type=ident_arg, metavar="U", help="only tokens created by U")
    p.add_argument("--search", metavar="T", help="label contains T (literally, any case)")
    p.add_argument("--page", type=positive_int, default=1, metavar="N",
                   help="page number, newest tokens first (default: 1)")
    p.add_argument("--per-page", type=per_page_arg, default=20, metavar="N",
                   help=f"tokens per page (default: 20, at most {PER_PAGE_MAX})")
    p.set_defaults(handler=cmd_list)

    p = commands.add_parser(
        "create", parents=[team, actor, as_json], help="create a token; prints its secret once"
    )
    p.add_argument("--label", required=True, metavar="L", help="the token's name (1-100 chars)")
    p.add_argument("--scope", required=True, metavar="S",
                   help="one of the roles in TOKENBOT_SCOPES (default read, write, admin)")
    p.add_argument("--expires", type=date_arg, metavar="YYYY-MM-DD",
                   help="stops working at 00:00 UTC of this date (default: never)")
    p.add_argument("--owner", required=True, type=ident_arg, metavar="U",
                   help="the Slack user id who owns the token")
    p.set_defaults(handler=cmd_create)

    p = commands.add_parser("show", parents=[team, as_json], help="one token's details")
    p.add_argument("id", metavar="ID")
    p.set_defaults(handler=cmd_show)

    p = commands.add_parser(
        "edit", parents=[team, actor, as_json], help="change label, scope or expiry"
    )
    p.add_argument("id", metavar="ID")
    p.add_argument("--label", metavar="L")
    p.add_argument("--scope", metavar="S")
    expiry = p.add_mutually_exclusive_group()
    expiry.add_argument("--expires", type=date_arg, metavar="YYYY-MM-DD")
    expiry.add_argument("--no-expiry", action="store_true", help="remove the expiry date")
    p.set_defaults(handler=cmd_edit)

    helps = {
        "disable": "cut the token's access (reversible with enable)",
        "enable": "give a disabled token its access back",
        "delete": "delete the token for good",
        "rotate": "replace the token's secret; prints the new one once",
    }
    for action, text in helps.items():
        parents = [team, actor, as_json] if action == "rotate" else [team, actor]
        p = commands.add_parser(action, parents=parents, help=text)
        p.add_argument("id", metavar="ID")
        p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
        p.set_defaults(handler=_lifecycle_handler(action))

    p = commands.add_parser(
        "reveal", parents=[team, actor], help="print the full secret (audited)"
    )
    p.add_argument("id", metavar="ID")
    p.set_defaults(handler=cmd_reveal)

    p = subparsers.add_parser("audit", parents=[team, as_json], help="the audit log, newest first")
    p.add_argument("--token", metavar="ID", help="only events of this token")
    p.add_argument("--limit", type=per_page_arg, default=50, metavar="N",
                   help="at most N events (default: 50)")
    p.set_defaults(handler=cmd_audit)


# -- context --------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    settings: Settings
    db: Database
    team: str
    actor: svc.Actor
    now: dt.datetime


def _teams_in(session: Session) -> list[str]:
    query = union(
        select(Token.team_id).distinct(), select(AuditEvent.team_id).distinct()
    ).limit(3)
    return sorted(session.scalars(query))


def resolve_team(db: Database, settings: Settings, explicit: str | None) -> str:
    if explicit:
        return explicit
    if settings.tokenbot_team_id:
        return settings.tokenbot_team_id
    with db.sessions() as session:
        teams = _teams_in(session)
    if len(teams) == 1:
        return teams[0]
    if not teams:
        raise ConfigurationError(
            "No team to act on: the database has no tokens yet. Pass --team T (a Slack team "
            "id such as T0123ABCD) or set TOKENBOT_TEAM_ID."
        )
    shown = ", ".join(teams[:2]) + (", …" if len(teams) > 2 else "")
    raise ConfigurationError(
        f"The database holds several teams ({shown}): pass --team T or set TOKENBOT_TEAM_ID."
    )


@contextmanager
def database_errors() -> Iterator[None]:
    """A database that cannot be reached or is not migrated: one clear line, no traceback."""
    try:
        yield
    except sa_exc.ArgumentError as exc:
        raise ConfigurationError(f"DATABASE_URL is not a usable SQLAlchemy URL: {exc}") from None
    except sa_exc.DBAPIError as exc:
        log.debug("database error", exc_info=True)
        first = str(exc.orig or exc).strip().splitlines()[0] if str(exc.orig or exc) else ""
        raise ConfigurationError(
            f"The database refused the request ({type(exc.orig).__name__}: {first}). "
            "Check DATABASE_URL, that the server is running, and run `tokenbot db upgrade`."
        ) from None


def quiet_migrations(args: argparse.Namespace) -> None:
    """Alembic's per-run INFO lines are noise at the shell unless -v was given."""
    if not getattr(args, "verbose", False):
        logging.getLogger("alembic").setLevel(logging.WARNING)


@contextmanager
def open_context(args: argparse.Namespace) -> Iterator[Context]:
    quiet_migrations(args)
    settings = load_settings()
    with database_errors():
        database = Database(settings)
        try:
            team = resolve_team(database, settings, getattr(args, "team", None))
            actor = svc.Actor(
                team_id=team,
                user_id=getattr(args, "as_user", DEFAULT_ACTOR),
                is_admin=True,
                source=AuditSource.CLI,
            )
            yield Context(settings, database, team, actor, dt.datetime.now(dt.timezone.utc))
        finally:
            database.dispose()


# -- formatting -----------------------------------------------------------------------


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _when(value: dt.datetime | None, missing: str = "never") -> str:
    if value is None:
        return missing
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def _ago(value: dt.datetime, now: dt.datetime) -> str:
    """Relative time, e.g. "3 days ago" (the largest whole unit)."""
    seconds = int((now - value).total_seconds())
    if seconds < 60:
        return "just now"
    for unit, size in (("year", 365 * 86400), ("month", 30 * 86400), ("day", 86400),
                       ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"


def _last_used(token: Token | svc.Listed, now: dt.datetime, *, exact: bool = False) -> str:
    """When the token was last used: relative (and the UTC time when ``exact``), or never."""
    if token.last_used_at is None:
        return "never"
    ago = _ago(token.last_used_at, now)
    return f"{ago} ({_when(token.last_used_at)} UTC)" if exact else ago


def _expires(token: Token | svc.Listed) -> str:
    return token.expires_on.isoformat() if token.expires_on else "never"


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Terminal columns: wide (CJK, emoji) characters take two, combining marks none."""
    return sum(_char_width(ch) for ch in text)


def _short(text: str, width: int = LABEL_COLUMN_MAX) -> str:
    if display_width(text) <= width:
        return text
    kept, used = [], 0
    for ch in text:
        if used + _char_width(ch) > width - 1:
            break
        kept.append(ch)
        used += _char_width(ch)
    return "".join(kept) + "…"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [display_width(h) for h in headers]
    for row in rows:
        widths = [max(w, display_width(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(
            cell + " " * (width - display_width(cell))
            for cell, width in zip(line, widths, strict=True)
        ).rstrip()
        for line in [list(headers), *rows]
    ]
    return "\n".join(lines)


TOKEN_HEADERS = ("ID", "LABEL", "TOKEN", "SCOPE", "STATUS", "CREATED", "EXPIRES", "LAST USED")


def token_row(token: Token | svc.Listed, now: dt.datetime) -> list[str]:
    return [
        token.public_id,
        _short(token.label),
        token.secret_masked,
        token.scope,
        str(token.display_status(now)),
        _when(token.created_at),
        _expires(token),
        _last_used(token, now),
    ]


def _describe(token: Token) -> str:
    return f'{token.public_id} "{token.label}"'


def _details(token: Token, now: dt.datetime) -> str:
    pairs = [
        ("ID", token.public_id),
        ("Label", token.label),
        ("Token", token.secret_masked),
        ("Scope", token.scope),
        ("Status", str(token.display_status(now))),
        ("Created", f"{_when(token.created_at)} UTC by {token.created_by}"),
        ("Expires", _expires(token) + (" (00:00 UTC)" if token.expires_on else "")),
        ("Last used", _last_used(token, now, exact=True)),
    ]
    return "\n".join(f"{name + ':':<11}{value}" for name, value in pairs)


def _print_secret(secret: str, token: Token, *, verb: str) -> None:
    print(f"{verb} token {_describe(token)} (scope {token.scope}, owner {token.created_by}, "
          f"expires {_expires(token)}).")
    print("Its secret, shown this once (store it now; a later copy is possible with "
          f"`tokenbot tokens reveal {token.public_id}`, audited):")
    print()
    print(f"    {secret}")
    print()
    print(SECURITY_NOTE)


def _audit_details(details: dict[str, Any]) -> str:
    before, after = details.get("before"), details.get("after")
    if isinstance(before, dict) and isinstance(after, dict):
        return "; ".join(
            f"{key}: {_plain(before.get(key))} → {_plain(after.get(key))}" for key in after
        )
    return ", ".join(f"{key}={_plain(value)}" for key, value in details.items())


def _plain(value: Any) -> str:
    return "none" if value is None else str(value)


# -- commands -------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    with open_context(args) as ctx, ctx.db.sessions.begin() as session:
        page = svc.list_tokens(
            session,
            team_id=ctx.team,
            now=ctx.now,
            status=DisplayStatus(args.status) if args.status else None,
            owner=args.owner,
            search=args.search,
            page=args.page,
            per_page=args.per_page,
        )
        if args.json:
            _print_json(
                {
                    "tokens": [token_summary(token, ctx.now) for token in page.items],
                    "page": page.page,
                    "pages": page.pages,
                    "per_page": page.per_page,
                    "total": page.total,
                    "total_exact": page.total_exact,
                }
            )
            return 0
        rows = [token_row(token, ctx.now) for token in page.items]
    if rows:
        print(format_table(TOKEN_HEADERS, rows))
    else:
        print("No tokens match." if (args.status or args.owner or args.search) else "No tokens.")
    noun = "token" if page.total == 1 else "tokens"
    print(f"page {page.page} of {page.pages_text}, {page.total_text} {noun}")
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    with open_context(args) as ctx, ctx.db.sessions.begin() as session:
        created = svc.create_token(
            session,
            box=ctx.db.box,
            actor=ctx.actor,
            label=args.label,
            scope=args.scope,
            scopes=ctx.settings.tokenbot_scopes,
            now=ctx.now,
            expires_on=args.expires,
            owner=args.owner,
        )
        token, secret = created.token, created.secret
        summary = token_summary(token, ctx.now)
    if args.json:
        _print_json({**summary, "secret": secret})
        print(SECURITY_NOTE, file=sys.stderr)
    else:
        _print_secret(secret, token, verb="Created")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with open_context(args) as ctx, ctx.db.sessions.begin() as session:
        token = svc.get_token(session, team_id=ctx.team, public_id=args.id)
        if args.json:
            _print_json(token_summary(token, ctx.now))
        else:
            print(_details(token, ctx.now))
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    if args.label is not None:
        changes["label"] = args.label
    if args.scope is not None:
        changes["scope"] = args.scope
    if args.no_expiry:
        changes["expires_on"] = None
    elif args.expires is not None:
        changes["expires_on"] = args.expires
    if not changes:
        raise TokenbotError(
            "Nothing to change: give --label, --scope, --expires YYYY-MM-DD or --no-expiry."
        )
    with open_context(args) as ctx:
        with ctx.db.sessions.begin() as session:
            version = svc.get_token(session, team_id=ctx.team, public_id=args.id).version
        with ctx.db.sessions.begin() as session:
            result = svc.edit_token(
                session,
                actor=ctx.actor,
                public_id=args.id,
                expected_version=version,
                scopes=ctx.settings.tokenbot_scopes,
                now=ctx.now,
                **changes,
            )
            token = result.token
            summary = token_summary(token, ctx.now)
            details = _details(token, ctx.now)
    if args.json:
        _print_json(summary)
    elif result.changes:
        described = "; ".join(
            f"{name.replace('_on', '')}: {_plain(before)} → {_plain(after)}"
            for name, (before, after) in result.changes.items()
        )
        print(f"Updated {_describe(token)}: {described}.")
        print(details)
    else:
        print(f"Nothing changed: {_describe(token)} already has these values.")
    return 0


def _perform(
    action: str, session: Session, ctx: Context, public_id: str, version: int
) -> tuple[Token | None, str | None]:
    """Run one lifecycle action through the services; (token or None, new secret or None)."""
    common: dict[str, Any] = dict(
        actor=ctx.actor, public_id=public_id, expected_version=version, now=ctx.now
    )
    if action == "disable":
        return svc.disable_token(session, **common), None
    if action == "enable":
        return svc.enable_token(session, **common), None
    if action == "delete":
        svc.delete_token(session, **common)
        return None, None
    if action == "rotate":
        created = svc.rotate_token(session, box=ctx.db.box, **common)
        return created.token, created.secret
    raise AssertionError(action)


def _check_allowed(action: str, ctx: Context, public_id: str, version: int) -> None:
    """Run the action's rules and roll back, so a refusal comes before the question."""
    session = ctx.db.sessions()
    try:
        _perform(action, session, ctx, public_id, version)
    finally:
        session.rollback()
        session.close()


def confirm(action: str, token: Token, now: dt.datetime) -> bool:
    """Show the guide's warning and ask; only y / yes (any case) goes ahead."""
    text = CONFIRMATIONS[action]
    if not sys.stdin or not sys.stdin.isatty():
        raise ConfirmationRequired(
            f"Refusing to {action} {token.public_id} without confirmation: stdin is not a "
            "terminal, so nobody can answer. Pass --yes to confirm."
        )
    err = sys.stderr
    print(f"{text.question} {_describe(token)} ({token.secret_masked}, scope {token.scope}, "
          f"{token.display_status(now)})", file=err)
    for warning in text.warnings:
        print(f"  - {warning}", file=err)
    print(f"{text.confirm}? [y/N] ", end="", file=err, flush=True)
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def _lifecycle_handler(action: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        with open_context(args) as ctx:
            with ctx.db.sessions.begin() as session:
                seen = svc.get_token(session, team_id=ctx.team, public_id=args.id)
            if not args.yes:
                _check_allowed(action, ctx, args.id, seen.version)
                if not confirm(action, seen, ctx.now):
                    print(f"Aborted: {_describe(seen)} was not changed.", file=sys.stderr)
                    return 1
            with ctx.db.sessions.begin() as session:
                token, secret = _perform(action, session, ctx, args.id, seen.version)
                summary = token_summary(token, ctx.now) if token is not None else None
        if action == "rotate" and token is not None and secret is not None:
            if getattr(args, "json", False):
                _print_json({**(summary or {}), "secret": secret})
                print(SECURITY_NOTE, file=sys.stderr)
            else:
                _print_secret(secret, token, verb="Rotated")
                print("The previous secret no longer works.")
        elif action == "disable":
            print(f"Disabled {_describe(seen)}: it no longer authenticates. "
                  f"`tokenbot tokens enable {seen.public_id}` reverses this.")
        elif action == "enable":
            print(f"Enabled {_describe(seen)}: it is active again.")
        elif action == "delete":
            print(f"Deleted {_describe(seen)} for good.")
        return 0

    handler.__name__ = f"cmd_{action}"
    return handler


def cmd_reveal(args: argparse.Namespace) -> int:
    with open_context(args) as ctx, ctx.db.sessions.begin() as session:
        _, secret = svc.reveal_token(
            session, box=ctx.db.box, actor=ctx.actor, public_id=args.id, now=ctx.now
        )
    print(secret)
    print(SECURITY_NOTE, file=sys.stderr)
    return 0


AUDIT_HEADERS = ("TIME", "ACTOR", "SOURCE", "ACTION", "TOKEN", "DETAILS")


def cmd_audit(args: argparse.Namespace) -> int:
    with open_context(args) as ctx, ctx.db.sessions.begin() as session:
        events = audit_svc.list_events(
            session, team_id=ctx.team, token_public_id=args.token, limit=args.limit
        )
        rows = [audit_summary(event) for event in events]
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("No audit events.")
        return 0
    print(
        format_table(
            AUDIT_HEADERS,
            [
                [
                    _when(event.at),
                    event.actor,
                    str(event.source),
                    str(event.action),
                    event.token_public_id or "-",
                    _audit_details(event.details or {}),
                ]
                for event in events
            ],
        )
    )
    return 0


__all__ = ["register", "resolve_team", "open_context", "database_errors", "quiet_migrations"]
