"""``runner reconcile``: the cron entry point (SPEC 3, issue "operations").

One pass, safe to start every few minutes from several machines at once:

1. sync the state branch; stop (exit 4) when the repository is paused;
2. apply what the state branch has not applied yet (changes approved since run now);
3. carry on workflow runs whose waits were decided, mark runs whose runner died ``aborted``;
4. fire due schedules: each fire is claimed by one compare-and-swap on ``schedules/<name>.yaml``,
   so of several reconcilers exactly one runs it;
5. run each applied asset's template ``check`` action; a check that exits 2 (or outputs
   ``drift=true``) records a ``drift`` event, and on an environment with ``self_heal: true``
   the node's ``on_change`` action runs (approval rules apply as to any change).

Every part takes leases without waiting (``--lock-timeout 0`` by default): what another runner
is doing right now is its business, and the next pass looks again. Nothing is done twice: apply
skips nodes already applied with the same inputs, schedules and runs are claimed, checks hold
their node's lease.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from runner.errors import Blocked, ExitCode, RunnerError
from runner.loading.snapshot import Snapshot
from runner.loading.source import OpsRepo
from runner.operations.apply import (
    ApplyOptions,
    ApplyResult,
    apply,
    check_push,
    run_nodes,
    state_store,
)
from runner.operations.pause import ensure_not_paused
from runner.operations.schedules import armed_at, due_schedules
from runner.operations.validate import load_valid
from runner.process import ProcessRunner
from runner.state.events import record_event
from runner.state.records import TERMINAL, holder_id, node_file, now, read_yaml
from runner.state.schedule_state import claim, set_last_run
from runner.state.store import StateStore
from runner.workflows.engine import advance_runs, start_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcileOptions:
    now: datetime | None = None
    drift: bool = True
    apply: ApplyOptions = field(default_factory=lambda: ApplyOptions(lock_timeout=0.0))


@dataclass
class Part:
    """One thing a pass did or left, for the report: ``what`` ran (or was skipped) and how."""

    kind: str  # apply | run | schedule | drift | heal
    subject: str
    status: str
    detail: str = ""
    exit_code: ExitCode = ExitCode.OK


@dataclass
class ReconcileReport:
    parts: list[Part] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        codes = {p.exit_code for p in self.parts}
        for code in (ExitCode.SIGINT, ExitCode.SIGTERM, ExitCode.FAILED):
            if code in codes:
                return code
        return ExitCode.OK


def reconcile(
    ops: OpsRepo,
    options: ReconcileOptions,
    environ: Mapping[str, str],
    cancel: threading.Event,
    runner: ProcessRunner | None = None,
) -> ReconcileReport:
    git = ops.require_git()
    head = load_valid(ops, git.resolve("HEAD")).snapshot
    check_push(options.apply, head)
    store = state_store(ops, head)
    store.sync()
    ensure_not_paused(ops, head, store)
    moment = options.now or now()
    report = ReconcileReport()
    steps: list[Callable[[], None]] = [
        lambda: _apply(ops, options, environ, cancel, runner, report),
        lambda: _runs(ops, options, environ, cancel, runner, report),
        lambda: _schedules(ops, head, store, moment, options, environ, cancel, runner, report),
    ]
    if options.drift:
        steps.append(lambda: _drift(ops, head, store, options, environ, cancel, runner, report))
    for step in steps:
        if cancel.is_set():
            break
        step()
    if options.apply.push:
        store.push()
    return report


def _apply(
    ops: OpsRepo,
    options: ReconcileOptions,
    environ: Mapping[str, str],
    cancel: threading.Event,
    runner: ProcessRunner | None,
    report: ReconcileReport,
) -> None:
    try:
        result = apply(ops, replace(options.apply, push=False), environ, cancel, runner)
    except Blocked as exc:
        report.parts.append(Part("apply", "pending changes", "left", str(exc)))
        return
    _report_changes(report, "apply", result)


def _report_changes(report: ReconcileReport, kind: str, result: ApplyResult) -> None:
    for record in result.records:
        detail = f"change {record.id}"
        if record.status == "waiting":
            detail += f", waits for {', '.join(record.waiting_for)}: runner approve {record.id}"
        report.parts.append(
            Part(kind, f"{record.node} {record.action}", record.status, detail, _code(record))
        )
    for node, upstream in result.held_back:
        report.parts.append(Part(kind, node, "held", f"runs after {upstream}"))


def _code(record: Any) -> ExitCode:
    if record.status == "cancelled":
        return ExitCode.SIGTERM
    if record.status in ("error", "aborted", "skipped"):
        return ExitCode.FAILED
    return ExitCode.OK


def _runs(
    ops: OpsRepo,
    options: ReconcileOptions,
    environ: Mapping[str, str],
    cancel: threading.Event,
    runner: ProcessRunner | None,
    report: ReconcileReport,
) -> None:
    for run in advance_runs(ops, options.apply, environ, cancel, runner):
        status = str(run.status)
        code = ExitCode.FAILED if status in ("error", "aborted") else ExitCode.OK
        report.parts.append(Part("run", f"{run.workflow} {run.id}", status, "", code))


def _schedules(
    ops: OpsRepo,
    head: Snapshot,
    store: StateStore,
    moment: datetime,
    options: ReconcileOptions,
    environ: Mapping[str, str],
    cancel: threading.Event,
    runner: ProcessRunner | None,
    report: ReconcileReport,
) -> None:
    holder = holder_id()
    for schedule, fire in due_schedules(ops, head, store, moment):
        if cancel.is_set():
            return
        claimed = claim(
            store,
            schedule,
            fire,
            str(head.commit),
            holder,
            moment,
            lambda last: _still_running(store, last),
            armed_at=armed_at(ops.require_git(), ops.prefix, schedule, str(head.commit)),
        )
        subject = f"{schedule.name} ({fire.isoformat()})"
        if claimed.outcome != "fired":
            report.parts.append(Part("schedule", subject, claimed.outcome, claimed.reason or ""))
            continue
        overrides = dict(schedule.property_overrides.values) if schedule.property_overrides else {}
        try:
            if schedule.workflow is not None:
                run = start_run(
                    ops,
                    schedule.workflow.value
                    if "/" in schedule.workflow.value or schedule.project is None
                    else f"{schedule.project}/{schedule.workflow.value}",
                    overrides,
                    options.apply,
                    environ,
                    cancel,
                    runner,
                    trigger=f"schedule:{schedule.name}",
                )
                set_last_run(store, schedule.name, "run", run.id)
                report.parts.append(Part("schedule", subject, str(run.status), f"run {run.id}"))
                continue
            assert schedule.target is not None
            assert schedule.action is not None
            result = run_nodes(
                ops,
                head,
                [schedule.target.value],
                schedule.action.value,
                overrides,
                options.apply,
                environ,
                cancel,
                runner,
                kind="schedule",
                reason=f"schedule {schedule.name} for {fire.isoformat()}",
            )
        except RunnerError as exc:
            report.parts.append(Part("schedule", subject, "error", str(exc), ExitCode.FAILED))
            continue
        if result.records:
            set_last_run(store, schedule.name, "change", result.records[0].id)
        _report_changes(report, "schedule", result)


def _still_running(store: StateStore, last: Mapping[str, Any] | None) -> bool:
    """Whether what a schedule started last is still going (its run or change not finished)."""
    if not last or not last.get("id"):
        return False
    ident = str(last["id"])
    if last.get("kind") == "run":
        status = read_yaml(store.read(f"runs/{ident}.yaml")).get("status")
    else:
        status = read_yaml(store.read(f"changes/{ident[:8]}/{ident}.yaml")).get("status")
    return status is not None and status not in TERMINAL


def _drift(
    ops: OpsRepo,
    head: Snapshot,
    store: StateStore,
    options: ReconcileOptions,
    environ: Mapping[str, str],
    cancel: threading.Event,
    runner: ProcessRunner | None,
    report: ReconcileReport,
) -> None:
    """Every applied asset whose template names a ``check`` action runs it, grouped by action
    name so each group is one run with the repo's parallelism."""
    by_action: dict[str, list[str]] = {}
    for path, asset in sorted(head.assets.items()):
        template = head.template_of(asset)
        if template is None or template.check is None:
            continue
        if store.read(node_file("applied", path)) is None:
            continue  # never applied: nothing deployed to drift
        by_action.setdefault(template.check.value, []).append(path)
    for action, nodes in sorted(by_action.items()):
        if cancel.is_set():
            return
        try:
            result = run_nodes(
                ops,
                head,
                nodes,
                action,
                None,
                options.apply,
                environ,
                cancel,
                runner,
                kind="check",
                parallel_targets=True,
                reason="drift check by runner reconcile",
            )
        except Blocked as exc:
            report.parts.append(Part("drift", action, "left", str(exc)))
            continue
        for record in result.records:
            drifted = record.status == "error" and any(
                s.exit_code == 2 or s.outputs.get("drift") == "true" for s in record.steps
            )
            if not drifted:
                status = "in sync" if record.status == "success" else record.status
                report.parts.append(
                    Part("drift", record.node, status, f"change {record.id}", _code(record))
                )
                continue
            record_event(
                store,
                "drift",
                f"{record.node} drifted from its properties ({action})",
                node=record.node,
                change=record.id,
            )
            report.parts.append(Part("drift", record.node, "drift", f"change {record.id}"))
            _heal(ops, head, record.node, options, environ, cancel, runner, report)


def _heal(
    ops: OpsRepo,
    head: Snapshot,
    node: str,
    options: ReconcileOptions,
    environ: Mapping[str, str],
    cancel: threading.Event,
    runner: ProcessRunner | None,
    report: ReconcileReport,
) -> None:
    asset = head.assets[node]
    env = head.environments.get(asset.parent_path)
    template = head.template_of(asset)
    action = template.action_for("change") if template is not None else None
    if env is None or not env.settings.self_heal or action is None:
        return
    try:
        result = run_nodes(
            ops,
            head,
            [node],
            action.value,
            None,
            options.apply,
            environ,
            cancel,
            runner,
            kind="heal",
            reason=f"self-heal after drift found by runner reconcile ({env.path} self_heal)",
        )
    except Blocked as exc:
        report.parts.append(Part("heal", node, "left", str(exc)))
        return
    _report_changes(report, "heal", result)
