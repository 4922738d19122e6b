"""``runner graph``."""

from __future__ import annotations

import click

from runner.cli import Context, cli
from runner.cli.options import format_option, rev_option
from runner.errors import InvalidRepository
from runner.loading import checks, snapshot
from runner.render import graph as render


@cli.command("graph")
@rev_option("Read the ops repo at this revision (default: HEAD).")
@format_option("mermaid", "dot", "json")
@click.option(
    "--steps", is_flag=True, help="The step DAG of every asset's on_change action instead."
)
@click.pass_obj
def graph_command(obj: Context, rev: str | None, fmt: str, steps: bool) -> None:
    """The node dependency graph of the whole repo (default: at HEAD).

    An edge "a --> b" means a runs before b: an asset after what it depends_on, an environment
    after the environments it depends_on. With --steps, the steps of every asset's on_change
    action, ordered inside each action and across nodes the way `runner plan` orders them.
    """
    snap = snapshot.load(obj.ops, rev or "HEAD")
    problems = checks.check(snap)
    if problems:
        raise InvalidRepository(problems)
    dag = render.step_graph(snap) if steps else render.node_graph(snap)
    click.echo(render.render(dag, fmt), nl=False)
