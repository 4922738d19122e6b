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

import functools
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from runner.errors import Blocked, ExitCode, RunnerError
from runner.loading.snapshot import Snapshot
from runner.loading.source import OpsRepo
from runner.model import Schedule
from runner.operations.apply import (
    ApplyOptions,
    ApplyResult,
    apply,
    check_push,
    run_nodes,
    state_store,
)
from runner.operations.pause import ensure_not_paused
from runner.operations.schedules import Arming, due_schedules
from runner.operations.validate import load_valid
from runner.process import ProcessRunner
from runner.scheduling import parse_time
from runner.state.events import record_event
from runner.state.records import (
    TERMINAL,
    ChangeRecord,
    dump,
    holder_id,
    iso,
    node_file,
    now,
    read_yaml,
)
from runner.state.schedule_state import claim, set_last_run
from runner.state.store import StateStore, StateView
from runner.workflows.engine import advance_runs, start_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcileOptions:
    now: datetime | None = None
    drift: bool = True
    apply: ApplyOptions = field(default_factory=lambda: ApplyOptions(lock_timeout=0.0))
    # A fire this pass claimed must run: it waits this long for nodes another runner holds.
    claimed_lock_timeout: float = 120.0


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
    one = _Pass(ops, head, store, options, environ, cancel, runner)
    parts: list[Callable[[], None]] = [one.apply, one.runs, one.schedules]
    if options.drift:
        parts.append(one.drift)
    for part in parts:
        if cancel.is_set():
            break
        part()
    if options.apply.push:
        store.push()
    return one.report


@dataclass
class _Pass:
    """One reconcile pass over the head snapshot; each part adds to ``report``."""

    ops: OpsRepo
    head: Snapshot
    store: StateStore
    options: ReconcileOptions
    environ: Mapping[str, str]
    cancel: threading.Event
    runner: ProcessRunner | None
    report: ReconcileReport = field(default_factory=ReconcileReport)

    def apply(self) -> None:
        options = replace(self.options.apply, push=False)
        try:
            result = apply(self.ops, options, self.environ, self.cancel, self.runner)
        except Blocked as exc:
            self._add(Part("apply", "pending changes", "left", str(exc)))
            return
        self._changes("apply", result)

    def runs(self) -> None:
        ran = advance_runs(self.ops, self.options.apply, self.environ, self.cancel, self.runner)
        for run in ran:
            status = str(run.status)
            code = ExitCode.FAILED if status in ("error", "aborted") else ExitCode.OK
            self._add(Part("run", f"{run.workflow} {run.id}", status, "", code))

    def schedules(self) -> None:
        holder = holder_id()
        moment = self.options.now or now()
        arming = Arming(self.ops, str(self.head.commit))  # each schedule file looked up once
        for schedule, fire in due_schedules(self.ops, self.head, self.store, moment, arming):
            if self.cancel.is_set():
                return
            claimed = claim(
                self.store,
                schedule,
                fire,
                str(self.head.commit),
                holder,
                moment,
                self._still_running,
                armed_at=arming(schedule),
            )
            subject = f"{schedule.name} ({fire.isoformat()})"
            if claimed.outcome != "fired":
                self._add(Part("schedule", subject, claimed.outcome, claimed.reason or ""))
                continue
            try:
                self._fire(schedule, fire, subject)
            except RunnerError as exc:
                self._add(Part("schedule", subject, "error", str(exc), ExitCode.FAILED))

    def _fire(self, schedule: Schedule, fire: datetime, subject: str) -> None:
        """Run a claimed fire. It waits for nodes another runner holds: it must run."""
        overrides = dict(schedule.property_overrides.values) if schedule.property_overrides else {}
        waits = max(self.options.apply.lock_timeout, self.options.claimed_lock_timeout)
        options = replace(self.options.apply, lock_timeout=waits, push=False)
        if schedule.workflow is not None:
            name = schedule.workflow.value
            if "/" not in name and schedule.project is not None:
                name = f"{schedule.project}/{name}"
            run = start_run(
                self.ops,
                name,
                overrides,
                options,
                self.environ,
                self.cancel,
                self.runner,
                trigger=f"schedule:{schedule.name}",
                on_recorded=lambda run: set_last_run(self.store, schedule.name, "run", run.id),
            )
            self._add(Part("schedule", subject, str(run.status), f"run {run.id}"))
            return
        assert schedule.target is not None
        assert schedule.action is not None
        told: list[str] = []

        def recorded(records: list[ChangeRecord]) -> None:
            # before the first step: a fire still running elsewhere holds back the next one
            if records:
                told.append(records[0].id)
                set_last_run(self.store, schedule.name, "change", records[0].id)

        result = self._run(
            [schedule.target.value],
            schedule.action.value,
            overrides,
            options,
            kind="schedule",
            reason=f"schedule {schedule.name} for {fire.isoformat()}",
            on_recorded=recorded,
        )
        if result.records and not told:  # it waits for an approval: nothing ran
            set_last_run(self.store, schedule.name, "change", result.records[0].id)
        self._changes("schedule", result)

    def _still_running(self, last: Mapping[str, Any] | None) -> bool:
        """Whether what a schedule started last is still going (its run or change)."""
        if not last or not last.get("id"):
            return False
        ident = str(last["id"])
        if last.get("kind") == "run":
            path = f"runs/{ident}.yaml"
        else:
            path = f"changes/{ident[:8]}/{ident}.yaml"
        status = read_yaml(self.store.read(path)).get("status")
        return status is not None and status not in TERMINAL

    def drift(self) -> None:
        """Every applied asset whose template names a ``check`` action runs it, grouped by
        action name so each group is one run with the repo's parallelism."""
        by_action: dict[str, list[str]] = {}
        for path, asset in sorted(self.head.assets.items()):
            template = self.head.template_of(asset)
            if template is None or template.check is None:
                continue
            if self.store.read(node_file("applied", path)) is None:
                continue  # never applied: nothing deployed to drift
            if not self._check_due(path):
                continue
            by_action.setdefault(template.check.value, []).append(path)
        for action, nodes in sorted(by_action.items()):
            if self.cancel.is_set():
                return
            try:
                result = self._run(
                    nodes,
                    action,
                    None,
                    self.options.apply,
                    kind="check",
                    parallel=True,
                    reason="drift check by runner reconcile",
                )
            except Blocked as exc:
                self._add(Part("drift", action, "left", str(exc)))
                continue
            notes = {node_file("drift", r.node): self._checked(r, action) for r in result.records}
            self.store.update(functools.partial(_constant, notes), f"runner: drift ({action})")

    def _check_due(self, node: str) -> bool:
        """With ``drift: {every: D}`` in runner.yaml, a node checked less than D ago waits."""
        every = self.head.settings.drift_every
        if every <= 0:
            return True
        last = read_yaml(self.store.read(node_file("drift", node))).get("checked")
        if not last:
            return True
        return (self.options.now or now()) - parse_time(str(last)) >= timedelta(seconds=every)

    def _checked(self, record: ChangeRecord, action: str) -> bytes:
        """Report one check, record a drift event (and self-heal); the note for
        ``drift/<node>.yaml``: when the node was checked, and what was found."""
        drifted = record.status == "error" and any(
            s.exit_code == 2 or s.outputs.get("drift") == "true" for s in record.steps
        )
        moment = self.options.now or now()
        result = "drift" if drifted else record.status
        note = {"node": record.node, "checked": iso(moment), "result": result, "change": record.id}
        if not drifted:
            status = "in sync" if record.status == "success" else record.status
            self._add(Part("drift", record.node, status, f"change {record.id}", _code(record)))
            return dump(note)
        record_event(
            self.store,
            "drift",
            f"{record.node} drifted from its properties ({action})",
            node=record.node,
            change=record.id,
        )
        self._add(Part("drift", record.node, "drift", f"change {record.id}"))
        self._heal(record.node)
        return dump(note)

    def _heal(self, node: str) -> None:
        asset = self.head.assets[node]
        env = self.head.environments.get(asset.parent_path)
        template = self.head.template_of(asset)
        action = template.action_for("change") if template is not None else None
        if env is None or not env.settings.self_heal or action is None:
            return
        try:
            result = self._run(
                [node],
                action.value,
                None,
                self.options.apply,
                kind="heal",
                reason=f"self-heal after drift found by runner reconcile ({env.path} self_heal)",
            )
        except Blocked as exc:
            self._add(Part("heal", node, "left", str(exc)))
            return
        self._changes("heal", result)

    def _run(
        self,
        targets: list[str],
        action: str,
        overrides: Mapping[str, Any] | None,
        options: ApplyOptions,
        *,
        kind: str,
        reason: str,
        parallel: bool = False,
        on_recorded: Callable[[list[ChangeRecord]], None] | None = None,
    ) -> ApplyResult:
        return run_nodes(
            self.ops,
            self.head,
            targets,
            action,
            overrides,
            options,
            self.environ,
            self.cancel,
            self.runner,
            kind=kind,
            parallel_targets=parallel,
            reason=reason,
            on_recorded=on_recorded,
        )

    def _changes(self, kind: str, result: ApplyResult) -> None:
        for record in result.records:
            detail = f"change {record.id}"
            if record.status == "waiting":
                groups = ", ".join(record.waiting_for)
                detail += f", waits for {groups}: runner approve {record.id}"
            subject = f"{record.node} {record.action}"
            self._add(Part(kind, subject, record.status, detail, _code(record)))
        for node, upstream in result.held_back:
            self._add(Part(kind, node, "held", f"runs after {upstream}"))

    def _add(self, part: Part) -> None:
        self.report.parts.append(part)


def _constant(files: Mapping[str, bytes | None], view: StateView) -> Mapping[str, bytes | None]:
    return files


def _code(record: ChangeRecord) -> ExitCode:
    if record.status == "cancelled":
        return ExitCode.SIGTERM
    if record.status in ("error", "aborted", "skipped"):
        return ExitCode.FAILED
    return ExitCode.OK
