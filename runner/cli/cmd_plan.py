"""``runner plan``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from runner.cli import Context, cli
from runner.cli.options import format_option
from runner.errors import ExitCode
from runner.operations.plan import PlanRequest, plan
from runner.operations.properties import normalise_path
from runner.render import plan_json, plan_markdown, plan_text


@cli.command("plan")
@click.option(
    "--base",
    default=None,
    metavar="REV",
    help="Compare from this revision (default: the last applied commit).",
)
@click.option(
    "--head", default="HEAD", show_default=True, metavar="REV", help="Compare to this revision."
)
@click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="PATH[%]",
    help="Only these nodes (and below); PATH% matches by prefix.",
)
@click.option(
    "--exclude", "excludes", multiple=True, metavar="PATH[%]", help="Leave these nodes out."
)
@click.option("--allow-destroy", is_flag=True, help="Plan the on_delete action of deleted nodes.")
@format_option("text", "json", "markdown")
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write the plan as JSON to this file (for `apply --plan`).",
)
@click.option(
    "--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes, 0 when none."
)
@click.pass_obj
def plan_command(
    obj: Context,
    base: str | None,
    head: str,
    targets: tuple[str, ...],
    excludes: tuple[str, ...],
    allow_destroy: bool,
    fmt: str,
    output: Path | None,
    detailed_exitcode: bool,
) -> None:
    """What apply would do: changed nodes, property diffs, actions and the step DAG.

    Reads git objects only and runs nothing from the repository, so it is safe on an untrusted
    pull request.
    """
    request = PlanRequest(
        base=base,
        head=head,
        targets=tuple(_pattern(t) for t in targets),
        excludes=tuple(_pattern(e) for e in excludes),
        allow_destroy=allow_destroy,
    )
    planned = plan(obj.ops, request)
    result = planned.plan
    if output is not None:
        output.write_text(plan_json.render(result), "utf-8")
    if fmt == "json":
        click.echo(plan_json.render(result), nl=False)
    elif fmt == "markdown":
        click.echo(plan_markdown.render(result, base_source=planned.base_source), nl=False)
    else:
        click.echo(plan_text.render(result, base_source=planned.base_source), nl=False)
    if detailed_exitcode and result.has_changes:
        sys.exit(ExitCode.CHANGES)


def _pattern(text: str) -> str:
    return normalise_path(text[:-1]) + "%" if text.endswith("%") else normalise_path(text)
