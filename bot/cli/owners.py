"""`tokenbot tokens reassign ID --owner U [--yes]`: give a token a new owner (the operator
acts as an admin); the old and the new owner are told by direct message (not one who has
left)."""

from __future__ import annotations

import argparse
import sys

from bot.cli.common import ask, ident_arg, open_context, print_json, summary_of
from bot.services import owners
from bot.services import tokens


def register(commands: argparse._SubParsersAction,  # type: ignore[type-arg]
             *, parents: list[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "reassign", parents=parents,
        help="give the token a new owner (both owners are told, unless one has left)",
        description="Give the token a new owner: its reminders, notices and rights follow "
                    "the owner. The old and the new owner get a direct message.")
    p.add_argument("id", metavar="ID")
    p.add_argument("--owner", required=True, type=ident_arg, metavar="U",
                   help="the Slack user id of the new owner")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.set_defaults(handler=cmd_reassign)


def cmd_reassign(args: argparse.Namespace) -> int:
    with open_context(args) as ctx:
        with ctx.db.sessions.begin() as session:
            seen = tokens.get_token(session, team_id=ctx.team, public_id=args.id)
            before, version, label = seen.owner, seen.version, seen.label
        if not args.yes:
            # The rules first, so a refusal comes before the question (nothing written).
            with ctx.db.sessions() as check:
                owners.check_new_owner(check, actor=ctx.actor, public_id=args.id,
                                       new_owner=args.owner, expected_version=version)
            what = f'reassign {args.id} "{label}" from {before} to {args.owner}'
            if not ask(what[0].upper() + what[1:], refusing=what):
                print(f'Aborted: {args.id} "{label}" was not changed.', file=sys.stderr)
                return 1
        with ctx.db.sessions.begin() as session:
            result = owners.reassign(session, actor=ctx.actor, public_id=args.id,
                                     new_owner=args.owner, now=ctx.now,
                                     expected_version=version)
            summary = summary_of(ctx, result.token)
    if args.json:
        print_json(summary)
    else:
        told = " and ".join(result.told) or "nobody"  # not one who has left
        print(f'Reassigned {args.id} "{label}" from {result.before} to {result.after}; '
              f"told: {told}.")
    return 0
