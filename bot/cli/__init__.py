"""The `tokenbot` command: operators' shell interface.

Each command group lives in its own module with a ``register(subparsers)`` function that
adds its sub-commands and sets ``handler=callable(args) -> int``. Errors that a user can
act on are printed to stderr as one message with a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib import metadata

from bot import logs, metrics
from bot.cli.common import UsageError
from bot.config import load_log_settings
from bot.errors import ConfigurationError, TokenbotError

EXIT_ERROR = 1
EXIT_CONFIG = 2


def version() -> str:
    """The installed package's version (its metadata), or "unknown" outside an install."""
    try:
        return metadata.version("tokenbot")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    from bot.cli import admin, alerts, audit, serve, tokens

    parser = argparse.ArgumentParser(
        prog="tokenbot",
        description="Tokenbot: issue and manage your team's access tokens from Slack.",
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log debug output (as LOG_LEVEL=DEBUG)")
    parser.add_argument("--version", action="version", version=f"tokenbot {version()}",
                        help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (tokens, audit, admin, alerts, serve):
        module.register(subparsers)
    return parser


def _negative_values(argv: Sequence[str]) -> list[str]:
    """``--overlap -5m`` as ``--overlap=-5m``: argparse takes "-5m" for an option and
    answers "expected one argument" instead of saying what the overlap may be."""
    joined: list[str] = []
    for arg in argv:
        if joined and joined[-1] == "--overlap" and arg[:1] == "-" and arg[1:2].isdigit():
            joined[-1] = f"--overlap={arg}"
        else:
            joined.append(arg)
    return joined


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_negative_values(sys.argv[1:] if argv is None else argv))
    try:
        wanted = load_log_settings()
    except ConfigurationError as exc:
        print(f"tokenbot: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logs.configure(logging.DEBUG if args.verbose else wanted.log_level, stream=sys.stderr,
                   log_format=wanted.log_format)
    try:
        from bot.cli.serve import cmd_serve

        metrics.choose_mode(serving=args.handler is cmd_serve)
        return int(args.handler(args) or 0)
    except (UsageError, ConfigurationError) as exc:
        print(f"tokenbot: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except TokenbotError as exc:
        print(f"tokenbot: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("tokenbot: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tokenbot audit | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def run() -> None:
    sys.exit(main())
