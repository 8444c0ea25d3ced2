"""`tokenbot alerts run [--dry-run] [--now ISO-8601] [--json]`: one expiry-alert pass;
`tokenbot alerts status [--json]`: what the outbox holds now."""

from __future__ import annotations

import argparse
import datetime as dt
from dataclasses import asdict
from typing import Any

from bot.config import load_settings
from bot.db import Database
from bot.errors import ConfigurationError
from bot.models import utcnow
from bot.serialize import moment, timestamp, timestamps
from bot.services.outbox_status import PENDING_STATES, STATES, OutboxReport

#: The moments a pass may be run as: its date arithmetic (thresholds, leases, 90-day
#: purges) stays well inside what a date can hold.
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.timezone.utc)


def _moment(text: str) -> dt.datetime:
    try:
        value = moment(text)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(
            f"not an ISO-8601 date-time: {text!r} (e.g. 2026-12-24T09:00:00Z)"
        ) from None
    return value


def _about(token: dict) -> str:  # type: ignore[type-arg]
    """One line about what a message tells of a token."""
    if token["kind"] == "departed_owner":
        return f"{token.get('total')} token(s) of {token.get('user')}: departed owner"
    if token.get("id") is None:  # a message about many tokens (a hygiene digest)
        return f"{token['kind'].replace('_', ' ')}: {token.get('label', '')}"
    name = f"{token['label']} ({token['id']}"
    if token["kind"] != "expiry":
        return f"{name}): {token['kind'].replace('_', ' ')}"
    when = "expired" if token["threshold_days"] == 0 else f"{token['threshold_days']}-day"
    return f"{name}, {token['masked']}) expires {token['expires_at'][:10]}: {when} reminder"


def _print_hygiene(report: dict, dry_run: bool) -> None:  # type: ignore[type-arg]
    if report.get("hygiene_digests") or report.get("dormant_disabled"):
        queue, disable = ("would queue", "would disable") if dry_run else ("queued", "disabled")
        print(f"Token hygiene: {queue} {report['hygiene_digests']} digest(s); "
              f"{disable} {report['dormant_disabled']} dormant token(s)")


def _print_human(report: dict, dry_run: bool) -> None:  # type: ignore[type-arg]
    verb = "would post" if dry_run else "posted"
    for dest in report["destinations"]:
        shown = dest["destination"]
        where = f"#{shown}" if dest["kind"] == "channel" else f"DM {shown}"
        line = (f"{where}: {verb} {dest['messages']} message(s) about "
                f"{len(dest['tokens'])} token(s)")
        if dest["skipped"]:
            line += f", skipped {dest['skipped']}"
        if dest.get("recovered"):
            line += f", {dest['recovered']} found already posted (marked sent)"
        if dest["failed"]:
            line += f", {dest['failed']} failed ({dest['error']}), retried later"
            if dest.get("uncertain"):
                line += f" ({dest['uncertain']} maybe posted: Slack's history is read first)"
        elif dest.get("error"):
            line += f" ({dest['error']})"
        print(line)
        for token in dest["tokens"]:
            print(f"  - {_about(token)}")
    if report.get("rotations_ended"):
        verb = "would end" if dry_run else "ended"
        print(f"Rotations: {verb} {report['rotations_ended']} whose overlap ran out")
    if report.get("departed"):
        print(f"Owners: {report['departed']} found deactivated by the weekly check; their "
              "tokens are posted to the alert channel")
    _print_hygiene(report, dry_run)
    if dry_run:
        print(
            f"Dry run at {report['now']}: {report['messages']} message(s) would be posted; "
            "nothing was posted or recorded."
        )
    else:
        print(
            f"Alert pass at {report['now']}: {report['messages']} message(s) posted, "
            f"{report['sent']} alert(s) sent, {report['skipped']} skipped, "
            f"{report['failed']} failed (retried on a later pass), "
            f"{report['recovered']} found already posted."
        )


def cmd_run(args: argparse.Namespace) -> int:
    from bot.alerts.scheduler import run_pass
    from bot.cli.common import database_errors, print_json, quiet_migrations
    from bot.slack.client import make_web_client

    if args.now is not None and not EARLIEST <= args.now < LATEST:
        raise ConfigurationError(
            f"--now {timestamp(args.now)} is out of range: give a moment from "
            f"{EARLIEST:%Y-%m-%d} to before {LATEST:%Y-%m-%d}."
        )
    settings = load_settings()
    client = None
    if not args.dry_run:
        if settings.slack_bot_token is None or not settings.slack_bot_token.get_secret_value():
            raise ConfigurationError(
                "SLACK_BOT_TOKEN is required to post expiry alerts "
                "(or use --dry-run to see what would be posted)."
            )
        client = make_web_client(settings)
    now = args.now or utcnow()
    quiet_migrations(args)
    with database_errors():  # unreachable or not migrated: one clear line
        database = Database(settings)
        try:
            report = run_pass(
                settings=settings, database=database, client=client, now=now,
                dry_run=args.dry_run,
            )
        except OverflowError:  # --now with TOKENBOT_ALERT_DAYS thresholds past year 9999
            if args.now is None:
                raise
            raise ConfigurationError(
                f"--now {now:%Y-%m-%d} is too far out for the alert thresholds "
                "(TOKENBOT_ALERT_DAYS): the dates they give do not exist."
            ) from None
        finally:
            database.dispose()
    # Every moment in the report as the other JSON outputs write it (bot.serialize).
    data = timestamps(report.to_dict())
    if args.json:
        print_json(data)
    else:
        _print_human(data, args.dry_run)
    return 1 if report.failed else 0


def status_data(report: OutboxReport) -> dict[str, Any]:
    """The report as ``alerts status --json`` prints it."""
    kinds = [{"kind": k.kind, **k.counts, "pending": k.pending,
              "oldest_pending": k.oldest_pending, "next_retry": k.next_retry}
             for _, k in sorted(report.kinds.items())]
    destinations = [{"kind": d.kind, "audience": d.audience, "destination": d.destination,
                     **d.counts, "oldest_pending": d.oldest_pending,
                     "next_retry": d.next_retry, "last_error": d.last_error,
                     "attempts": d.attempts}
                    for d in report.destinations]
    given_up = [asdict(g) for g in report.given_up]
    return timestamps({"now": report.now, "kinds": kinds, "destinations": destinations,
                       "given_up": given_up})


def _print_status(data: dict[str, Any]) -> None:
    from bot.cli.common import format_table

    def cell(value: Any) -> str:
        return "-" if value is None else str(value).replace("T", " ").removesuffix("Z")

    print(f"Outbox at {cell(data['now'])} UTC, per kind:")
    print(format_table(
        ["KIND", *(s.upper() for s in STATES), "OLDEST PENDING", "NEXT RETRY"],
        [[k["kind"], *(str(k[s]) for s in STATES), cell(k["oldest_pending"]),
          cell(k["next_retry"])] for k in data["kinds"]]))
    _print_given_up(data["given_up"])
    stuck = [d for d in data["destinations"] if any(d[s] for s in PENDING_STATES)]
    if not stuck:
        print("Nothing pending.")
        return
    print("\nPending, per destination:")
    print(format_table(
        ["KIND", "DESTINATION", *(s.upper() for s in PENDING_STATES), "OLDEST", "NEXT RETRY",
         "LAST ERROR"],
        [[d["kind"], _where(d),
          *(str(d[s]) for s in PENDING_STATES), cell(d["oldest_pending"]),
          cell(d["next_retry"]),
          f"{d['last_error']} ({d['attempts']} tries)" if d["last_error"] else "-"]
         for d in stuck]))


def _where(d: dict[str, Any]) -> str:
    return f"{'#' if d['audience'] == 'channel' else 'DM '}{d['destination']}"


def _print_given_up(given_up: list[dict[str, Any]]) -> None:
    """Destinations whose messages were closed unsent after refusing them too often."""
    from bot.cli.common import format_table

    if given_up:
        print("\nGiven up (closed unsent after repeated refusals), per destination:")
        print(format_table(["KIND", "DESTINATION", "MESSAGES", "LAST ERROR"],
                           [[g["kind"], _where(g), str(g["count"]),
                             f"{g['last_error']} ({g['attempts']} tries)"]
                            for g in given_up]))


def cmd_status(args: argparse.Namespace) -> int:
    from bot.cli.common import database_errors, print_json, quiet_migrations
    from bot.services.outbox_status import outbox_report

    settings = load_settings()
    quiet_migrations(args)
    with database_errors():
        database = Database(settings)
        try:
            with database.sessions() as session:
                data = status_data(outbox_report(session, now=utcnow()))
        finally:
            database.dispose()
    if args.json:
        print_json(data)
    else:
        _print_status(data)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    alerts = subparsers.add_parser(
        "alerts", help="expiry alerts",
        description="Expiry reminders and the outbox (see docs/OPERATIONS.md)."
    )
    sub = alerts.add_subparsers(dest="alerts_command", metavar="COMMAND", required=True)
    run = sub.add_parser(
        "run",
        help="run one alert pass now",
        description=(
            "Post the expiry reminders now due (digests per channel and DMs to owners), "
            "end rotations whose overlap ran out, send rotation notices and dead-secret "
            "alarms and the weekly token hygiene digests, exactly as the scheduler does. "
            "Safe to run while `tokenbot serve` runs: each reminder is posted once. Exit "
            "status 1 when a post failed (it is retried on a later pass)."
        ),
    )
    run.add_argument("--dry-run", action="store_true",
                     help="print what would be posted; post and record nothing")
    run.add_argument("--now", type=_moment, metavar="ISO-8601",
                     help="run as if it were this moment (UTC unless a zone is given)")
    run.add_argument("--json", action="store_true", help="print the pass report as JSON")
    run.set_defaults(handler=cmd_run)
    status = sub.add_parser(
        "status",
        help="what the outbox holds now",
        description=(
            "Every kind of message Tokenbot posts on its own: how many are queued, leased "
            "(being posted), failing (waiting for a retry), sent and skipped; per "
            "destination, the oldest pending, the next retry and the last error (a channel "
            "the bot is not in: not_in_channel). Reads only; every team."
        ),
    )
    status.add_argument("--json", action="store_true", help="print it as JSON")
    status.set_defaults(handler=cmd_status)
