"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from runner.errors import InvalidArgument
from runner.scheduling import TimeError, parse_time
from runner.state.records import now as current_time

F = TypeVar("F", bound=Callable[..., Any])


def rev_option(
    help_text: str = "Read the ops repo at this revision (default: the working tree).",
) -> Callable[[F], F]:
    return click.option("--rev", default=None, metavar="REV", help=help_text)


def format_option(*choices: str) -> Callable[[F], F]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=choices[0],
        show_default=True,
        help="Output format.",
    )


def time_option(option: str, text: str | None) -> datetime:
    """An option's ISO 8601 time (naive means UTC); None means now."""
    if text is None:
        return current_time()
    try:
        return parse_time(text, UTC)
    except TimeError as exc:
        raise InvalidArgument(f"{option}: {exc}") from exc
