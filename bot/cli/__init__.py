"""The `tokenbot` command: operators' shell interface.

Each command group lives in its own module with a ``register(subparsers)`` function that
adds its sub-commands and sets ``handler=callable(args) -> int``. Errors that a user can
act on are printed to stderr as one message with a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from bot import logs
from bot.errors import ConfigurationError, TokenbotError

EXIT_ERROR = 1
EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    from bot.cli import admin, alerts, audit, serve, tokens

    parser = argparse.ArgumentParser(
        prog="tokenbot",
        description="Tokenbot: issue and manage your team's access tokens from Slack.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (tokens, audit, admin, alerts, serve):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr)
    try:
        return int(args.handler(args) or 0)
    except ConfigurationError as exc:
        print(f"tokenbot: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except TokenbotError as exc:
        print(f"tokenbot: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("tokenbot: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    sys.exit(main())
