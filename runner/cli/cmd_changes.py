"""``runner changes list/show/logs``."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from runner.cli import Context, cli
from runner.cli.options import format_option
from runner.loading.snapshot import read_settings
from runner.operations.history import change_logs, list_changes, show_change
from runner.render.values import to_yaml
from runner.state.records import ChangeRecord


@cli.group("changes")
def changes_group() -> None:
    """History of changes, read from the state branch."""


def _row(record: ChangeRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "node": record.node,
        "action": record.action,
        "status": record.status,
        "kind": record.kind,
        "commit": record.commit,
        "created": record.created,
        "started": record.started,
        "finished": record.finished,
        "retry_of": record.retry_of,
    }


@changes_group.command("list")
@format_option("text", "json")
@click.pass_obj
def list_command(obj: Context, fmt: str) -> None:
    """Every recorded change, oldest first."""
    records = list_changes(obj.ops, read_settings(obj.ops))
    if fmt == "json":
        click.echo(json.dumps([_row(r) for r in records], indent=2))
        return
    if not records:
        click.echo("No changes recorded yet.")
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
