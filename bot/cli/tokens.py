"""`tokenbot tokens …`: the operator's view of the token registry.

The CLI acts as an operator (see :mod:`bot.cli.common`). Every change goes through the
service rules with the version just read, so a token changed in between is refused, not
overwritten. The warnings before a lifecycle action, the security note and when to
disable rather than delete are the guide's words from :mod:`bot.texts`, as in Slack.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from bot.cli import owners
from bot.cli.common import (
    PER_PAGE_MAX,
    Context,
    UsageError,
    actor_parent,
    ago,
    ask,
    date_arg,
    duration_arg,
    format_table,
    ident_arg,
    json_parent,
    open_context,
    per_page_arg,
    plain,
    positive_int,
    print_json,
    shorten,
    summary_of,
    team_parent,
    when,
)
from bot.dates import date_text, relative_expiry
from bot.models import Token
from bot.serialize import token_summary
from bot.services import listing
from bot.services import tokens
from bot.services.policy import Policy, policy_of
from bot.texts import (
    CONFIRMATIONS,
    DISABLE_VS_DELETE,
    DISABLE_VS_DELETE_TITLE,
    POLICY_EXCEPTION_HELP,
    ROTATE_OVERLAP_LINES,
    ROTATION_IN_PROGRESS_DONE,
    ROTATION_IN_PROGRESS_NOTE,
    SECURITY_NOTE,
    Lifecycle,
)


# -- parser ---------------------------------------------------------------------------


LIFECYCLE_HELP = {
    Lifecycle.DISABLE: "cut the token's access (reversible with enable)",
    Lifecycle.ENABLE: "give a disabled token its access back",
    Lifecycle.DELETE: "delete the token for good",
    Lifecycle.ROTATE: "replace the token's secret; prints the new one once",
}


def disable_vs_delete_help() -> str:
    """The guide's "when to disable vs delete", as a --help epilog."""
    lines = "\n".join(f"  - {line}" for line in DISABLE_VS_DELETE)
    return f"{DISABLE_VS_DELETE_TITLE}:\n{lines}"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    team, actor, as_json = team_parent(), actor_parent(), json_parent()

    group = subparsers.add_parser(
        "tokens",
        help="list, create, show, edit, disable, enable, delete, rotate, reveal, reassign tokens"
    )
    commands = group.add_subparsers(dest="tokens_command", metavar="ACTION", required=True)

    p = commands.add_parser("list", parents=[team, as_json], help="a page of the team's tokens")
    p.add_argument("--status", choices=[s.value for s in listing.StatusFilter],
                   help="only tokens with this status (expired: past their expiry date; "
                   "expiring: active and expiring within the largest TOKENBOT_ALERT_DAYS)")
    p.add_argument("--owner", type=ident_arg, metavar="U", help="only tokens owned by U")
    p.add_argument("--search", metavar="T", help="label contains T (literally, any case)")
    p.add_argument("--page", type=positive_int, default=1, metavar="N",
                   help="page number, newest tokens first (default: 1); a page past the "
                   "end is empty")
    p.add_argument("--per-page", type=per_page_arg, default=20, metavar="N",
                   help=f"tokens per page, from 1 to {PER_PAGE_MAX:,} (default: 20)")
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
    p.add_argument("--exception", metavar="REASON", help=POLICY_EXCEPTION_HELP)
    p.add_argument("--new-team", action="store_true",
                   help="the team (--team or TOKENBOT_TEAM_ID) is new to this database: "
                   "start it with this token (without it an unknown team is refused, so a "
                   "typo does not start a second team)")
    p.set_defaults(handler=cmd_create)

    p = commands.add_parser("show", parents=[team, as_json], help="one token's details")
    p.add_argument("id", metavar="ID")
    p.set_defaults(handler=cmd_show)

    p = commands.add_parser(
        "edit", parents=[team, actor, as_json],
        help="change label, scope or expiry (give at least one)",
    )
    p.add_argument("id", metavar="ID")
    p.add_argument("--label", metavar="L")
    p.add_argument("--scope", metavar="S")
    expiry = p.add_mutually_exclusive_group()
    expiry.add_argument("--expires", type=date_arg, metavar="YYYY-MM-DD")
    expiry.add_argument("--no-expiry", action="store_true", help="remove the expiry date")
    p.add_argument("--exception", metavar="REASON", help=POLICY_EXCEPTION_HELP)
    p.set_defaults(handler=cmd_edit)

    for action, text in LIFECYCLE_HELP.items():
        parents = [team, actor, as_json] if action is Lifecycle.ROTATE else [team, actor]
        explained = action in (Lifecycle.DISABLE, Lifecycle.DELETE)
        p = commands.add_parser(
            action.value,
            parents=parents,
            help=text,
            description=text[0].upper() + text[1:] + ".",
            epilog=disable_vs_delete_help() if explained else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("id", metavar="ID")
        p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
        if action is Lifecycle.ROTATE:
            p.add_argument(
                "--overlap", type=duration_arg, metavar="DURATION",
                help="keep the old secret working until the new one is first used, at most "
                     "this long (30m, 24h, 7d; from 1m to 30d; default: it stops at once)")
        p.set_defaults(handler=_lifecycle_handler(action))

    p = commands.add_parser(
        "reveal", parents=[team, actor], help="print the full secret (audited)"
    )
    p.add_argument("id", metavar="ID")
    p.set_defaults(handler=cmd_reveal)

    owners.register(commands, parents=[team, actor, as_json])


# -- formatting -----------------------------------------------------------------------


def _last_used(
    token: Token | listing.Listed, now: dt.datetime, *, exact: bool = False
) -> str:
    """When the token was last used: relative (and the UTC time when ``exact``) and by which
    introspection caller, or never."""
    if token.last_used_at is None:
        return "never"
    text = ago(token.last_used_at, now)
    if exact:
        text += f" ({when(token.last_used_at)} UTC)"
    return f"{text} by {token.last_used_by}" if token.last_used_by else text


def _expires(token: Token | listing.Listed) -> str:
    """The calendar date, as Slack shows it too (``bot.dates``)."""
    return date_text(token.expires_on) if token.expires_on else "never"


def _expires_relative(token: Token | listing.Listed, now: dt.datetime) -> str:
    if token.expires_on is None:
        return "never"
    return f"{date_text(token.expires_on)} ({relative_expiry(token.expires_on, now)})"


TOKEN_HEADERS = ("ID", "LABEL", "TOKEN", "SCOPE", "STATUS", "OWNER", "CREATED", "EXPIRES",
                 "LAST USED")


def _status(token: Token | listing.Listed, now: dt.datetime, over_policy: bool) -> str:
    return f"{token.display_status(now)}{', over policy' if over_policy else ''}"


def token_row(token: Token | listing.Listed, now: dt.datetime, *, over_policy: bool) -> list[str]:
    return [
        token.public_id,
        shorten(token.label),
        token.secret_masked,
        token.scope,
        _status(token, now, over_policy),
        token.owner,
        when(token.created_at),
        _expires_relative(token, now),
        _last_used(token, now),
    ]


def _describe(token: Token) -> str:
    return f'{token.public_id} "{token.label}"'


def _details(token: Token, now: dt.datetime, policy: Policy) -> str:
    pairs = [
        ("ID", token.public_id),
        ("Label", token.label),
        ("Token", token.secret_masked),
        ("Scope", token.scope),
        ("Status", _status(token, now, policy.breaks(token, now))),
        ("Owner", token.owner),
        ("Created", f"{when(token.created_at)} UTC by {token.created_by}"),
        ("Expires", _expires_relative(token, now)
         + (" (stops working at 00:00 UTC)" if token.expires_on else "")),
        ("Last used", _last_used(token, now, exact=True)),
    ]
    if token.policy_exception:
        pairs.append(("Policy", f"exception: {token.policy_exception}"))
    if token.rotating(now) and token.old_secret_until is not None:
        pairs.append(("Rotating", f"old secret {token.previous_secret_masked} works until "
                                  f"{when(token.old_secret_until)} UTC or until the new one is "
                                  "used"))
    return "\n".join(f"{name + ':':<11}{value}" for name, value in pairs)


def _print_secret(secret: str, token: Token, *, verb: str) -> None:
    print(f"{verb} token {_describe(token)} (scope {token.scope}, owner {token.owner}, "
          f"expires {_expires(token)}).")
    print("Its secret, shown this once (store it now; a later copy is possible with "
          f"`tokenbot tokens reveal {token.public_id}`, audited):")
    print()
    print(f"    {secret}")
    print()
    print(SECURITY_NOTE)


# -- commands -------------------------------------------------------------------------


def _read_page(session: Session, ctx: Context, args: argparse.Namespace) -> listing.TokenPage:
    return listing.list_tokens(
        session,
        team_id=ctx.team,
        now=ctx.now,
        filters=listing.TokenFilter(
            status=listing.StatusFilter(args.status) if args.status else None,
            owner=args.owner,
            search=args.search or "",
        ),
        expiring_days=ctx.settings.expiring_days,
        policy=policy_of(ctx.settings),
        page=args.page,
        per_page=args.per_page,
    )


def _print_page(page: listing.TokenPage, rows: list[list[str]], args: argparse.Namespace,
                *, past_end: bool) -> None:
    noun = "token" if page.total == 1 else "tokens"
    if past_end:
        pages = "page" if page.pages_text == "1" else "pages"
        print(f"Page {args.page:,} is past the end: there are {page.pages_text} {pages}, "
              f"{page.total_text} {noun}.")
        return
    if rows:
        print(format_table(TOKEN_HEADERS, rows))
    else:
        print("No tokens match." if (args.status or args.owner or args.search) else "No tokens.")
    print(f"page {page.page} of {page.pages_text}, {page.total_text} {noun}")


def cmd_list(args: argparse.Namespace) -> int:
    with open_context(args) as ctx, ctx.db.sessions.begin() as session:
        page = _read_page(session, ctx, args)
        # The service shows the last page for a page past the end (the table shrank under
        # a Slack user); here the page asked is answered, empty, so a loop stops.
        past_end = page.page != args.page or (args.page > 1 and not page.items)
        items = [] if past_end else page.items
        if args.json:
            print_json(
                {
                    "tokens": [token_summary(token, ctx.now,
                                             over_policy=token.public_id in page.over_policy)
                               for token in items],
                    "page": args.page,
                    "pages": page.pages,
                    "per_page": page.per_page,
                    "total": page.total,
                    "total_exact": page.total_exact,
                }
            )
            return 0
        rows = [token_row(token, ctx.now, over_policy=token.public_id in page.over_policy)
                for token in items]
    _print_page(page, rows, args, past_end=past_end)
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    with open_context(args) as ctx, ctx.db.sessions.begin() as session:
        created = tokens.create_token(
            session,
            box=ctx.db.box,
            actor=ctx.actor,
            label=args.label,
            scope=args.scope,
            scopes=ctx.settings.tokenbot_scopes,
            now=ctx.now,
            expires_on=args.expires,
            owner=args.owner,
            policy=policy_of(ctx.settings),
            exception=args.exception,
        )
        token, secret = created.token, created.secret
        summary = summary_of(ctx, token)
    if args.json:
        print_json({**summary, "secret": secret})
        print(SECURITY_NOTE, file=sys.stderr)
    else:
        _print_secret(secret, token, verb="Created")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with open_context(args) as ctx, ctx.db.sessions.begin() as session:
        token = tokens.get_token(session, team_id=ctx.team, public_id=args.id)
        policy = policy_of(ctx.settings)
        if args.json:
            print_json(summary_of(ctx, token))
        else:
            print(_details(token, ctx.now, policy))
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
    if args.exception is not None:
        changes["exception"] = args.exception
    if not changes:
        raise UsageError("Nothing to change: give --label, --scope, --expires YYYY-MM-DD, "
                         "--no-expiry or --exception.")
    with open_context(args) as ctx:
        with ctx.db.sessions.begin() as session:
            version = tokens.get_token(session, team_id=ctx.team, public_id=args.id).version
        with ctx.db.sessions.begin() as session:
            result = tokens.edit_token(
                session,
                actor=ctx.actor,
                public_id=args.id,
                expected_version=version,
                scopes=ctx.settings.tokenbot_scopes,
                now=ctx.now,
                policy=(policy := policy_of(ctx.settings)),
                **changes,
            )
            token = result.token
            summary = summary_of(ctx, token)
            details = _details(token, ctx.now, policy)
    if args.json:
        print_json(summary)
    elif result.changes:
        described = "; ".join(
            f"{name.replace('_on', '')}: {plain(before)} → {plain(after)}"
            for name, (before, after) in result.changes.items()
        )
        print(f"Updated {_describe(token)}: {described}.")
        print(details)
    else:
        print(f"Nothing changed: {_describe(token)} already has these values.")
    return 0


def _perform(
    action: Lifecycle, session: Session, ctx: Context, public_id: str, version: int,
    overlap: dt.timedelta | None = None,
) -> tuple[Token | None, str | None]:
    """Run one lifecycle action through the services; (token or None, new secret or None)."""
    common: dict[str, Any] = dict(
        actor=ctx.actor, public_id=public_id, expected_version=version, now=ctx.now
    )
    if action is Lifecycle.DISABLE:
        return tokens.disable_token(session, **common), None
    if action is Lifecycle.ENABLE:
        return tokens.enable_token(session, **common), None
    if action is Lifecycle.DELETE:
        tokens.delete_token(session, **common)
        return None, None
    if action is Lifecycle.ROTATE:
        created = tokens.rotate_token(session, box=ctx.db.box, overlap=overlap, **common)
        return created.token, created.secret
    raise AssertionError(action)


def confirm(action: Lifecycle, token: Token, now: dt.datetime,
            overlap: dt.timedelta | None = None) -> bool:
    """Show the guide's warning and ask; only y / yes (any case) goes ahead. A rotation
    that keeps the old secret working (``overlap``) says so instead, and rotating a token
    whose earlier rotation is in progress says that rotation's old secret stops."""
    text = CONFIRMATIONS[action]
    lines = list(text.lines)
    if action is Lifecycle.ROTATE:
        if overlap is not None:
            lines = [*ROTATE_OVERLAP_LINES]
        if token.rotating(now):
            lines.append(f"{ROTATION_IN_PROGRESS_NOTE} ({token.previous_secret_masked})")
    return ask(text.confirm, refusing=f"{action.value} {token.public_id}", before=[
        f"{text.verb} this token? {_describe(token)} ({token.secret_masked}, scope "
        f"{token.scope}, {token.display_status(now)})", *(f"  - {w}" for w in lines)])


def _lifecycle_handler(action: Lifecycle) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        with open_context(args) as ctx:
            with ctx.db.sessions.begin() as session:
                seen = tokens.get_token(session, team_id=ctx.team, public_id=args.id)
            overlap = getattr(args, "overlap", None)
            if not args.yes:
                # The rules first, so a refusal comes before the question: a session
                # closed uncommitted rolls back.
                with ctx.db.sessions() as check:
                    _perform(action, check, ctx, args.id, seen.version, overlap)
                if not confirm(action, seen, ctx.now, overlap):
                    print(f"Aborted: {_describe(seen)} was not changed.", file=sys.stderr)
                    return 1
            with ctx.db.sessions.begin() as session:
                token, secret = _perform(action, session, ctx, args.id, seen.version, overlap)
                summary = None if token is None else summary_of(ctx, token)
        if action is Lifecycle.ROTATE and token is not None and secret is not None:
            stopped = (ROTATION_IN_PROGRESS_DONE.format(masked=seen.previous_secret_masked)
                       if seen.rotating(ctx.now) else None)
            if getattr(args, "json", False):
                print_json({**(summary or {}), "secret": secret})
                print(SECURITY_NOTE, file=sys.stderr)
                if stopped:
                    print(stopped, file=sys.stderr)
            else:
                _print_secret(secret, token, verb="Rotated")
                if token.old_secret_until is not None:
                    print(f"The previous secret keeps working until "
                          f"{when(token.old_secret_until)} UTC or until the new one is first "
                          "used, whichever comes first.")
                else:
                    print("The previous secret no longer works.")
                if stopped:
                    print(stopped)
        elif action is Lifecycle.DISABLE:
            print(f"Disabled {_describe(seen)}: it no longer authenticates. "
                  f"`tokenbot tokens enable {seen.public_id}` reverses this.")
        elif action is Lifecycle.ENABLE:
            print(f"Enabled {_describe(seen)}: it is active again.")
        elif action is Lifecycle.DELETE:
            print(f"Deleted {_describe(seen)} for good.")
        return 0

    handler.__name__ = f"cmd_{action.value}"
    return handler


def cmd_reveal(args: argparse.Namespace) -> int:
    with open_context(args) as ctx, ctx.db.sessions.begin() as session:
        _, secret = tokens.reveal_token(
            session, box=ctx.db.box, actor=ctx.actor, public_id=args.id, now=ctx.now
        )
    print(secret)
    print(SECURITY_NOTE, file=sys.stderr)
    return 0
