"""What every `tokenbot` command shares: the operator's context (settings, database, team,
actor), the database error that becomes one line, argument types, and plain-text output
(tables whose columns line up in a terminal, times, JSON).

The CLI acts as an operator: an admin of the chosen team (``--team``, else
``TOKENBOT_TEAM_ID``, else the only team in the database), audited with source ``cli`` and
the user given by ``--as`` (default ``operator``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import re
import sys
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from bot.config import Settings, load_settings
from bot.db import Database
from bot.errors import ConfigurationError, TokenbotError
from bot.models import AuditEvent, AuditSource, Token, utcnow
from bot.serialize import token_summary
from bot.services.actor import CLI_OPERATOR, Actor
from bot.services.policy import policy_of
from bot.services.tokens import MAX_OVERLAP

log = logging.getLogger(__name__)

LABEL_COLUMN_MAX = 40
PER_PAGE_MAX = 1000
ID_MAX = 32


class UsageError(Exception):
    """A command line that is valid to argparse but asks for nothing (exit status 2, as
    argparse's own usage errors)."""


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


NUMBER_MAX = 1_000_000  # more pages or events than anyone has


_DURATION_RE = re.compile(r"([+-]?[0-9]{1,9})([mhd])")
_DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
OVERLAP_RANGE = f"the overlap must be between 1 minute and {MAX_OVERLAP.days} days"


def duration_arg(text: str) -> dt.timedelta:
    """``30m``, ``24h``, ``7d``: minutes, hours or days, from 1 minute to 30 days; else a
    clear argparse error."""
    match = _DURATION_RE.fullmatch(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration; write minutes, hours or days such as 30m, 24h or "
            f"7d ({OVERLAP_RANGE})"
        )
    value = dt.timedelta(**{_DURATION_UNITS[match[2]]: int(match[1])})
    if not dt.timedelta(minutes=1) <= value <= MAX_OVERLAP:
        raise argparse.ArgumentTypeError(f"{text!r}: {OVERLAP_RANGE} (30m, 24h, 7d, 30d)")
    return value


def _whole_number(text: str, most: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= most:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to {most:,}")
    return value


def positive_int(text: str) -> int:
    return _whole_number(text, NUMBER_MAX)


def per_page_arg(text: str) -> int:
    """A page size (or a number of events): from 1 to ``PER_PAGE_MAX``, worded as every
    other number's limits."""
    return _whole_number(text, PER_PAGE_MAX)


def ident_arg(text: str) -> str:
    """A Slack id or similar handle: no spaces, 1-32 characters."""
    value = text.strip()
    if not value or len(value) > ID_MAX or any(ch.isspace() for ch in value):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an id: use 1-{ID_MAX} characters without spaces "
            "(a Slack id such as T0123ABCD or U0123ABCD)"
        )
    return value


# -- shared options -------------------------------------------------------------------


def team_parent() -> argparse.ArgumentParser:
    """``--team T``, for a command that acts on one team."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--team",
        type=ident_arg,
        metavar="T",
        help="Slack team id to act on, one the database has tokens or audit events of "
        "(default: TOKENBOT_TEAM_ID, else the only team with tokens)",
    )
    return parent


def actor_parent() -> argparse.ArgumentParser:
    """``--as U``, for a command that changes or reveals a token."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--as",
        dest="as_user",
        type=ident_arg,
        default=CLI_OPERATOR,
        metavar="U",
        help=f"who the audit log names as the actor (default: {CLI_OPERATOR})",
    )
    return parent


def json_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help="print JSON")
    return parent


# -- context --------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    settings: Settings
    db: Database
    team: str
    actor: Actor
    now: dt.datetime


def _teams_in(session: Session) -> list[str]:
    """The teams that have tokens (up to three): a team whose last token was deleted no
    longer counts when the CLI picks "the only team"."""
    return sorted(session.scalars(select(Token.team_id).distinct().limit(3)))


def _known(session: Session, team: str) -> bool:
    """Whether the database has anything of ``team``: a token, or audit events."""
    return bool(session.scalar(select(
        exists().where(Token.team_id == team) | exists().where(AuditEvent.team_id == team)
    )))


def _check_known(session: Session, team: str, *, new_team: bool | None) -> None:
    """``team`` (from --team or TOKENBOT_TEAM_ID) must be one the database knows, so a typo
    neither lists nothing nor starts a second team for ever. A database with no team yet
    takes any; ``new_team`` True (``tokens create --new-team``) starts another on purpose,
    False offers it (``tokens create``), None is a command that cannot start a team."""
    if new_team or _known(session, team):
        return
    held = _teams_in(session) or sorted(session.scalars(
        select(AuditEvent.team_id).distinct().limit(3)))
    if not held:
        return
    shown = ", ".join(held[:2]) + (", …" if len(held) > 2 else "")
    hint = " To start a new team with this token, add --new-team." if new_team is False else ""
    raise ConfigurationError(
        f"Unknown team {team}: this database has no token or audit event of it (it holds "
        f"{shown}). Check --team or TOKENBOT_TEAM_ID.{hint}"
    )


def resolve_team(
    db: Database, settings: Settings, explicit: str | None, *, new_team: bool | None = None
) -> str:
    """The team to act on: ``explicit`` (--team), else TOKENBOT_TEAM_ID, else the only team
    with tokens. A named team must be known (:func:`_check_known`)."""
    named = explicit or settings.tokenbot_team_id
    with db.sessions() as session:
        if named:
            _check_known(session, named, new_team=new_team)
            return named
        teams = _teams_in(session)
    if len(teams) == 1:
        return teams[0]
    if not teams:
        raise ConfigurationError(
            "No team to act on: the database has no tokens yet. Pass --team T… or set "
            "TOKENBOT_TEAM_ID to your Slack workspace's id (the T… in "
            "app.slack.com/client/T…/… in a browser, or the \"in workspace T…\" that "
            "`tokenbot serve` logs at start). Once it has a token (the first one created with "
            "/tokens create in Slack, or with `tokenbot tokens create --team T… …`), the "
            "CLI acts on that team by default."
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
            team = resolve_team(database, settings, getattr(args, "team", None),
                                new_team=getattr(args, "new_team", None))
            actor = Actor(
                team_id=team,
                user_id=getattr(args, "as_user", CLI_OPERATOR),
                is_admin=True,
                source=AuditSource.CLI,
            )
            yield Context(settings, database, team, actor, utcnow())
        finally:
            database.dispose()


# -- output ---------------------------------------------------------------------------


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def summary_of(ctx: Context, token: Token) -> dict[str, Any]:
    """``token`` as a JSON row (``serialize.token_summary``), over policy or not at ``ctx.now``."""
    return token_summary(token, ctx.now,
                         over_policy=policy_of(ctx.settings).breaks(token, ctx.now))


def when(value: dt.datetime | None, missing: str = "never") -> str:
    """A moment as ``YYYY-MM-DD HH:MM`` in UTC, or ``missing``."""
    if value is None:
        return missing
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def ago(value: dt.datetime, now: dt.datetime) -> str:
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


def plain(value: Any) -> str:
    """A stored value as text; ``None`` reads "none"."""
    return "none" if value is None else str(value)


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Terminal columns: wide (CJK, emoji) characters take two, combining marks none."""
    return sum(_char_width(ch) for ch in text)


def shorten(text: str, width: int = LABEL_COLUMN_MAX) -> str:
    """``text`` cut to ``width`` terminal columns, with "…" where it was cut."""
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


class ConfirmationRequired(TokenbotError):
    """A command that asks first was run without --yes where nobody can answer."""


def ask(question: str, *, refusing: str, before: Sequence[str] = ()) -> bool:
    """``before``, then ``question? [y/N]`` on stderr; only y / yes (any case) goes ahead.
    Without a terminal nobody can answer: refused (``refusing``: what was not done)."""
    if not sys.stdin or not sys.stdin.isatty():
        raise ConfirmationRequired(
            f"Refusing to {refusing} without confirmation: stdin is not a terminal, so "
            "nobody can answer. Pass --yes to confirm.")
    for line in before:
        print(line, file=sys.stderr)
    print(f"{question}? [y/N] ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")
