"""``runner validate``."""

from __future__ import annotations

import sys

import click

from runner.cli import Context, cli
from runner.cli.options import format_option, rev_option
from runner.errors import ExitCode
from runner.operations.validate import validate
from runner.render import problems as render


@cli.command("validate")
@rev_option()
@format_option("text", "json", "github")
@click.pass_obj
def validate_command(obj: Context, rev: str | None, fmt: str) -> None:
    """Check every file: schemas, references, cycles, converged properties.

    Exits 0 when the ops repo is valid, 3 otherwise; each problem is one line, file:line: message.
    """
    result = validate(obj.ops, rev)
    problems = result.problems
    snap = result.snapshot
    if fmt == "json":
        click.echo(render.as_json(problems, snap.label), nl=False)
    elif fmt == "github":
        click.echo(render.github(problems, obj.ops.prefix), nl=False)
    else:
        click.echo(render.text(problems), nl=False, err=bool(problems))
        if not problems:
            counts = (
                f"{len(snap.projects)} projects, {len(snap.environments)} environments, "
                f"{len(snap.assets)} assets, {len(snap.templates)} templates, "
                f"{len(snap.workflows)} workflows, {len(snap.schedules)} schedules"
            )
            click.echo(f"valid ({snap.label}): {counts}")
        else:
            n = len(problems)
            click.echo(f"{n} problem{'s' if n != 1 else ''} ({snap.label})", err=True)
    sys.exit(ExitCode.INVALID if problems else ExitCode.OK)
