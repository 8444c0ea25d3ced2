"""`tokenbot audit`: the team's audit log, newest first."""

from __future__ import annotations

import argparse
from typing import Any

from bot.cli.common import (
    format_table,
    json_parent,
    open_context,
    per_page_arg,
    plain,
    print_json,
    team_parent,
    when,
)
from bot.serialize import audit_summary, timestamps
from bot.services import audit as audit_svc

AUDIT_HEADERS = ("TIME", "ACTOR", "SOURCE", "ACTION", "TOKEN", "DETAILS")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "audit", parents=[team_parent(), json_parent()], help="the audit log, newest first"
    )
    p.add_argument("--token", metavar="ID", help="only events of this token")
    p.add_argument("--limit", type=per_page_arg, default=50, metavar="N",
                   help="at most N events, from 1 to 1,000 (default: 50)")
    p.set_defaults(handler=cmd_audit)


def audit_details(details: dict[str, Any]) -> str:
    """An event's details in one line: "label: a → b; scope: …" for what changed, then
    the rest ("old_works_until=…")."""
    before, after = details.get("before"), details.get("after")
    changes = ""
    if isinstance(before, dict) and isinstance(after, dict):
        changes = "; ".join(
            f"{key}: {plain(before.get(key))} → {plain(after.get(key))}" for key in after
        )
        details = {k: v for k, v in details.items() if k not in ("before", "after")}
    rest = ", ".join(f"{key}={plain(value)}" for key, value in details.items())
    return "; ".join(part for part in (changes, rest) if part)


def cmd_audit(args: argparse.Namespace) -> int:
    with open_context(args) as ctx, ctx.db.sessions.begin() as session:
        events = audit_svc.list_events(
            session, team_id=ctx.team, token_public_id=args.token, limit=args.limit
        )
        rows = [audit_summary(event) for event in events]
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("No audit events.")
        return 0
    print(
        format_table(
            AUDIT_HEADERS,
            [
                [
                    when(event.at),
                    event.actor,
                    str(event.source),
                    str(event.action),
                    event.token_public_id or "-",
                    audit_details(timestamps(event.details or {})),
                ]
                for event in events
            ],
        )
    )
    return 0
