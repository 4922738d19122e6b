"""``runner properties PATH``."""

from __future__ import annotations

import click

from runner.cli import Context, cli
from runner.cli.options import format_option, rev_option
from runner.operations.properties import node_properties
from runner.render import properties as render


@cli.command("properties")
@click.argument("path")
@rev_option()
@click.option(
    "--explain", is_flag=True, help="One line per leaf: key = value, layer and file:line."
)
@format_option("text", "yaml", "json")
@click.pass_obj
def properties_command(obj: Context, path: str, rev: str | None, explain: bool, fmt: str) -> None:
    """Converged properties of the node at PATH (secrets shown as ***).

    PATH is a node path such as /projects/pay/environments/prod/assets/api.
    """
    converged = node_properties(obj.ops, path, rev)
    if explain:
        click.echo(render.explain(converged, fmt), nl=False)
    else:
        click.echo(render.mapping(converged, fmt), nl=False)
