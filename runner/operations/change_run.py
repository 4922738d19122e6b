"""One run of changes on nodes: take their leases, hold back what waits for an approval,
record each change before its first step, run the step DAG and record every result.

``runner apply``, ``runner run``, ``resume``/``retry``, workflow change steps, schedules and
drift checks all end here (see ``runner.operations.apply``). Order of work, so that a crash or
a race never loses or duplicates a record:

1. leave out the nodes that need an approval they do not have (recorded ``waiting``), and the
   nodes ordered after them;
2. take a lease on every node to run (waiting up to ``--lock-timeout``); a lease whose holder
   died is taken over and the dead holder's change is marked ``aborted``;
3. re-read the state: a node another runner already applied with these inputs is left out;
4. commit the change records (``pending``) before the first step starts;
5. run, committing step updates and logs at most a couple of seconds behind;
6. record ``applied/`` and ``outputs/`` of each node that succeeded, and ``applied.yaml`` when
   the whole plan did; release the leases; push when asked.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import networkx as nx

from runner.changes import Inputs
from runner.errors import Blocked, ExitCode
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
from runner.identity import member_of
from runner.loading.snapshot import Snapshot
from runner.loading.source import OpsRepo
from runner.model import Layer
from runner.operations import gates
from runner.operations.plan import Planned
from runner.planning.dag import PlannedStep
from runner.planning.plan import NodePlan, Plan
from runner.process import ProcessRunner
from runner.properties.converge import Converger
from runner.render.progress import Progress
from runner.secrets import Masker, MissingSecret, SecretStore
from runner.state import leases as leases
from runner.state.read import APPLIED_MARKER
from runner.state.records import (
    ChangeRecord,
    StepRecord,
    change_from_yaml,
    change_to_yaml,
    dump,
    holder_id,
    iso,
    new_id,
    node_file,
    now,
    read_yaml,
)
from runner.state.store import StateStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApplyOptions:
    base: str | None = None
    head: str = "HEAD"
    targets: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    allow_destroy: bool = False
    parallel: int | None = None
    keep_going: bool = False
    push: bool = False
    lock_timeout: float = 120.0
    secrets_file: Path | None = None
    plan_file: Path | None = None
    progress: Progress | None = field(default=None, compare=False)  # a terminal status line


@dataclass
class ApplyResult:
    plan: Plan | None
    records: list[ChangeRecord] = field(default_factory=list)  # ran, or wait for approval
    skipped_nodes: list[str] = field(default_factory=list)  # already applied with these inputs
    held_back: list[tuple[str, str]] = field(default_factory=list)  # (node, the node it waits on)
    refused: list[ChangeRecord] = field(default_factory=list)  # rejected for these inputs
    exit_code: ExitCode = ExitCode.OK

    @property
    def status(self) -> str:
        if not self.records:
            return "nothing to do"
        statuses = {r.status for r in self.records}
        for status in ("cancelled", "aborted", "error", "skipped", "waiting"):
            if status in statuses:
                return status
        return "success"

    @property
    def waiting(self) -> list[ChangeRecord]:
        return [r for r in self.records if r.status == "waiting"]


def state_store(ops: OpsRepo, snapshot: Snapshot) -> StateStore:
    return StateStore.for_settings(ops.require_git(), snapshot.settings)


class ChangeRun:
    """One execution: leases, records, checkout, executor hooks."""

    def __init__(
        self,
        ops: OpsRepo,
        planned: Planned,
        options: ApplyOptions,
        secrets: SecretStore,
        environ: Mapping[str, str],
        cancel: threading.Event,
        runner: ProcessRunner,
        overrides: Layer | None = None,
        run_id: str | None = None,
        run_step: str | None = None,
    ) -> None:
        self.ops = ops
        self.git = ops.require_git()
        self.planned = planned
        self.options = options
        self.secrets = secrets
        self.environ = base_environment(environ)
        self.cancel = cancel
        self.runner = runner
        self.overrides = overrides
        self.run_id = run_id
        self.run_step = run_step
        self.store = state_store(ops, planned.head)
        self.masker = Masker(secrets.known_values())
        self.recorder = Recorder(self.store, self.masker)
        self.holder = holder_id()
        self.settings = planned.head.settings
        self.head_inputs = Inputs(planned.head)
        self.base_converger = Converger(planned.base) if planned.base is not None else None
        self.kind = "apply"
        # told the change records once they are committed, before their first step runs
        self.on_recorded: Callable[[list[ChangeRecord]], None] | None = None
        self.records: dict[str, str] = {}  # node → change id
        self.held: list[ChangeRecord] = []  # waiting for approval, or refused, not run
        self.approved: dict[str, ChangeRecord] = {}  # node → its approved waiting record
        self.settles = False  # whether a change that runs a node's own action counts as applied
        self.brought_to: dict[str, str] = {}  # node → the digest such a change applied
        self.contexts: dict[str, NodeContext] = {}
        self.property_files: dict[str, Path] = {}
        self.scratch = Path(tempfile.mkdtemp(prefix="gitops-runner-"))
        self.holding = leases.Holding(
            self.store, self.holder, self.settings.lease_ttl, self.settings.lease_renew, cancel
        )

    # --- the whole run ------------------------------------------------------------------------

    def execute(
        self, work: list[NodePlan], kind: str, prior: ChangeRecord | None = None
    ) -> ApplyResult:
        """Run ``work``. With ``prior`` (one node): ``resume`` carries on that record, ``retry``
        starts a new one linked by ``retry_of``; steps that succeeded before are not run again.
        Nodes that need an approval first are recorded ``waiting`` and left out (with the nodes
        that depend on them) until approved."""
        result = ApplyResult(self.planned.plan)
        self.kind = kind
        done: dict[str, StepOutcome] = {}
        ids = {c.node: new_id() for c in work}
        created = iso(now())
        if prior is not None and kind == "resume":
            ids[prior.node] = prior.id
        if prior is None:
            work = self._gate(work, kind, ids, created, result)
            ids = {c.node: self._id_for(c.node, ids) for c in work}
        try:
            if prior is not None:
                self._check_approved(prior)
            if work:
                self._take_leases(ids)
            if kind == "apply":
                work = self._not_yet_applied(work, result)
            if work:
                if prior is not None:
                    record, done = self._from_prior(prior, work[0], kind, created, ids[prior.node])
                    self.recorder.put(record)
                    self.records[record.node] = record.id
                    work = work[:1]
                for change in work if prior is None else ():
                    record = self._new_record(change, kind, ids[change.node], created)
                    self.recorder.put(record)
                    self.records[change.node] = record.id
                self.recorder.flush("runner: changes recorded before they run")
                if self.on_recorded is not None:
                    self.on_recorded([self.recorder.get(i) for i in self.records.values()])
                self.recorder.start()
                outcomes = self._run_steps(work, done)
                applies = kind == "apply" or (
                    prior is not None and prior.kind in ("apply", "retry")
                )
                self.settles = not applies and self.overrides is None
                whole = kind == "apply" and not (self.held or result.held_back or result.refused)
                self._conclude(work, outcomes, record_applied=applies, whole_plan=whole)
        finally:
            if self.options.progress is not None:
                self.options.progress.close()
            try:
                self.recorder.stop("runner: results")
            finally:
                self.holding.release()
                shutil.rmtree(self.scratch, ignore_errors=True)
        for node, record in self.approved.items():
            if node in self.records:
                gates.release(self.store, node, record.id)
        for node, digest in self.brought_to.items():
            gates.settle(self.store, node, f"apply {digest}", self.records[node])
        result.records = [self.recorder.get(i) for i in self.records.values()] + self.held
        if self.options.push and self.settings.state_remote:
            self.store.push()
        result.exit_code = exit_code_of(result)
        return result

    def _new_record(
        self,
        change: NodePlan,
        kind: str,
        change_id: str,
        created: str | None,
        waiting_for: tuple[str, ...] = (),
    ) -> ChangeRecord:
        record = ChangeRecord(
            id=change_id,
            node=change.node,
            action=change.action or "",
            commit=str(self.planned.head.commit),
            status="waiting" if waiting_for else "pending",
            kind=kind,
            base=self.planned.plan.base,
            reasons=change.reasons,
            holder=None if waiting_for else self.holder,
            created=created,
            steps=tuple(
                StepRecord(step_id.split(":", 1)[1].split("/", 1)[1]) for step_id in change.steps
            ),
            overrides=dict(self.overrides.values) if self.overrides else {},
            run=self.run_id,
            run_step=self.run_step,
            digest=self._digest(change),
            waiting_for=waiting_for,
        )
        approved = self.approved.get(change.node)
        if approved is not None:  # the approved waiting record runs: same id, its approval
            record = replace(
                record, id=approved.id, created=approved.created, approval=approved.approval
            )
        return record

    def _digest(self, change: NodePlan) -> str | None:
        if change.change in ("deleted", "run") or change.node not in self.planned.head.assets:
            return None
        return self.head_inputs.of(change.node).digest

    def _id_for(self, node: str, ids: Mapping[str, str]) -> str:
        approved = self.approved.get(node)
        return approved.id if approved is not None else ids[node]

    # --- approvals ----------------------------------------------------------------------------

    def _gate(
        self,
        work: list[NodePlan],
        kind: str,
        ids: Mapping[str, str],
        created: str | None,
        result: ApplyResult,
    ) -> list[NodePlan]:
        """Leave out the nodes that need an approval they do not have (recording them as
        waiting), and every node that runs after one of them."""
        requests: dict[str, gates.Request] = {}
        approvers = self._run_approvals()
        pre_approved: dict[str, dict[str, Any]] = {}
        for change in work:
            groups = gates.groups_for(change.node, self.planned.head, self.planned.base)
            if not groups or (kind == "apply" and self._applied_already(change)):
                continue
            if self._is_check(change):  # a drift check, however started, changes nothing
                continue
            given = next(
                (
                    d
                    for d in approvers
                    if member_of(str(d.get("user")), groups, self.settings.groups)
                ),
                None,
            )
            if given is not None:  # the run's own wait step was approved by one of the groups
                pre_approved[change.node] = given
            requests[change.node] = gates.Request(
                key=self._gate_key(change, kind),
                record=self._new_record(change, kind, ids[change.node], created, groups),
                supersedes="apply " if kind == "apply" else None,
            )
        if not requests:
            return work
        for node, held in gates.hold(self.store, requests).items():
            decision = held.decision
            if decision is None and node in pre_approved:
                decision = pre_approved[node]
            if held.record.status == "waiting" and (decision or {}).get("decision") in (
                "approve",
                "continue",
            ):
                self.approved[node] = replace(held.record, approval=decision)
            elif held.record.status == "waiting":
                self.held.append(held.record)
            else:  # rejected (or cancelled): these inputs do not run; new ones ask again
                result.refused.append(held.record)
        blocked = {r.node for r in self.held} | {r.node for r in result.refused}
        order = nx.DiGraph(list(self.planned.plan.node_edges))
        for node in sorted(blocked & set(order)):
            for later in sorted(nx.descendants(order, node)):
                if later not in blocked:
                    result.held_back.append((later, node))
        left_out = blocked | {later for later, _ in result.held_back}
        return [c for c in work if c.node not in left_out]

    def _applies_inputs(self, change: NodePlan) -> bool:
        """A workflow step, schedule or ``runner run`` that runs a node's own ``on_change`` (or
        ``on_create``) action at a commit, without overrides, does what apply would: the node
        counts as applied with those inputs, and a change waiting to apply them is settled."""
        asset = self.planned.head.assets.get(change.node)
        template = self.planned.head.template_of(asset) if asset is not None else None
        if not self.settles or template is None:
            return False
        own = {ref.value for e in ("create", "change") if (ref := template.action_for(e))}
        if change.action not in own:
            return False
        self.brought_to[change.node] = self.head_inputs.of(change.node).digest
        return True

    def _is_check(self, change: NodePlan) -> bool:
        asset = self.planned.head.assets.get(change.node)
        template = self.planned.head.template_of(asset) if asset is not None else None
        return (
            template is not None
            and template.check is not None
            and (template.check.value == change.action)
        )

    def _check_approved(self, prior: ChangeRecord) -> None:
        """``resume`` and ``retry`` carry on a recorded change: under ``requires_approval_from``
        only one that was approved (then it leaves its node's waiting list once it ran)."""
        groups = gates.groups_for(prior.node, self.planned.head)
        if not groups:
            return
        decision = (prior.approval or {}).get("decision")
        if decision not in ("approve", "continue"):
            said = "was rejected" if decision == "reject" else "was never approved"
            raise Blocked(
                f"change {prior.id} on {prior.node} {said}; it needs an approval from "
                f"{', '.join(groups)} before it runs (runner approve {prior.id})"
            )
        self.approved[prior.node] = prior

    def _run_approvals(self) -> list[dict[str, Any]]:
        """The approvals given on the wait steps of this change's workflow run: a release
        manager who approved ``approve-prod`` has approved the prod changes after it."""
        if self.run_id is None:
            return []
        run = read_yaml(self.store.read(f"runs/{self.run_id}.yaml"))
        return [
            {**step["decision"], "step": step.get("name")}
            for step in run.get("steps") or ()
            if isinstance(step.get("decision"), dict)
            and step["decision"].get("decision") in ("approve", "continue")
        ]

    def _gate_key(self, change: NodePlan, kind: str) -> str:
        if kind == "apply":
            return f"apply {self._digest(change) or 'deleted ' + str(self.planned.head.commit)}"
        parts = (kind, self.run_id, self.run_step, change.action, self.planned.head.commit)
        return " ".join(str(part or "-") for part in parts)

    def _applied_already(self, change: NodePlan) -> bool:
        if change.change == "deleted":
            return False
        applied = read_yaml(self.store.read(node_file("applied", change.node)))
        return bool(applied) and applied.get("digest") == self._digest(change)

    def _from_prior(
        self, prior: ChangeRecord, change: NodePlan, kind: str, created: str | None, new: str
    ) -> tuple[ChangeRecord, dict[str, StepOutcome]]:
        done = {
            step_id: StepOutcome("success", attempts=s.attempts, outputs=dict(s.outputs))
            for step_id in change.steps
            if (s := prior.step(step_id.split(":", 1)[1].split("/", 1)[1])) is not None
            and s.status == "success"
        }
        steps = tuple(s if s.status == "success" else StepRecord(s.id) for s in prior.steps)
        if kind == "resume":
            record = replace(
                prior, status="running", holder=self.holder, finished=None, steps=steps
            )
        else:
            record = replace(
                prior,
                id=new,
                kind="retry",
                status="pending",
                holder=self.holder,
                retry_of=prior.id,
                created=created,
                started=None,
                finished=None,
                steps=steps,
            )
        return record, done

    def _run_steps(
        self, work: list[NodePlan], done: Mapping[str, StepOutcome]
    ) -> dict[str, StepOutcome]:
        wanted = {step_id for change in work for step_id in change.steps}
        steps = [s for s in self.planned.plan.steps if s.id in wanted]
        edges = [e for e in self.planned.plan.edges if e[0] in wanted and e[1] in wanted]
        checkout = self.scratch / "checkout"
        self.git.checkout_to(str(self.planned.head.commit), checkout)
        self.workdir = checkout / self.ops.prefix if self.ops.prefix else checkout
        parallel = self.options.parallel or self.settings.parallelism
        fail_fast = self.settings.fail_fast and not self.options.keep_going
        executor = Executor(
            self.runner, self, parallelism=parallel, fail_fast=fail_fast, cancel=self.cancel
        )
        if self.options.progress is not None:
            self.options.progress.expect(sum(1 for s in steps if s.id not in done))
        return executor.run(steps, edges, done)

    # --- leases -------------------------------------------------------------------------------

    def _take_leases(self, changes: Mapping[str, str]) -> None:
        """A lease on every node (node → the change that will run on it)."""
        taken, blocked = self.holding.take(changes, self.options.lock_timeout)
        if not taken:
            if blocked is None:
                raise Blocked(f"could not take the leases within {self.options.lock_timeout:g}s")
            raise Blocked(
                f"{blocked.node} is held by {blocked.holder} (change {blocked.change}) until "
                f"{iso(blocked.expires)}; waited {self.options.lock_timeout:g}s "
                "(`runner unlock PATH --force` breaks a stale lease)"
            )
        for ours in taken:
            if ours.took_over is not None:
                self._abort(ours.took_over)

    def _abort(self, dead: leases.Lease) -> None:
        """The change of a runner that died under its lease ends ``aborted``."""
        path = _find_change(self.store, dead.change)
        if path is None:
            return

        def mutate(view: Any) -> dict[str, bytes | None]:
            data = view.read(path)
            if data is None:
                return {}
            record = change_from_yaml(data)
            if record.status not in ("pending", "running", "waiting"):
                return {}
            steps = tuple(
                replace(s, status="aborted") if s.status in ("pending", "queued", "running") else s
                for s in record.steps
            )
            aborted = replace(record, status="aborted", finished=iso(now()), steps=steps)
            return {path: change_to_yaml(aborted)}

        self.store.update(mutate, f"runner: change {dead.change} aborted (its runner died)")

    def _not_yet_applied(self, work: list[NodePlan], result: ApplyResult) -> list[NodePlan]:
        """Re-read the state after taking the leases: a node already applied with exactly these
        inputs (by another runner meanwhile, or by an earlier apply that failed elsewhere) is
        not run again."""
        kept = []
        for change in work:
            if change.change != "deleted":
                applied = read_yaml(self.store.read(node_file("applied", change.node)))
                digest = self.head_inputs.of(change.node).digest
                if applied.get("digest") == digest:
                    result.skipped_nodes.append(change.node)
                    continue
            kept.append(change)
        return kept

    # --- executor hooks -----------------------------------------------------------------------

    def _context(self, step: PlannedStep) -> NodeContext:
        found = self.contexts.get(step.node)
        if found is None:
            found = self.contexts[step.node] = self._make_context(step)
        return found

    def _make_context(self, step: PlannedStep) -> NodeContext:
        head = self.planned.head
        outputs = read_yaml(self.store.read(node_file("outputs", step.node)))
        if step.node in head.assets:
            converger = self.head_inputs.converger
        else:
            assert self.base_converger is not None
            converger = self.base_converger
        values = converger.converge(step.node, outputs or None, self.overrides).values
        scratch = self.scratch / step.node.strip("/").replace("/", "__")
        scratch.mkdir(parents=True, exist_ok=True)
        scratch.chmod(0o700)
        return NodeContext(
            node=step.node,
            action=step.action,
            change_id=self.records[step.node],
            commit=str(head.commit),
            properties=values,
            workdir=self.workdir,
            scratch=scratch,
        )

    def launch(self, step: PlannedStep, outputs: Mapping[str, Mapping[str, str]]) -> Launch:
        context = self._context(step)
        properties_file = self.property_files.get(step.node)
        if properties_file is None:
            try:
                properties_file = write_properties_file(context, self.secrets)
            except MissingSecret as exc:
                raise StepSetupError(str(exc)) from None
            self.property_files[step.node] = properties_file
        return prepare(
            context,
            step.name,
            step.run,
            step.env,
            outputs,
            self.secrets,
            properties_file,
            self.environ,
        )

    def log(self, step: PlannedStep, attempt: int) -> LogWriter:
        change_id = self.records[step.node]
        writer = self.recorder.log_stream(f"logs/{change_id}/{step.name.replace('/', '__')}.log")
        if attempt > 1:
            writer.note(f"--- attempt {attempt} ---\n")
        return writer

    def started(self, step: PlannedStep, attempt: int) -> None:
        if self.options.progress is not None:
            self.options.progress.started(step.node, step.name)
        record = self.recorder.get(self.records[step.node])
        moment = iso(now())
        current = record.step(step.name) or StepRecord(step.name)
        step_record = replace(
            current, status="running", started=current.started or moment, attempts=attempt
        )
        updated = record.with_step(step_record)
        if record.status == "pending":
            updated = replace(updated, status="running", started=moment)
        self.recorder.put(updated)

    def finished(self, step: PlannedStep, outcome: StepOutcome) -> None:
        if self.options.progress is not None:
            self.options.progress.finished(step.node, step.name, outcome.status)
        record = self.recorder.get(self.records[step.node])
        current = record.step(step.name) or StepRecord(step.name)
        error = self.masker.mask(outcome.error) if outcome.error else None
        step_record = replace(
            current,
            status=outcome.status,
            started=current.started or iso(outcome.started),
            finished=iso(outcome.finished or now()),
            attempts=outcome.attempts,
            exit_code=outcome.exit_code,
            error=error,
            outputs=self._masked(outcome.outputs),
        )
        if error and outcome.status == "error":
            self.log(step, 1).note(f"error: {error}\n")
        self.recorder.put(record.with_step(step_record))

    def _masked(self, outputs: Mapping[str, Any]) -> dict[str, str]:
        """Outputs as recorded: keys and values masked (a step may name an output after a
        secret)."""
        return {self.masker.mask(str(k)): self.masker.mask(str(v)) for k, v in outputs.items()}

    # --- the end ------------------------------------------------------------------------------

    def _conclude(
        self,
        work: list[NodePlan],
        outcomes: Mapping[str, StepOutcome],
        record_applied: bool,
        whole_plan: bool,
    ) -> None:
        moment = iso(now())
        all_ok = True
        for change in work:
            ran = [outcomes.get(s) for s in change.steps]
            statuses = [o.status if o is not None else "cancelled" for o in ran]
            if "cancelled" in statuses:
                status = "cancelled"
            elif "error" in statuses:
                status = "error"
            elif any(o is not None and o.status == "skipped" and o.error for o in ran):
                status = "skipped"  # something it depends on failed; it will be planned again
            else:
                status = "success"
            record = self.recorder.get(self.records[change.node])
            self.recorder.put(replace(record, status=status, finished=moment))
            if status != "success":
                all_ok = False
                continue
            node_outputs: dict[str, Any] = {}
            for step_id in change.steps:
                node_outputs.update(outcomes[step_id].outputs)
            if change.change == "deleted":
                self.recorder.put_file(node_file("applied", change.node), None)
                self.recorder.put_file(node_file("outputs", change.node), None)
                continue
            if node_outputs and self.kind != "check":  # a check reports, it changes nothing
                previous = read_yaml(self.store.read(node_file("outputs", change.node)))
                previous.update(self._masked(node_outputs))
                self.recorder.put_file(node_file("outputs", change.node), dump(previous))
            if not record_applied and not self._applies_inputs(change):
                continue
            self.recorder.put_file(
                node_file("applied", change.node),
                dump(
                    {
                        "node": change.node,
                        "commit": self.planned.head.commit,
                        "digest": self.head_inputs.of(change.node).digest,
                        "change": self.records[change.node],
                        "time": moment,
                    }
                ),
            )
        whole = (
            whole_plan
            and not self.options.targets
            and not self.options.excludes
            and self.overrides is None
        )
        if all_ok and whole and not self.cancel.is_set():
            self.recorder.put_file(
                APPLIED_MARKER, dump({"commit": self.planned.head.commit, "time": moment})
            )


def _find_change(store: StateStore, change_id: str) -> str | None:
    path = f"changes/{change_id[:8]}/{change_id}.yaml"
    return path if store.read(path) is not None else None


def exit_code_of(result: ApplyResult) -> ExitCode:
    status = result.status
    if status == "cancelled":
        return ExitCode.SIGTERM
    if status in ("error", "aborted", "skipped"):
        return ExitCode.FAILED
    return ExitCode.OK  # success, nothing to do, or changes waiting for an approval
