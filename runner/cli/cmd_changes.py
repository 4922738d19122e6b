"""``runner changes list/show/logs``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, TypeVar

import click

from runner.cli import Context, cli
from runner.cli.options import format_option
from runner.loading.snapshot import read_settings
from runner.operations.history import (
    CHANGE_FILTER_KEYS,
    change_logs,
    parse_filters,
    query_changes,
    show_change,
)
from runner.render.values import to_yaml
from runner.state.records import ChangeRecord


@cli.group("changes")
def changes_group() -> None:
    """History of changes, read from the state branch."""


COLUMNS = (
    "id",
    "node",
    "action",
    "status",
    "kind",
    "commit",
    "created",
    "started",
    "finished",
    "retry_of",
    "run",
)


def _row(record: ChangeRecord) -> dict[str, object]:
    return {column: getattr(record, column) for column in COLUMNS}


F = TypeVar("F", bound=Callable[..., Any])


def filter_options(keys: Sequence[str]) -> Callable[[F], F]:
    """``--filter KEY=VALUE`` (repeatable) and ``--limit N``, as ``changes list`` and ``events
    list`` both take them."""

    def decorate(func: F) -> F:
        func = click.option(
            "--limit",
            type=click.IntRange(min=1),
            default=None,
            help="Only the newest N (still printed oldest first).",
        )(func)
        return click.option(
            "--filter",
            "filters",
            multiple=True,
            metavar="KEY=VALUE",
            help=(
                f"Keys: {', '.join(keys)}. The same key twice matches either value; different "
                "keys must all match. node=/projects/pay/% matches by prefix; since/until take "
                "a date, a time or a duration ago (24h, 7d)."
            ),
        )(func)

    return decorate


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A header row, then one row per record; empty cells for missing values."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return out.getvalue()


@changes_group.command("list")
@filter_options(CHANGE_FILTER_KEYS)
@format_option("text", "json", "csv")
@click.pass_obj
def list_command(obj: Context, filters: tuple[str, ...], limit: int | None, fmt: str) -> None:
    """Recorded changes, oldest first: all of them, or those every --filter key matches."""
    wanted = parse_filters(filters, CHANGE_FILTER_KEYS)
    records = query_changes(obj.ops, read_settings(obj.ops), wanted, limit)
    rows = [_row(r) for r in records]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if fmt == "csv":
        click.echo(to_csv(rows, COLUMNS), nl=False)
        return
    if not records:
        click.echo("No changes match the filters." if filters else "No changes recorded yet.")
        return
    click.echo(f"{'ID':26} {'STATUS':9} {'ACTION':12} {'COMMIT':12} NODE")
    for r in records:
        click.echo(f"{r.id:26} {r.status:9} {r.action:12} {r.commit[:12]:12} {r.node}")


@changes_group.command("show")
@click.argument("change_id")
@format_option("text", "json", "yaml")
@click.pass_obj
def show_command(obj: Context, change_id: str, fmt: str) -> None:
    """One change with its steps."""
    record = show_change(obj.ops, read_settings(obj.ops), change_id)
    body = asdict(record)
    if fmt == "json":
        click.echo(json.dumps(body, indent=2))
    elif fmt == "yaml":
        click.echo(to_yaml(body), nl=False)
    else:
        click.echo(f"change {record.id}: {record.status}")
        click.echo(f"  node    {record.node}\n  action  {record.action}\n  commit  {record.commit}")
        if record.retry_of:
            click.echo(f"  retry of {record.retry_of}")
        for reason in record.reasons:
            click.echo(f"  why     {reason}")
        for step in record.steps:
            extra = f"  {step.error}" if step.error else ""
            click.echo(f"  {step.status:9} {step.id}  attempts {step.attempts}{extra}")


@changes_group.command("logs")
@click.argument("change_id")
@click.option("--step", default=None, help="Only this step.")
@click.pass_obj
def logs_command(obj: Context, change_id: str, step: str | None) -> None:
    """Step logs of a change (secrets masked)."""
    for log in change_logs(obj.ops, read_settings(obj.ops), change_id, step):
        click.echo(f"==> {log.step} <==")
        click.echo(log.text, nl=not log.text.endswith("\n"))
