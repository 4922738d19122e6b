"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
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


def parallel_option() -> Callable[[F], F]:
    return click.option(
        "--parallel",
        type=click.IntRange(min=1),
        default=None,
        help="Steps at once (default: runner.yaml parallelism).",
    )


def lock_timeout_option(default: str = "120s", help_text: str | None = None) -> Callable[[F], F]:
    return click.option(
        "--lock-timeout",
        default=default,
        show_default=True,
        help=help_text or "How long to wait for a node held by another runner.",
    )


def secrets_file_option() -> Callable[[F], F]:
    return click.option(
        "--secrets-file",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        default=None,
        help="YAML file of secret values (NAME: value).",
    )


def push_option() -> Callable[[F], F]:
    return click.option(
        "--push", is_flag=True, help="Push the state branch to the remote in runner.yaml."
    )


def sets_option(help_text: str) -> Callable[[F], F]:
    return click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=help_text)


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A text table: columns as wide as their widest cell, two spaces apart."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    for line in [headers, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
        click.echo("  ".join(cells).rstrip())
