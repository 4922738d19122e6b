"""``runner apply`` and ``runner run``."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import click

from runner.cli import Context, cli
from runner.cli.cmd_plan import _pattern
from runner.cli.options import (
    lock_timeout_option,
    parallel_option,
    push_option,
    secrets_file_option,
    sets_option,
)
from runner.durations import parse_duration
from runner.errors import ExitCode, InvalidArgument, RunnerError
from runner.loading.snapshot import read_settings
from runner.loading.yamlfile import YamlError, parse
from runner.operations.apply import ApplyOptions, ApplyResult, apply, resume_or_retry, run_action
from runner.operations.history import change_logs
from runner.operations.properties import normalise_path
from runner.operations.unlock import unlock
from runner.render.ci import in_github_actions, log_groups
from runner.render.progress import Progress
from runner.state.records import ChangeRecord


@contextmanager
def signals_cancel(cancel: threading.Event) -> Iterator[list[int]]:
    """SIGINT/SIGTERM stop the running steps (their statuses end ``cancelled`` and are
    recorded) instead of killing the runner mid-write."""
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        cancel.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _options(**kwargs: Any) -> ApplyOptions:
    timeout = kwargs.pop("lock_timeout")
    try:
        seconds = parse_duration(timeout)
    except ValueError as exc:
        raise InvalidArgument(f"--lock-timeout: {exc}") from None
    progress = Progress.for_stream(sys.stderr, os.environ)
    return ApplyOptions(lock_timeout=seconds, progress=progress, **kwargs)


def _finish(result: ApplyResult, received: list[int]) -> None:
    for record in result.records:
        failed = [s for s in record.steps if s.status in ("error", "cancelled")]
        detail = "; ".join(f"{s.id}: {s.error or s.status}" for s in failed)
        click.echo(
            f"{record.status:9} {record.node}  {record.action}  change {record.id}"
            + (f"  ({detail})" if detail else "")
        )
    for node in result.skipped_nodes:
        click.echo(f"{'skipped':9} {node}  already applied with these inputs")
    for record in result.refused:
        who = (record.approval or {}).get("user", "someone")
        click.echo(
            f"{'rejected':9} {record.node}  change {record.id} was rejected by {who}; "
            "a commit changing the node asks again"
        )
    for node, upstream in result.held_back:
        click.echo(f"{'held':9} {node}  runs after {upstream}, which waits for approval")
    for record in result.waiting:
        click.echo(
            f"change {record.id} on {record.node} waits for approval from "
            f"{', '.join(record.waiting_for)}: runner approve {record.id}"
        )
    if not result.records and not result.skipped_nodes:
        click.echo("Nothing to do.")
    if in_github_actions(os.environ) and result.records:
        # In a GitHub Actions log: each change as a collapsed group holding its steps' logs.
        context = click.get_current_context().find_object(Context)
        settings = read_settings(context.ops) if context is not None else None

        def logs_of(record: ChangeRecord) -> dict[str, str]:
            if context is None or settings is None:
                return {}
            try:
                logs = change_logs(context.ops, settings, record.id)
            except RunnerError:  # a record that never reached the state branch
                return {}
            return {log.step: log.text for log in logs}

        for line in log_groups(result.records, logs_of):
            click.echo(line)
    if received:
        sys.exit(ExitCode.SIGINT if received[0] == signal.SIGINT else ExitCode.SIGTERM)
    sys.exit(result.exit_code)


_common = [
    parallel_option(),
    click.option(
        "--keep-going", is_flag=True, help="Go on after a failure; only its dependants are skipped."
    ),
    push_option(),
    lock_timeout_option(),
    secrets_file_option(),
]


def common(func: Any) -> Any:
    for option in reversed(_common):
        func = option(func)
    return func


@cli.command("apply")
@click.option(
    "--base",
    default=None,
    metavar="REV",
    help="Compare from this revision (default: the last applied commit).",
)
@click.option("--head", default="HEAD", show_default=True, metavar="REV")
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Apply a plan saved with `runner plan --output`.",
)
@click.option("--target", "targets", multiple=True, metavar="PATH[%]")
@click.option("--exclude", "excludes", multiple=True, metavar="PATH[%]")
@click.option("--allow-destroy", is_flag=True, help="Run on_delete of deleted nodes.")
@common
@click.pass_obj
def apply_command(obj: Context, /, **kwargs: Any) -> None:
    """Plan and execute: run the changes since the last applied commit, record everything on
    the state branch."""
    kwargs["targets"] = tuple(_pattern(t) for t in kwargs["targets"])
    kwargs["excludes"] = tuple(_pattern(e) for e in kwargs["excludes"])
    options = _options(**kwargs)
    cancel = threading.Event()
    with signals_cancel(cancel) as received:
        result = apply(obj.ops, options, os.environ, cancel)
    if result.plan is not None:
        click.echo(result.plan.summary(), err=True)
    _finish(result, received)


@cli.command("run")
@click.argument("path")
@click.argument("action")
@sets_option("Override a property for this run (dotted keys, YAML values).")
@click.option("--head", default="HEAD", show_default=True, metavar="REV")
@common
@click.pass_obj
def run_command(
    obj: Context, /, path: str, action: str, sets: tuple[str, ...], head: str, **kwargs: Any
) -> None:
    """Run ACTION on the node at PATH now (an ad-hoc change)."""
    options = _options(head=head, **kwargs)
    cancel = threading.Event()
    with signals_cancel(cancel) as received:
        result = run_action(
            obj.ops, normalise_path(path), action, parse_sets(sets), options, os.environ, cancel
        )
    _finish(result, received)


def parse_sets(sets: tuple[str, ...]) -> dict[str, Any]:
    """``a.b=1`` → ``{"a": {"b": 1}}``; values are read as YAML scalars (``3`` is a number)."""
    out: dict[str, Any] = {}
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise InvalidArgument(f"--set {item!r}: use KEY=VALUE")
        try:
            value = parse(text) if text else ""
        except YamlError:
            value = text
        if isinstance(value, dict | list):
            value = text
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


__all__ = ["apply_command", "resume_command", "retry_command", "run_command", "unlock_command"]


@cli.command("resume")
@click.argument("change_id")
@common
@click.pass_obj
def resume_command(obj: Context, /, change_id: str, **kwargs: Any) -> None:
    """Carry on CHANGE (e.g. one whose runner died): re-run only the steps that did not succeed,
    in the same record."""
    _resume_or_retry(obj, change_id, "resume", kwargs)


@cli.command("retry")
@click.argument("change_id")
@common
@click.pass_obj
def retry_command(obj: Context, /, change_id: str, **kwargs: Any) -> None:
    """Run the failed steps of CHANGE again, as a new change linked by retry_of."""
    _resume_or_retry(obj, change_id, "retry", kwargs)


def _resume_or_retry(obj: Context, change_id: str, kind: str, kwargs: dict[str, Any]) -> None:
    options = _options(**kwargs)
    cancel = threading.Event()
    with signals_cancel(cancel) as received:
        result = resume_or_retry(obj.ops, change_id, kind, options, os.environ, cancel)
    _finish(result, received)


@cli.command("unlock")
@click.argument("path")
@click.option(
    "--force", is_flag=True, required=True, help="Required: breaking a lease is deliberate."
)
@click.pass_obj
def unlock_command(obj: Context, path: str, force: bool) -> None:
    """Break the lease on the node at PATH (recorded as an event)."""
    removed = unlock(obj.ops, normalise_path(path))
    if removed is None:
        click.echo(f"{normalise_path(path)} was not locked.")
    else:
        click.echo(
            f"Broke the lease of {removed.holder} on {removed.node} (change {removed.change})."
        )
