"""The command line: a click group, shared options, one thin module per command.

Commands parse arguments, call ``runner.operations`` and print through ``runner.render``.
Exit codes (SPEC 3): 0 ok, 1 failed, 2 changes present, 3 invalid input, 4 blocked,
70 internal error, 130/143 interrupted.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from runner import __version__
from runner.errors import ExitCode, InvalidRepository, RunnerError
from runner.loading.source import OpsRepo, locate

log = logging.getLogger("runner")


class Context:
    def __init__(self, repo: Path | None, debug: bool) -> None:
        self.repo_option = repo
        self.debug = debug
        self._ops: OpsRepo | None = None

    @property
    def ops(self) -> OpsRepo:
        if self._ops is None:
            self._ops = locate(self.repo_option, Path.cwd())
        return self._ops


class RunnerGroup(click.Group):
    """Maps exceptions to exit codes in one place (click's usage errors become 3, since our 2
    means "changes present")."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        debug = "--debug" in sys.argv
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(ExitCode.SIGINT)
        except click.UsageError as exc:
            exc.show()
            sys.exit(ExitCode.INVALID)
        except click.ClickException as exc:
            exc.show()
            sys.exit(ExitCode.INVALID)
        except InvalidRepository as exc:
            click.echo(str(exc), err=True)
            n = len(exc.problems)
            click.echo(f"{n} problem{'s' if n != 1 else ''}: nothing was run", err=True)
            sys.exit(exc.exit_code)
        except RunnerError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(ExitCode.SIGINT)
        except BrokenPipeError:
            sys.exit(ExitCode.OK)
        except Exception as exc:
            if debug:
                raise
            click.echo(
                f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
                err=True,
            )
            sys.exit(ExitCode.INTERNAL)


@click.group(cls=RunnerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="runner")
@click.option(
    "--repo",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help=(
        "The ops repo root (default: the nearest folder upward with a runner.yaml, "
        "else the git top level)."
    ),
)
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.pass_context
def cli(ctx: click.Context, repo: Path | None, debug: bool) -> None:
    """gitops-runner: desired state in git, runs and results committed back to git."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(message)s")
    ctx.obj = Context(repo, debug)


def main() -> None:
    from runner.cli import commands  # noqa: F401 - registers the commands

    cli(prog_name="runner")
