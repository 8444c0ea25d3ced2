"""`tokenbot` sub-commands: tokens (to be filled in)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    pass
