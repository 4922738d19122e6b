"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

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
