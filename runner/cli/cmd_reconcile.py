"""``runner reconcile``: the cron entry point."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from dataclasses import asdict
from pathlib import Path

import click

from runner.cli import Context, cli
from runner.cli.cmd_apply import signals_cancel
from runner.cli.options import (
    format_option,
    lock_timeout_option,
    parallel_option,
    push_option,
    secrets_file_option,
    time_option,
)
from runner.durations import parse_duration
from runner.errors import ExitCode, InvalidArgument
from runner.operations.apply import ApplyOptions
from runner.operations.reconcile import ReconcileOptions, reconcile


@cli.command("reconcile")
@click.option("--now", "now_text", default=None, metavar="TIME", help="Act as if it were TIME.")
@push_option()
@click.option("--no-drift", is_flag=True, help="Skip the drift checks.")
@parallel_option()
@lock_timeout_option(
    "0s", "How long to wait for nodes another runner holds (0: leave them to the next pass)."
)
@secrets_file_option()
@format_option("text", "json")
@click.pass_obj
def reconcile_command(
    obj: Context,
    now_text: str | None,
    push: bool,
    no_drift: bool,
    parallel: int | None,
    lock_timeout: str,
    secrets_file: Path | None,
    fmt: str,
) -> None:
    """Apply what is pending, carry on approved runs, fire due schedules, check for drift.
    Safe to run every few minutes from several places at once."""
    try:
        timeout = parse_duration(lock_timeout)
    except ValueError as exc:
        raise InvalidArgument(f"--lock-timeout: {exc}") from None
    options = ReconcileOptions(
        now=time_option("--now", now_text),
        drift=not no_drift,
        apply=ApplyOptions(
            lock_timeout=timeout, parallel=parallel, push=push, secrets_file=secrets_file
        ),
    )
    cancel = threading.Event()
    with signals_cancel(cancel) as received:
        report = reconcile(obj.ops, options, os.environ, cancel)
    if fmt == "json":
        body = [asdict(p) | {"exit_code": int(p.exit_code)} for p in report.parts]
        click.echo(json.dumps({"parts": body, "exit_code": int(report.exit_code)}, indent=2))
    elif not report.parts:
        click.echo("Nothing to do.")
    for part in report.parts if fmt == "text" else ():
        detail = f"  {part.detail}" if part.detail else ""
        click.echo(f"{part.kind:9} {part.status:10} {part.subject}{detail}")
    if received:
        sys.exit(ExitCode.SIGINT if received[0] == signal.SIGINT else ExitCode.SIGTERM)
    sys.exit(report.exit_code)
