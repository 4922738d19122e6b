"""``runner init DIR``."""

from __future__ import annotations

from pathlib import Path

import click

from runner.cli import cli
from runner.operations.init import init


@cli.command("init")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
def init_command(folder: Path) -> None:
    """Scaffold a working ops repo in FOLDER (a copy of the example) and commit it."""
    done = init(folder)
    click.echo(f"Created an ops repo in {done.folder} (commit {done.commit[:12]}).")
    if done.tags:
        click.echo(f"Pinned template versions point at the tags: {', '.join(done.tags)}.")
    click.echo(
        f"Next: cd {folder} && runner validate && runner properties --explain "
        "/projects/pay/environments/prod/assets/api"
    )
