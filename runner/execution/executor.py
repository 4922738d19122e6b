"""Running a step DAG: bounded parallelism, conditions, retries with backoff, timeouts,
fail-fast or keep-going, and cancellation.

The executor talks to a ``ProcessRunner`` (runner.process) and to ``StepHooks`` that prepare a
step's command and record what happens; it never touches git or the filesystem itself, so unit
tests drive it with a fake runner.

Conditions (``if:``): ``success()`` runs when no step upstream of it failed; ``failure()`` runs
when a step of the same node upstream of it failed (Talend's on-exception handlers);
``always()`` runs once its predecessors have finished. With fail-fast, the first failure stops
new ``success()`` steps from starting anywhere (running ones finish; the rest end ``skipped``);
with keep-going, only the dependants of a failure are skipped.
"""

from __future__ import annotations

import heapq
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from runner.durations import format_duration
from runner.execution.stepenv import Launch, StepSetupError, read_outputs
from runner.planning.dag import PlannedStep
from runner.process import ProcessRunner
from runner.state.records import now


@dataclass
class StepOutcome:
    status: str  # success | error | skipped | cancelled
    attempts: int = 0
    exit_code: int | None = None
    error: str | None = None
    started: datetime | None = None
    finished: datetime | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    upstream_error: bool = False  # some step upstream (any node) failed
    node_error: bool = False  # some step of the same node upstream failed, or this one


class LogSink(Protocol):
    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class StepHooks(Protocol):
    def launch(self, step: PlannedStep, outputs: Mapping[str, Mapping[str, str]]) -> Launch: ...

    def log(self, step: PlannedStep, attempt: int) -> LogSink: ...

    def started(self, step: PlannedStep, attempt: int) -> None: ...

    def finished(self, step: PlannedStep, outcome: StepOutcome) -> None: ...


class Executor:
    def __init__(
        self,
        runner: ProcessRunner,
        hooks: StepHooks,
        *,
        parallelism: int,
        fail_fast: bool,
        cancel: threading.Event | None = None,
        sleep: Callable[[float], bool] | None = None,
    ) -> None:
        self.runner = runner
        self.hooks = hooks
        self.parallelism = max(1, parallelism)
        self.fail_fast = fail_fast
        self.cancel = cancel or threading.Event()
        self._sleep = sleep or self.cancel.wait  # returns True when cancelled meanwhile
        self._tripped = False
        self._outputs: dict[str, dict[str, dict[str, str]]] = {}
        self._lock = threading.Lock()

    def run(
        self,
        steps: Sequence[PlannedStep],
        edges: Sequence[tuple[str, str]],
        done: Mapping[str, StepOutcome] | None = None,
    ) -> dict[str, StepOutcome]:
        """Run ``steps`` (in plan order) respecting ``edges``; ``done`` holds outcomes of steps
        that already succeeded in an earlier attempt (resume): they are not run again."""
        by_id = {s.id: s for s in steps}
        order = {s.id: i for i, s in enumerate(steps)}
        preds: dict[str, list[str]] = {s.id: [] for s in steps}
        succs: dict[str, list[str]] = {s.id: [] for s in steps}
        for before, after in edges:
            if before in by_id and after in by_id:
                preds[after].append(before)
                succs[before].append(after)
        outcomes: dict[str, StepOutcome] = {}
        for step_id, outcome in (done or {}).items():
            if step_id in by_id:
                outcomes[step_id] = outcome
                node = by_id[step_id].node
                short = by_id[step_id].name
                self._outputs.setdefault(node, {})[short] = dict(outcome.outputs)
        waiting = {
            s: sum(1 for p in preds[s] if p not in outcomes) for s in by_id if s not in outcomes
        }
        ready = [(order[s], s) for s, n in waiting.items() if n == 0]
        heapq.heapify(ready)
        tasks: queue.SimpleQueue[tuple[str, list[str]] | None] = queue.SimpleQueue()
        results: queue.SimpleQueue[tuple[str, StepOutcome | BaseException]] = queue.SimpleQueue()

        def worker() -> None:
            while (task := tasks.get()) is not None:
                step_id, pred_ids = task
                try:
                    results.put((step_id, self._execute(by_id[step_id], pred_ids, by_id, outcomes)))
                except BaseException as exc:
                    results.put((step_id, exc))

        workers = [
            threading.Thread(target=worker, name=f"step-{i}", daemon=True)
            for i in range(self.parallelism)
        ]
        for thread in workers:
            thread.start()
        running = 0
        try:
            while ready or running:
                while ready and running < self.parallelism:
                    _, step_id = heapq.heappop(ready)
                    step = by_id[step_id]
                    decided = self._decide(step, preds[step_id], by_id, outcomes)
                    if decided is not None:
                        self._finish(step, decided, outcomes, succs, waiting, ready, order)
                        continue
                    tasks.put((step_id, preds[step_id]))
                    running += 1
                if not running:
                    continue
                step_id, result = results.get()
                running -= 1
                if isinstance(result, BaseException):
                    result = StepOutcome(
                        "error", error=f"internal error: {type(result).__name__}: {result}"
                    )
                self._finish(by_id[step_id], result, outcomes, succs, waiting, ready, order)
        finally:
            for _ in workers:
                tasks.put(None)
            for thread in workers:
                thread.join()
        return outcomes

    # --- deciding and finishing ---------------------------------------------------------------

    def _flags(
        self,
        step: PlannedStep,
        pred_ids: list[str],
        by_id: Mapping[str, PlannedStep],
        outcomes: Mapping[str, StepOutcome],
    ) -> tuple[bool, bool]:
        upstream = any(
            outcomes[p].status == "error" or outcomes[p].upstream_error for p in pred_ids
        )
        node = any(
            by_id[p].node == step.node and (outcomes[p].status == "error" or outcomes[p].node_error)
            for p in pred_ids
        )
        return upstream, node

    def _decide(
        self,
        step: PlannedStep,
        pred_ids: list[str],
        by_id: Mapping[str, PlannedStep],
        outcomes: Mapping[str, StepOutcome],
    ) -> StepOutcome | None:
        """An outcome without running (skipped/cancelled), or None: run it."""
        upstream, node = self._flags(step, pred_ids, by_id, outcomes)
        if self.cancel.is_set() or any(outcomes[p].status == "cancelled" for p in pred_ids):
            return StepOutcome("cancelled", upstream_error=upstream, node_error=node)
        if step.condition == "always()":
            return None
        if step.condition == "failure()":
            return (
                None if node else StepOutcome("skipped", upstream_error=upstream, node_error=node)
            )
        if upstream:
            reason = "a step it depends on failed"
            return StepOutcome("skipped", error=reason, upstream_error=upstream, node_error=node)
        if self._tripped:
            reason = "fail-fast: an earlier step failed"
            return StepOutcome("skipped", error=reason, upstream_error=upstream, node_error=node)
        return None

    def _finish(
        self,
        step: PlannedStep,
        outcome: StepOutcome,
        outcomes: dict[str, StepOutcome],
        succs: Mapping[str, list[str]],
        waiting: dict[str, int],
        ready: list[tuple[int, str]],
        order: Mapping[str, int],
    ) -> None:
        if outcome.status == "error":
            outcome.node_error = True
            if self.fail_fast:
                self._tripped = True
        outcomes[step.id] = outcome
        if outcome.status == "success" and outcome.outputs:
            with self._lock:  # replaced, never mutated: readers may hold the old mapping
                node_outputs = dict(self._outputs.get(step.node, {}))
                node_outputs[step.name] = outcome.outputs
                self._outputs[step.node] = node_outputs
        self.hooks.finished(step, outcome)
        for nxt in succs[step.id]:
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                heapq.heappush(ready, (order[nxt], nxt))

    # --- running one step ---------------------------------------------------------------------

    def _execute(
        self,
        step: PlannedStep,
        pred_ids: list[str],
        by_id: Mapping[str, PlannedStep],
        outcomes: Mapping[str, StepOutcome],
    ) -> StepOutcome:
        upstream, node = self._flags(step, pred_ids, by_id, outcomes)
        started = now()
        attempts = 1 + max(0, step.retries.attempts)
        outcome = StepOutcome("error", started=started, upstream_error=upstream, node_error=node)
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                delay = step.retries.backoff * (2 ** (attempt - 2))
                if self._sleep(delay):
                    outcome.status = "cancelled"
                    break
            outcome.attempts = attempt
            self.hooks.started(step, attempt)
            with self._lock:
                outputs = self._outputs.get(step.node, {})
            try:
                launch = self.hooks.launch(step, outputs)
            except StepSetupError as exc:
                outcome.status, outcome.error = "error", str(exc)
                break
            except Exception as exc:
                outcome.status = "error"
                outcome.error = f"could not start: {type(exc).__name__}: {exc}"
                break
            sink = self.hooks.log(step, attempt)
            try:
                result = self.runner.run(
                    launch.command,
                    cwd=launch.cwd,
                    env=launch.env,
                    timeout=step.timeout,
                    output=sink.write,
                    cancel=self.cancel,
                )
            finally:
                sink.close()
            outcome.exit_code = result.exit_code
            if result.cancelled:
                outcome.status, outcome.error = "cancelled", "stopped by a signal"
                break
            if result.timed_out:
                outcome.status = "error"
                outcome.error = f"timed out after {format_duration(step.timeout or 0)}"
            elif result.exit_code == 0:
                outcome.status, outcome.error = "success", None
                outcome.outputs = read_outputs(launch.outputs_file)
                break
            else:
                outcome.status, outcome.error = "error", f"exit code {result.exit_code}"
        outcome.finished = now()
        return outcome
