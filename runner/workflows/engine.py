"""Starting workflow runs and carrying them on (SPEC 2.5).

A run is advanced by one process at a time: the holder of the lease on the pseudo-node
``/runs/<run-id>``. Advancing means: run every step whose turn has come (up to the repo's
parallelism at once), record each step as it changes, and stop when nothing more can move. A
``wait`` step, or a change held by ``requires_approval_from``, leaves its step ``waiting`` while
independent branches go on; the run then ends the pass ``waiting``, its lease is given back,
and the next ``runner reconcile`` after a decision carries it on — at the run's own commit,
never HEAD's, so a run finishes what it started.

Order of work, so that a crash or a race never loses a record:

1. take the lease (a run whose runner died is found by its expired lease and ends ``aborted``);
2. commit the run record before the first step runs (``start_run``), or re-read it under the
   lease (``advance_runs``);
3. run steps; the record is committed at most ~1.5 s behind, logs likewise;
4. commit the outcome, give the lease back, push when a remote is configured.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from runner.errors import Blocked, RunnerError
from runner.execution.executor import Executor, StepOutcome
from runner.execution.recorder import LogWriter, Recorder
from runner.execution.stepenv import (
    Launch,
    NodeContext,
    StepSetupError,
    base_environment,
    prepare,
    write_properties_file,
)
from runner.identity import current_user
from runner.loading.snapshot import Snapshot, load, read_settings
from runner.loading.source import OpsRepo
from runner.loading.yamlfile import SecretRef
from runner.model import Settings
from runner.operations.apply import ApplyOptions, run_nodes, target_assets
from runner.operations.pause import ensure_not_paused
from runner.operations.validate import load_valid
from runner.planning.dag import PlannedStep
from runner.process import ProcessRunner, SubprocessRunner
from runner.properties.merge import merge_values, settle_values
from runner.secrets import Masker, MissingSecret, SecretStore
from runner.state import leases
from runner.state.records import (
    ChangeRecord,
    change_from_yaml,
    change_to_yaml,
    holder_id,
    iso,
    new_id,
    now,
    read_yaml,
)
from runner.state.store import StateStore, StateView
from runner.workflows.plan import PlanStep, RunPlan, build_plan, resolve_workflow
from runner.workflows.records import (
    ACTIVE,
    FAILED,
    STEP_END,
    RunRecord,
    RunStep,
    change_approval_path,
    decision_text,
    groups_text,
    list_runs,
    log_path,
    read_decision,
    read_run,
    run_to_yaml,
)

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 1.5  # seconds: how far the run record on the state branch may lag behind


@dataclass(frozen=True)
class StepResult:
    """What one pass made of a step."""

    status: str
    changes: tuple[str, ...] = ()
    waiting_for: tuple[str, ...] = ()
    message: str = ""
    decision: dict[str, Any] | None = None
    error: str | None = None
    exit_code: int | None = None


# --- the public entry points -------------------------------------------------------------------


def start_run(
    ops: OpsRepo,
    name: str,
    overrides: Mapping[str, Any] | None,
    options: ApplyOptions,
    environ: Mapping[str, str],
    cancel: threading.Event,
    runner: ProcessRunner | None = None,
    *,
    trigger: str = "manual",
    by: str | None = None,
    head: str = "HEAD",
    on_recorded: Callable[[RunRecord], None] | None = None,
) -> RunRecord:
    """``runner workflow run NAME``: a new run of workflow ``name`` (``release`` or
    ``pay/release``) at ``head``, advanced until it finishes or waits. ``on_recorded`` is told
    the run once its record is committed, before its first step."""
    git = ops.require_git()
    snap = load_valid(ops, git.resolve(head)).snapshot
    store = StateStore.for_settings(git, snap.settings)
    store.sync()
    qualified = resolve_workflow(snap, name)
    ensure_not_paused(ops, snap, store)
    plan = build_plan(snap, qualified)
    record = RunRecord(
        id=new_id(),
        workflow=qualified,
        name=snap.workflows[qualified].name,
        commit=str(snap.commit),
        trigger=trigger,
        by=current_user(environ, git, by),
        created=iso(now()),
        overrides=storable(settle_values(dict(overrides or {}))),
        steps=initial_steps(plan),
    )
    advance = _Advance(ops, snap, plan, store, record, options, environ, cancel, runner)
    advance.on_recorded = on_recorded
    return advance.start()


def advance_runs(
    ops: OpsRepo,
    options: ApplyOptions,
    environ: Mapping[str, str],
    cancel: threading.Event,
    runner: ProcessRunner | None = None,
) -> list[RunRecord]:
    """For ``runner reconcile``: carry on every waiting run that has news (a decision on one of
    its waits, an approval or cancellation of one of its changes), each at its own commit; end
    ``aborted`` every pending or running run whose runner died (its lease expired). A run
    another live process holds is left alone. Returns the runs it touched, as they are now."""
    store = StateStore.for_settings(ops.require_git(), read_settings(ops))
    store.sync()
    touched: list[RunRecord] = []
    news: list[RunRecord] = []
    for record in list_runs(store):
        if record.status == "waiting" and has_news(store, record):
            news.append(record)
        elif record.status in ("pending", "running") and not _live(store, record):
            aborted = _abort(store, record)
            if aborted is not None:
                touched.append(aborted)
    if news and not cancel.is_set():
        ensure_not_paused(ops, load(ops, "HEAD"), store)
    for record in news:
        if cancel.is_set():
            break
        try:
            snap = load_valid(ops, record.commit).snapshot
            plan = build_plan(snap, record.workflow)
        except RunnerError as exc:  # e.g. a pinned template rev deleted since: say so, go on
            log.warning("run %s cannot be carried on at %s: %s", record.id, record.commit, exc)
            continue
        advance = _Advance(ops, snap, plan, store, record, options, environ, cancel, runner)
        carried = advance.carry_on()
        if carried is not None:
            touched.append(carried)
    if touched and store.remote:
        store.push()
    return touched


def has_news(view: StateStore | StateView, record: RunRecord) -> bool:
    """Whether a waiting run can move: one of its waiting steps was decided, or a change it
    waits on was approved, rejected or cancelled."""
    for step in record.waiting_steps():
        if step.kind == "wait" and read_decision(view, record.id, step.name) is not None:
            return True
        if step.kind == "change" and step.changes:
            changes = [c for c in (_read_change(view, i) for i in step.changes) if c is not None]
            waiting = [c for c in changes if c.status == "waiting"]
            if not waiting or any(view.read(change_approval_path(c.id)) for c in waiting):
                return True
    return False


def initial_steps(plan: RunPlan) -> tuple[RunStep, ...]:
    return tuple(RunStep(name=s.name, kind=s.kind, needs=s.needs) for s in plan.steps.values())


def storable(value: Any) -> Any:
    """Overrides as plain YAML: a secret reference as ``{secret: NAME}`` (still a reference
    when read back, never a value)."""
    if isinstance(value, SecretRef):
        return {"secret": value.name}
    if isinstance(value, dict):
        return {str(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


# --- dead runners -------------------------------------------------------------------------------


def _live(store: StateStore, record: RunRecord) -> bool:
    lease = leases.read_lease(store, record.node)
    return lease is not None and not lease.expired(now())


def _abort(store: StateStore, record: RunRecord) -> RunRecord | None:
    """A run whose runner died: take its lease, end running steps ``aborted`` and steps that
    never started ``cancelled`` (their waiting changes too), and the run ``aborted``."""
    holder = holder_id()
    taken, _ = leases.try_acquire_many(store, {record.node: record.id}, holder, 30.0)
    if not taken:
        return None
    try:
        moment = iso(now())
        result: list[RunRecord] = []

        def mutate(view: StateView) -> dict[str, bytes | None]:
            result.clear()
            current = read_run(view, record.id)
            if current is None or current.status not in ("pending", "running"):
                return {}
            steps = []
            out: dict[str, bytes | None] = {}
            for step in current.steps:
                if step.status == "running":
                    step = replace(step, status="aborted", finished=moment, error="its runner died")
                elif step.status in ("pending", "waiting", "queued"):
                    out.update(cancel_changes(view, step.changes, f"run {record.id} aborted"))
                    step = replace(step, status="cancelled", message="the run was aborted")
                steps.append(step)
            aborted = replace(current, status="aborted", finished=moment, steps=tuple(steps))
            result.append(aborted)
            out[aborted.path] = run_to_yaml(aborted)
            return out

        store.update(mutate, f"runner: run {record.id} aborted (its runner died)")
        return result[0] if result else None
    finally:
        leases.release_many(store, taken)


def cancel_changes(
    view: StateView, change_ids: tuple[str, ...], reason: str
) -> dict[str, bytes | None]:
    """The waiting or pending ones of ``change_ids``, ``cancelled`` (for a mutation)."""
    out: dict[str, bytes | None] = {}
    moment = iso(now())
    for change_id in change_ids:
        record = _read_change(view, change_id)
        if record is None or record.status not in ("waiting", "pending"):
            continue
        cancelled = replace(
            record, status="cancelled", finished=moment, reasons=(*record.reasons, reason)
        )
        out[record.path] = change_to_yaml(cancelled)
    return out


def _read_change(view: StateStore | StateView, change_id: str) -> ChangeRecord | None:
    data = view.read(f"changes/{change_id[:8]}/{change_id}.yaml")
    return change_from_yaml(data) if data is not None else None


# --- the lease on a run -------------------------------------------------------------------------


class RunLease:
    """The lease on ``/runs/<run-id>``, renewed in the background while held."""

    def __init__(
        self, store: StateStore, record: RunRecord, settings: Settings, cancel: threading.Event
    ) -> None:
        self.record = record
        self.holding = leases.Holding(
            store, holder_id(), settings.lease_ttl, settings.lease_renew, cancel, "run-lease"
        )
        self.took_over: leases.Lease | None = None

    @property
    def holder(self) -> str:
        return self.holding.holder

    def take(self, timeout: float) -> bool:
        taken, _ = self.holding.take({self.record.node: self.record.id}, timeout)
        self.took_over = taken[0].took_over if taken else None
        return bool(taken)

    def release(self) -> None:
        self.holding.release()


# --- one pass over a run ------------------------------------------------------------------------


class _Advance:
    """One process advancing one run: the lease, the record, the steps."""

    def __init__(
        self,
        ops: OpsRepo,
        snap: Snapshot,
        plan: RunPlan,
        store: StateStore,
        record: RunRecord,
        options: ApplyOptions,
        environ: Mapping[str, str],
        cancel: threading.Event,
        runner: ProcessRunner | None,
    ) -> None:
        self.ops = ops
        self.git = ops.require_git()
        self.snap = snap
        self.plan = plan
        self.store = store
        self.record = record
        self.options = replace(options, push=False)  # pushed once, at the end of the pass
        self.environ = environ
        self.cancel = cancel
        self.runner = runner or SubprocessRunner()
        self.settings = snap.settings
        self.secrets = SecretStore(environ, options.secrets_file)
        self.masker = Masker(self.secrets.known_values())
        self.logs = Recorder(store, self.masker, FLUSH_INTERVAL)
        self.lease = RunLease(store, record, snap.settings, cancel)
        self.on_recorded: Callable[[RunRecord], None] | None = None
        self.parallelism = max(1, options.parallel or snap.settings.parallelism)
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._dirty = False
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self._scratch: Path | None = None
        self._workdir: Path | None = None
        self._checkout_lock = threading.Lock()

    # --- entry points ---------------------------------------------------------------------

    def start(self) -> RunRecord:
        """A new run: the lease, the record (refused while another run of the same workflow is
        active, unless allowed), then the steps."""
        if not self.lease.take(self.options.lock_timeout):
            raise Blocked(f"run {self.record.id} is held by another runner")
        try:
            self._create()
            return self._advance()
        finally:
            self.lease.release()
            self._push()

    def carry_on(self) -> RunRecord | None:
        """Carry on a recorded run, unless another live process holds it (None)."""
        if not self.lease.take(0.0):
            return None
        try:
            current = read_run(self.store, self.record.id)
            if current is None or current.status not in ACTIVE:
                return None
            if self.lease.took_over is not None and current.status != "waiting":
                self.lease.release()
                return _abort(self.store, current)
            self.record = current
            return self._advance()
        finally:
            self.lease.release()

    def _create(self) -> None:
        record = self.record
        conflict: list[RunRecord] = []
        allowed = self.settings.allow_parallel_workflow

        def mutate(view: StateView) -> dict[str, bytes | None]:
            conflict.clear()
            if not allowed:
                for other in list_runs(view):
                    if other.workflow == record.workflow and other.status in ACTIVE:
                        conflict.append(other)
                        return {}
            return {record.path: run_to_yaml(record)}

        self.store.update(mutate, f"runner: run {record.id} of {record.workflow} recorded")
        if conflict:
            other = conflict[0]
            raise Blocked(
                f"run {other.id} of {other.workflow} is {other.status} (started {other.created}); "
                "runner.yaml allow_parallel.runs_of_same_workflow is false: let it finish or "
                f"`runner cancel {other.id}`"
            )
        if self.on_recorded is not None:
            self.on_recorded(record)

    # --- the pass -------------------------------------------------------------------------

    def _advance(self) -> RunRecord:
        moment = iso(now())
        with self._lock:
            self.record = replace(
                self.record,
                status="running",
                started=self.record.started or moment,
                finished=None,
                holder=self.lease.holder,
            )
            self._dirty = True
        self._flush(f"runner: run {self.record.id} running")
        self.logs.start()
        self._writer = threading.Thread(target=self._write_loop, name="run-writer", daemon=True)
        self._writer.start()
        try:
            self._loop()
            self._conclude()
        finally:
            self._stop.set()
            self._writer.join()
            try:
                self.logs.stop(f"runner: run {self.record.id} logs")
            finally:
                self._flush(f"runner: run {self.record.id} {self.record.status}")
                if self._scratch is not None:
                    shutil.rmtree(self._scratch, ignore_errors=True)
        return self.record

    def _loop(self) -> None:
        running: dict[Future[StepResult], str] = {}
        looked_at: set[str] = set()  # steps started (or looked at again) in this pass
        with ThreadPoolExecutor(self.parallelism, thread_name_prefix="workflow-step") as pool:
            while True:
                self._start_ready(pool, running, looked_at)
                if not running:
                    return
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    try:
                        result = future.result()
                    except Exception as exc:  # a bug: the step errors, the run goes on
                        log.debug("step %s", name, exc_info=True)
                        result = StepResult(
                            "error", error=f"internal error: {type(exc).__name__}: {exc}"
                        )
                    self._set(name, result)

    def _start_ready(
        self,
        pool: ThreadPoolExecutor,
        running: dict[Future[StepResult], str],
        looked_at: set[str],
    ) -> None:
        """Decide or start every step whose turn has come (deciding one may free others)."""
        moved = True
        while moved and not self.cancel.is_set():
            moved = False
            for name in self.plan.order:
                status = self._status(name)
                if name in looked_at or status not in ("pending", "waiting"):
                    continue
                if any(self._status(p) not in STEP_END for p in self.plan.preds(name)):
                    continue
                if status == "pending":
                    decided = self._decide(self.plan.steps[name])
                    if decided is not None:
                        self._set(name, decided)
                        moved = True
                        continue
                if len(running) >= self.parallelism:
                    continue
                looked_at.add(name)
                self._started(name)
                self._flush(f"runner: run {self.record.id} step {name} started")
                running[pool.submit(self._execute, self.plan.steps[name])] = name

    def _decide(self, leaf: PlanStep) -> StepResult | None:
        """``skipped`` or ``cancelled`` without running, or None: run it."""
        before = [n for n in self.plan.order if any(n in judged for _, judged in leaf.checks)]
        cancelled = [n for n in before if self._status(n) == "cancelled"]
        if cancelled:
            return StepResult("cancelled", message=f"{cancelled[0]} was cancelled")
        for condition, judged in leaf.checks:
            failed = [n for n in before if n in judged and self._status(n) in FAILED]
            if condition == "success()" and failed:
                return StepResult("skipped", message=f"skipped: {failed[0]} failed")
            if condition == "failure()" and not failed:
                return StepResult("skipped", message="skipped: if: failure() and nothing failed")
        return None

    def _execute(self, leaf: PlanStep) -> StepResult:
        try:
            if leaf.kind == "wait":
                return self._wait(leaf)
            if leaf.kind == "change":
                return self._change(leaf)
            return self._shell(leaf)
        except RunnerError as exc:
            return StepResult("error", error=self.masker.mask(str(exc)))

    def _conclude(self) -> None:
        moment = iso(now())
        with self._lock:
            statuses = {s.name: s.status for s in self.record.steps}
            leaves = self.plan.order
            if self.cancel.is_set():
                for name in leaves:
                    if statuses[name] not in STEP_END:
                        self._set_locked(
                            name, StepResult("cancelled", message="stopped by a signal")
                        )
                status = "cancelled"
            else:
                found = {statuses[n] for n in leaves}
                if "waiting" in found:
                    status = "waiting"
                elif found & {"cancelled"}:
                    status = "cancelled"
                elif found & (FAILED | {"pending", "running"}):
                    status = "error"
                else:
                    status = "success"
            self.record = replace(
                self.record, status=status, finished=None if status == "waiting" else moment
            )
            self._dirty = True
        if self.cancel.is_set():
            self._cancel_waiting_changes()

    def _cancel_waiting_changes(self) -> None:
        ids = tuple(i for s in self.record.steps if s.kind == "change" for i in s.changes)
        reason = f"run {self.record.id} cancelled"

        def mutate(view: StateView) -> dict[str, bytes | None]:
            return cancel_changes(view, ids, reason)

        if ids:
            self.store.update(mutate, f"runner: changes of run {self.record.id} cancelled")

    # --- the three kinds of step ----------------------------------------------------------

    def _wait(self, leaf: PlanStep) -> StepResult:
        groups = tuple(r.value for r in leaf.step.approval_from)
        decision = read_decision(self.store, self.record.id, leaf.name)
        if decision is None:
            verb = "approve" if groups else "continue"
            hint = f"runner {verb} {self.record.id} {leaf.name}"
            message = leaf.step.message or f"waits for {groups_text(groups)}: {hint}"
            return StepResult("waiting", waiting_for=groups, message=message)
        if decision.get("decision") in ("approve", "continue"):
            return StepResult("success", decision=decision, message=decision_text(decision))
        said = f": {decision['message']}" if decision.get("message") else ""
        return StepResult(
            "error", decision=decision, error=f"rejected by {decision.get('user')}{said}"
        )

    def _change(self, leaf: PlanStep) -> StepResult:
        step = leaf.step
        assert step.action is not None
        action = step.action.value
        current = self.record.step(leaf.name)
        before_ids = current.changes if current is not None else ()
        before = [c for c in (_read_change(self.store, i) for i in before_ids) if c is not None]
        targets: list[str] = [t.value for t in step.targets]
        if before:
            verdict = self._verdict(before)
            if verdict is not None:
                return verdict
            ended = {c.node for c in before if c.status != "waiting"}
            targets = [a for a in target_assets(self.snap, targets, action) if a not in ended]
            if not targets:
                return self._from_changes(before)
        result = run_nodes(
            self.ops,
            self.snap,
            targets,
            action,
            self._overrides(leaf),
            self.options,
            self.environ,
            self.cancel,
            self.runner,
            kind="workflow",
            parallel_targets=step.run_as == "parallel",
            run_id=self.record.id,
            run_step=leaf.name,
            reason=f"workflow {self.record.workflow} run {self.record.id} step {leaf.name}",
        )
        latest = {c.id: c for c in before if c.status != "waiting"}
        latest.update({c.id: c for c in result.records})
        return self._from_changes(list(latest.values()))

    def _verdict(self, before: list[ChangeRecord]) -> StepResult | None:
        """A change step looked at again: its outcome when nothing can run (still waiting, or
        a change of it was rejected or cancelled), else None: run what was approved."""
        ids = tuple(c.id for c in before)
        for change in before:
            if change.status == "cancelled":
                decision = read_yaml(self.store.read(change_approval_path(change.id)))
                if decision.get("decision") == "reject":
                    said = f": {decision['message']}" if decision.get("message") else ""
                    return StepResult(
                        "error",
                        changes=ids,
                        error=f"change {change.id} of {change.node} rejected by "
                        f"{decision.get('user')}{said}",
                    )
                return StepResult(
                    "cancelled", changes=ids, message=f"change {change.id} was cancelled"
                )
        waiting = [c for c in before if c.status == "waiting"]
        if waiting and not any(self.store.read(change_approval_path(c.id)) for c in waiting):
            return self._from_changes(before)
        return None

    def _from_changes(self, changes: list[ChangeRecord]) -> StepResult:
        ids = tuple(c.id for c in sorted(changes, key=lambda c: c.id))
        waiting = [c for c in changes if c.status == "waiting"]
        if waiting:
            groups = tuple(dict.fromkeys(g for c in waiting for g in c.waiting_for))
            hints = "; ".join(f"runner approve {c.id} ({c.node})" for c in waiting)
            return StepResult(
                "waiting",
                changes=ids,
                waiting_for=groups,
                message=f"approval from {groups_text(groups)}: {hints}",
            )
        if any(c.status == "cancelled" for c in changes):
            return StepResult("cancelled", changes=ids)
        failed = [c for c in changes if c.status in ("error", "aborted", "skipped")]
        if failed:
            return StepResult("error", changes=ids, error=_change_error(failed[0]))
        count = len(changes)
        return StepResult("success", changes=ids, message=f"{count} change(s) succeeded")

    def _overrides(self, leaf: PlanStep) -> dict[str, Any]:
        """Layer 6 for a step: the workflows' property_overrides (innermost lowest), the change
        step's own, then the run's ``--set``."""
        values: dict[str, Any] = {}
        for layer in leaf.layers:
            values = merge_values(values, layer.values)
        if leaf.step.property_overrides is not None:
            values = merge_values(values, leaf.step.property_overrides.values)
        values = merge_values(values, self.record.overrides)
        return storable(values)  # type: ignore[no-any-return]

    def _shell(self, leaf: PlanStep) -> StepResult:
        assert leaf.step.run is not None
        planned = PlannedStep(
            id=f"{self.record.node}:{leaf.name}",
            node=self.record.node,
            action=self.record.workflow,
            name=leaf.name,
            run=leaf.step.run,
            timeout=leaf.step.timeout,
            retries=leaf.step.retries,
        )
        hooks = _ShellHooks(self, leaf)
        executor = Executor(self.runner, hooks, parallelism=1, fail_fast=False, cancel=self.cancel)
        outcome = executor.run([planned], [])[planned.id]
        error = self.masker.mask(outcome.error) if outcome.error else None
        attempts = f" after {outcome.attempts} attempts" if outcome.attempts > 1 else ""
        return StepResult(
            outcome.status,
            error=error,
            exit_code=outcome.exit_code,
            message=f"exit code {outcome.exit_code}{attempts}"
            if outcome.exit_code is not None
            else "",
        )

    def checkout(self) -> Path:
        """The ops root in a private checkout of the run's commit (made once per pass)."""
        with self._checkout_lock:
            if self._workdir is None:
                self._scratch = Path(tempfile.mkdtemp(prefix="gitops-runner-run-"))
                folder = self._scratch / "checkout"
                self.git.checkout_to(self.record.commit, folder)
                self._workdir = folder / self.ops.prefix if self.ops.prefix else folder
            return self._workdir

    def scratch_for(self, leaf: PlanStep) -> Path:
        self.checkout()
        assert self._scratch is not None
        folder = self._scratch / "steps" / leaf.name.replace("/", "__")
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        return folder

    # --- the record -----------------------------------------------------------------------

    def _status(self, name: str) -> str:
        with self._lock:
            step = self.record.step(name)
            return step.status if step is not None else "pending"

    def _started(self, name: str) -> None:
        with self._lock:
            step = self.record.step(name)
            assert step is not None
            status = step.status if step.kind == "wait" else "running"
            self.record = self.record.with_step(
                replace(step, status=status, started=step.started or iso(now()))
            )
            self._refresh_groups()
            self._dirty = True

    def _set(self, name: str, result: StepResult) -> None:
        with self._lock:
            self._set_locked(name, result)

    def _set_locked(self, name: str, result: StepResult) -> None:
        step = self.record.step(name)
        assert step is not None
        moment = iso(now())
        ended = result.status in STEP_END
        updated = replace(
            step,
            status=result.status,
            started=step.started or (moment if result.status != "skipped" else None),
            finished=moment if ended else None,
            changes=result.changes or step.changes,
            waiting_for=result.waiting_for,
            message=self.masker.mask(result.message),
            decision=result.decision or step.decision,
            error=self.masker.mask(result.error) if result.error else None,
            exit_code=result.exit_code,
        )
        self.record = self.record.with_step(updated)
        self._refresh_groups()
        self._dirty = True

    def _refresh_groups(self) -> None:
        """Groups and nested workflows take their status and times from the steps below."""
        for entry in self.plan.steps.values():
            if entry.is_leaf:
                continue
            below = [s for s in (self.record.step(n) for n in entry.leaves) if s is not None]
            current = self.record.step(entry.name)
            if current is None or not below:
                continue
            starts = [s.started for s in below if s.started]
            status = _group_status([s.status for s in below])
            ends = [s.finished for s in below if s.finished]
            self.record = self.record.with_step(
                replace(
                    current,
                    status=status,
                    started=min(starts) if starts else None,
                    finished=max(ends) if status in STEP_END and ends else None,
                    waiting_for=_waiting_for(below),
                )
            )

    def _flush(self, message: str = "runner: run progress") -> None:
        """Commit the record if it changed. Flushes take turns (the writer thread and the
        loop both flush), so an older copy never lands after a newer one."""
        with self._flushing:
            with self._lock:
                if not self._dirty:
                    return
                record = self.record
                self._dirty = False

            def mutate(view: StateView) -> dict[str, bytes | None]:
                current = read_run(view, record.id)
                return {record.path: run_to_yaml(keep_decisions(record, current))}

            try:
                self.store.update(mutate, message)
            except Exception:
                with self._lock:
                    self._dirty = True
                raise

    def _write_loop(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL):
            try:
                self._flush()
            except Exception as exc:  # tried again at the next tick and at the end
                log.warning("could not record run %s: %s", self.record.id, exc)

    def _push(self) -> None:
        if self.store.remote:
            self.store.push()


class _ShellHooks:
    """Executor hooks for a workflow ``run:`` step: its command, log and environment."""

    def __init__(self, advance: _Advance, leaf: PlanStep) -> None:
        self.advance = advance
        self.leaf = leaf
        self.outcome: StepOutcome | None = None

    def launch(self, step: PlannedStep, outputs: Mapping[str, Mapping[str, str]]) -> Launch:
        advance = self.advance
        record = advance.record
        context = NodeContext(
            node=record.node,
            action=record.workflow,
            change_id=record.id,
            commit=record.commit,
            properties=merge_values({}, _values(advance._overrides(self.leaf))),
            workdir=advance.checkout(),
            scratch=advance.scratch_for(self.leaf),
        )
        try:
            properties_file = write_properties_file(context, advance.secrets)
        except MissingSecret as exc:
            raise StepSetupError(str(exc)) from None
        launch = prepare(
            context,
            step.name,
            step.run,
            (),
            outputs,
            advance.secrets,
            properties_file,
            base_environment(advance.environ),
        )
        env = {
            k: v
            for k, v in launch.env.items()
            if k not in ("RUNNER_NODE", "RUNNER_ACTION", "RUNNER_CHANGE_ID", "RUNNER_OUTPUTS")
        }
        env.update(
            {
                "RUNNER_RUN_ID": record.id,
                "RUNNER_WORKFLOW": record.workflow,
                "RUNNER_COMMIT": record.commit,
                "RUNNER_STEP": self.leaf.name,
            }
        )
        return replace(launch, env=env)

    def log(self, step: PlannedStep, attempt: int) -> LogWriter:
        advance = self.advance
        writer = advance.logs.log_stream(log_path(advance.record.id, self.leaf.name))
        if attempt > 1:
            writer.note(f"--- attempt {attempt} ---\n")
        return writer

    def started(self, step: PlannedStep, attempt: int) -> None:
        return None

    def finished(self, step: PlannedStep, outcome: StepOutcome) -> None:
        self.outcome = outcome
        if outcome.error and outcome.status == "error":
            self.log(step, 1).note(f"error: {self.advance.masker.mask(outcome.error)}\n")


# --- small helpers ------------------------------------------------------------------------------


def _values(stored: Any) -> dict[str, Any]:
    return stored if isinstance(stored, dict) else {}


def _waiting_for(steps: list[RunStep]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(g for s in steps if s.status == "waiting" for g in s.waiting_for))


def _group_status(statuses: list[str]) -> str:
    found = set(statuses)
    if "running" in found:
        return "running"
    if "waiting" in found:
        return "waiting"
    if found <= STEP_END:
        if found == {"skipped"}:
            return "skipped"
        if "cancelled" in found:
            return "cancelled"
        if found & FAILED:
            return "error"
        return "success"
    return "running" if found & STEP_END else "pending"


def _change_error(change: ChangeRecord) -> str:
    failed = [s for s in change.steps if s.status in ("error", "cancelled", "aborted")]
    detail = "; ".join(f"{s.id}: {s.error or s.status}" for s in failed)
    return f"change {change.id} of {change.node} {change.status}" + (
        f" ({detail})" if detail else ""
    )


def keep_decisions(ours: RunRecord, theirs: RunRecord | None) -> RunRecord:
    """``ours`` with the decisions recorded meanwhile by ``runner approve`` kept."""
    if theirs is None:
        return ours
    steps = []
    for step in ours.steps:
        other = theirs.step(step.name)
        if step.decision is None and other is not None and other.decision is not None:
            step = replace(step, decision=other.decision)
        steps.append(step)
    return replace(ours, steps=tuple(steps))
