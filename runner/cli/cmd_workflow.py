"""``runner workflow run``, ``runner runs list/show``, ``runner approve|reject|continue`` and
``runner cancel``."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from runner.cli import Context, cli
from runner.cli.cmd_apply import parse_sets, signals_cancel
from runner.cli.options import (
    echo_table,
    format_option,
    lock_timeout_option,
    parallel_option,
    secrets_file_option,
    sets_option,
)
from runner.durations import parse_duration
from runner.errors import ExitCode, InvalidArgument
from runner.loading.snapshot import read_settings
from runner.operations.apply import ApplyOptions
from runner.operations.history import CHANGE_FILTER_KEYS, parse_filters, query_changes
from runner.render.values import to_yaml
from runner.state.store import StateStore
from runner.workflows.decisions import Decided, cancel, decide
from runner.workflows.engine import start_run
from runner.workflows.records import (
    RunRecord,
    RunStep,
    as_dict,
    decision_text,
    find_run,
    groups_text,
    list_runs,
)

RUN_FILTER_KEYS = ("status", "workflow", "trigger", "since", "until")


# --- runner workflow run ------------------------------------------------------------------------


@cli.group("workflow")
def workflow_group() -> None:
    """Workflows: changes, waits for approval and commands, run as one DAG."""


@workflow_group.command("run")
@click.argument("name")
@sets_option("Override a property for every change of this run (dotted keys, YAML values).")
@click.option("--head", default="HEAD", show_default=True, metavar="REV")
@parallel_option()
@lock_timeout_option()
@secrets_file_option()
@click.option("--by", default=None, help="Who starts the run (default: GITHUB_ACTOR, git).")
@format_option("text", "json")
@click.pass_obj
def run_command(
    obj: Context,
    name: str,
    sets: tuple[str, ...],
    head: str,
    parallel: int | None,
    lock_timeout: str,
    secrets_file: Path | None,
    by: str | None,
    fmt: str,
) -> None:
    """Run workflow NAME (its file name, or PROJECT/NAME) until it finishes or waits."""
    try:
        timeout = parse_duration(lock_timeout)
    except ValueError as exc:
        raise InvalidArgument(f"--lock-timeout: {exc}") from None
    options = ApplyOptions(
        head=head, parallel=parallel, lock_timeout=timeout, secrets_file=secrets_file
    )
    cancel_event = threading.Event()
    with signals_cancel(cancel_event) as received:
        record = start_run(
            obj.ops, name, parse_sets(sets), options, os.environ, cancel_event, by=by, head=head
        )
    if fmt == "json":
        click.echo(json.dumps(as_dict(record), indent=2))
    else:
        for step in record.steps:
            click.echo(step_line(step))
        click.echo(f"run {record.id} of {record.workflow}: {record.status}")
        for line in waiting_lines(record):
            click.echo(line)
    if received:
        sys.exit(ExitCode.SIGINT if received[0] == signal.SIGINT else ExitCode.SIGTERM)
    sys.exit(run_exit_code(record))


def run_exit_code(record: RunRecord) -> ExitCode:
    if record.status in ("error", "aborted"):
        return ExitCode.FAILED
    if record.status == "cancelled":
        return ExitCode.SIGTERM
    return ExitCode.OK  # success, or waiting for a decision


def step_line(step: RunStep) -> str:
    depth = step.name.count("/")
    detail = step.error or step.message
    if step.decision:
        detail = decision_text(step.decision) + (
            f': "{step.decision["message"]}"' if step.decision.get("message") else ""
        )
    extra = f"  {detail}" if detail else ""
    changes = f"  (changes {', '.join(step.changes)})" if step.changes else ""
    return f"{step.status:9} {'  ' * depth}{step.name}{extra}{changes}"


def waiting_lines(record: RunRecord) -> list[str]:
    """How to carry a waiting run on: one line per waiting step."""
    lines = []
    for step in record.waiting_steps():
        if step.kind == "wait" and step.waiting_for:
            lines.append(
                f"run {record.id} waits at {step.name} for approval from "
                f"{groups_text(step.waiting_for)}: runner approve {record.id} {step.name}"
            )
        elif step.kind == "wait":
            lines.append(
                f"run {record.id} waits at {step.name}: runner continue {record.id} {step.name}"
            )
        else:
            lines.append(f"run {record.id} waits at {step.name} for {step.message}")
    return lines


# --- runner runs list / show --------------------------------------------------------------------


@cli.group("runs")
def runs_group() -> None:
    """Workflow runs, read from the state branch."""


def _store(obj: Context) -> StateStore:
    settings = read_settings(obj.ops)
    store = StateStore.for_settings(obj.ops.require_git(), settings)
    store.sync()
    return store


def _row(record: RunRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "workflow": record.workflow,
        "name": record.name,
        "status": record.status,
        "trigger": record.trigger,
        "by": record.by,
        "commit": record.commit,
        "created": record.created,
        "started": record.started,
        "finished": record.finished,
        "waiting": [s.name for s in record.waiting_steps()],
    }


@runs_group.command("list")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="KEY=VALUE",
    help=f"Only runs matching (keys: {', '.join(RUN_FILTER_KEYS)}); repeat a key for either.",
)
@format_option("text", "json")
@click.pass_obj
def list_command(obj: Context, filters: tuple[str, ...], fmt: str) -> None:
    """Every workflow run, oldest first."""
    wanted = parse_filters(filters, RUN_FILTER_KEYS)
    records = []
    for record in list_runs(_store(obj)):
        fields = {"status": record.status, "trigger": record.trigger}
        code = record.workflow.split("/", 1)[-1]
        if wanted.matches({**fields, "workflow": record.workflow}, record.created) or (
            wanted.matches({**fields, "workflow": code}, record.created)
        ):
            records.append(record)
    if fmt == "json":
        click.echo(json.dumps([_row(r) for r in records], indent=2))
        return
    if not records:
        click.echo("No workflow runs recorded yet." if not filters else "No runs match.")
        return
    rows = [
        [
            r.id,
            r.status,
            r.workflow,
            r.trigger,
            ", ".join(s.name for s in r.waiting_steps()) or "-",
            r.by or "-",
        ]
        for r in records
    ]
    echo_table(["ID", "STATUS", "WORKFLOW", "TRIGGER", "WAITING AT", "BY"], rows)


@runs_group.command("show")
@click.argument("run_id")
@format_option("text", "json", "yaml")
@click.pass_obj
def show_command(obj: Context, run_id: str, fmt: str) -> None:
    """One run with its steps, decisions and change ids."""
    record = find_run(_store(obj), run_id)
    if fmt == "json":
        click.echo(json.dumps(as_dict(record), indent=2))
        return
    if fmt == "yaml":
        click.echo(to_yaml(as_dict(record)), nl=False)
        return
    click.echo(f"run {record.id}: {record.status}")
    click.echo(f"  workflow  {record.workflow} ({record.name})")
    click.echo(f"  commit    {record.commit}")
    click.echo(f"  trigger   {record.trigger} by {record.by or 'unknown'}")
    click.echo(f"  created   {record.created}")
    if record.finished:
        click.echo(f"  finished  {record.finished}")
    if record.overrides:
        click.echo(f"  overrides {json.dumps(record.overrides)}")
    for step in record.steps:
        click.echo("  " + step_line(step))
    for line in waiting_lines(record):
        click.echo(line)


# --- decisions ----------------------------------------------------------------------------------


def _decision_command(decision: str, summary: str) -> None:
    many = decision != "continue"  # changes can be decided in bulk; wait steps one by one

    @cli.command(decision, help=summary)
    @click.argument("target", metavar="ID", required=not many)
    @click.argument("step", required=False)
    @click.option("--message", "-m", default=None, help="Why (recorded with the decision).")
    @click.option("--by", default=None, help="Who decides (default: GITHUB_ACTOR, git).")
    @click.option(
        "--filter",
        "filters",
        multiple=True,
        metavar="KEY=VALUE",
        hidden=not many,
        help="Instead of ID: every waiting change matching (keys as `changes list --filter`).",
    )
    @click.pass_obj
    def command(
        obj: Context,
        target: str | None,
        step: str | None,
        message: str | None,
        by: str | None,
        filters: tuple[str, ...],
    ) -> None:
        if filters and (target is not None or not many):
            raise InvalidArgument(f"{decision}: give an ID or --filter, not both")
        if not filters:
            if target is None:
                raise InvalidArgument(f"{decision}: give an ID (or --filter for waiting changes)")
            done = decide(
                obj.ops, decision, target, step, environ=os.environ, message=message, by=by
            )
            click.echo(decided_line(done))
            return
        settings = read_settings(obj.ops)
        wanted = parse_filters((*filters, "status=waiting"), CHANGE_FILTER_KEYS)
        found = query_changes(obj.ops, settings, wanted)
        if not found:
            click.echo("No waiting change matches.")
            return
        for record in found:  # one commit each: a refusal names the change it stopped at
            done = decide(
                obj.ops, decision, record.id, None, environ=os.environ, message=message, by=by
            )
            click.echo(decided_line(done))


def decided_line(done: Decided) -> str:
    said = f' ("{done.message}")' if done.message else ""
    if done.kind == "run":
        return (
            f"{done.past} step {done.step} of run {done.id} as {done.user}{said}; "
            "the next `runner reconcile` carries the run on"
        )
    then = (
        "it stays cancelled"
        if done.decision == "reject"
        else "the next `runner reconcile` (or the same command again) runs it"
    )
    return f"{done.past} change {done.id} on {done.node} as {done.user}{said}; {then}"


_decision_command("approve", "Approve wait step STEP of run ID, or change ID waiting for approval.")
_decision_command(
    "reject", "Reject wait step STEP of run ID (the run ends in error), or change ID."
)
_decision_command("continue", "Let run ID go on past wait step STEP.")


@cli.command("cancel")
@click.argument("target", metavar="ID")
@click.option("--message", "-m", default=None, help="Why (recorded in the event).")
@click.option("--by", default=None, help="Who cancels (default: GITHUB_ACTOR, git).")
@click.pass_obj
def cancel_command(obj: Context, target: str, message: str | None, by: str | None) -> None:
    """Cancel run ID (pending or waiting) or change ID (pending or waiting)."""
    done = cancel(obj.ops, target, environ=os.environ, message=message, by=by)
    what = f"run {done.id}" if done.kind == "run" else f"change {done.id} on {done.node}"
    said = f' ("{done.message}")' if done.message else ""
    click.echo(f"cancelled {what} as {done.user}{said}")


__all__ = [
    "cancel_command",
    "list_command",
    "run_command",
    "show_command",
    "workflow_group",
]
