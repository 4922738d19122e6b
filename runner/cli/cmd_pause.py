"""``runner pause`` and ``runner resume-all``: the emergency pause on the state branch."""

from __future__ import annotations

import os

import click

from runner.cli import Context, cli
from runner.operations.pause import PauseResult, pause, resume_all

_BY_HELP = "Who is acting (default: GITHUB_ACTOR, else the git identity)."


@cli.command("pause")
@click.option("--reason", required=True, help="Why: shown to everyone whose command is refused.")
@click.option("--by", default=None, help=_BY_HELP)
@click.pass_obj
def pause_command(obj: Context, reason: str, by: str | None) -> None:
    """Pause the repository: apply, run, reconcile and workflow runs exit 4 until `runner
    resume-all`. Written to the state branch (and pushed when it has a remote), so it needs no
    pull request."""
    result = pause(obj.ops, reason, os.environ, by)
    assert result.now is not None
    if not result.changed:
        click.echo(f"Already paused: {result.now.describe()}")
    elif result.before is not None:
        click.echo(f"Pause reason changed: {result.now.describe()}; was: {result.before.reason}")
    else:
        click.echo(f"Paused: {result.now.describe()}")
    click.echo("apply, run, reconcile and workflow runs exit 4 until `runner resume-all`.")
    _footer(result)


@cli.command("resume-all")
@click.option("--by", default=None, help=_BY_HELP)
@click.pass_obj
def resume_all_command(obj: Context, by: str | None) -> None:
    """Lift a pause made by `runner pause`. A pause written in runner.yaml stays until a commit
    removes it."""
    result = resume_all(obj.ops, os.environ, by)
    if result.changed and result.before is not None:
        click.echo(
            f"Resumed: the pause on the state branch is lifted (was: {result.before.reason})"
        )
    else:
        click.echo("Not paused on the state branch: nothing to lift.")
    _footer(result)


def _footer(result: PauseResult) -> None:
    if result.pushed_to:
        click.echo(f"State branch pushed to {result.pushed_to}.")
    if result.settings_note:
        click.echo(
            f"runner.yaml pauses the repository as well, until a commit removes its `paused` "
            f"setting: {result.settings_note}"
        )
