"""The executor (runner.execution.executor) on a scripted runner: no processes at all.

Steps are named ``<node>:deploy/<name>`` and run the command ``<node/name>``; the hooks append
``attempt=N`` to it, so a script can answer one attempt differently from the others. A step
"writes" outputs through the text its hooks put in its outputs file before it runs.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from runner.execution.executor import Executor, StepOutcome
from runner.execution.stepenv import Launch, StepSetupError
from runner.model import Retries
from runner.planning.dag import PlannedStep
from runner.process import ProcessResult
from tests.support.fakerunner import FakeRunner, Script

FAIL: Script = (1, b"boom\n", 0.0)


def step(
    name: str,
    node: str = "web",
    *,
    condition: str = "success()",
    timeout: float | None = None,
    retries: Retries | None = None,
) -> PlannedStep:
    return PlannedStep(
        id=f"{node}:deploy/{name}",
        node=node,
        action="deploy",
        name=name,
        run=f"<{node}/{name}>",
        condition=condition,
        timeout=timeout,
        retries=retries or Retries(),
    )


def after(*chain: PlannedStep) -> list[tuple[str, str]]:
    """Edges running ``chain`` one after another."""
    return [(a.id, b.id) for a, b in itertools.pairwise(chain)]


class ListSink:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True


class RecordingHooks:
    """StepHooks that write what the steps "output" and remember every call they get."""

    def __init__(
        self,
        folder: Path,
        *,
        writes: Mapping[str, str] | None = None,
        setup_errors: Mapping[str, str] | None = None,
    ) -> None:
        self.folder = folder
        self.writes = dict(writes or {})  # step id → text of its outputs file
        self.setup_errors = dict(setup_errors or {})  # step id → StepSetupError message
        self.launched: list[tuple[str, dict[str, dict[str, str]]]] = []  # (step id, outputs)
        self.starts: list[tuple[str, int]] = []  # (step id, attempt)
        self.outcomes: dict[str, StepOutcome] = {}  # as reported to ``finished``
        self.sinks: list[ListSink] = []
        self._lock = threading.Lock()

    def launch(self, step: PlannedStep, outputs: Mapping[str, Mapping[str, str]]) -> Launch:
        with self._lock:
            self.launched.append((step.id, {k: dict(v) for k, v in outputs.items()}))
            attempt = sum(1 for launched, _ in self.launched if launched == step.id)
        if step.id in self.setup_errors:
            raise StepSetupError(self.setup_errors[step.id])
        outputs_file = self.folder / f"{step.id.replace(':', '_').replace('/', '_')}.outputs"
        outputs_file.write_text(self.writes.get(step.id, ""), "utf-8")
        env = {"PATH": "/usr/bin:/bin", "STEP": step.id}
        return Launch(f"{step.run} attempt={attempt}", env, self.folder, outputs_file)

    def log(self, step: PlannedStep, attempt: int) -> ListSink:
        sink = ListSink()
        with self._lock:
            self.sinks.append(sink)
        return sink

    def started(self, step: PlannedStep, attempt: int) -> None:
        with self._lock:
            self.starts.append((step.id, attempt))

    def finished(self, step: PlannedStep, outcome: StepOutcome) -> None:
        with self._lock:
            self.outcomes[step.id] = outcome

    def outputs_seen_by(self, target: PlannedStep) -> list[dict[str, dict[str, str]]]:
        return [outputs for step_id, outputs in self.launched if step_id == target.id]


class CountingRunner:
    """A FakeRunner that also keeps the most commands it ever had running at once."""

    def __init__(self, inner: FakeRunner) -> None:
        self.inner = inner
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def run(
        self,
        command: str,
        *,
        cwd: Path,
        env: Mapping[str, str],
        timeout: float | None,
        output: Callable[[bytes], None],
        cancel: threading.Event,
    ) -> ProcessResult:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return self.inner.run(
                command, cwd=cwd, env=env, timeout=timeout, output=output, cancel=cancel
            )
        finally:
            with self._lock:
                self.running -= 1


class Sleeps:
    """An injected ``sleep``: records each backoff delay instead of waiting; ``cancel`` set
    means the wait was interrupted by a cancel (the executor's own sleep is ``cancel.wait``)."""

    def __init__(self, cancel: threading.Event | None = None) -> None:
        self.delays: list[float] = []
        self.cancel = cancel

    def __call__(self, seconds: float) -> bool:
        self.delays.append(seconds)
        if self.cancel is not None:
            self.cancel.set()
            return True
        return False


def execute(
    steps: Sequence[PlannedStep],
    edges: Sequence[tuple[str, str]],
    runner: FakeRunner | CountingRunner,
    hooks: RecordingHooks,
    *,
    parallelism: int = 2,
    fail_fast: bool = True,
    cancel: threading.Event | None = None,
    sleep: Sleeps | None = None,
    done: Mapping[str, StepOutcome] | None = None,
) -> dict[str, StepOutcome]:
    executor = Executor(
        runner,
        hooks,
        parallelism=parallelism,
        fail_fast=fail_fast,
        cancel=cancel,
        sleep=sleep if sleep is not None else Sleeps(),
    )
    return executor.run(steps, edges, done)


def ran(runner: FakeRunner) -> list[str]:
    """The steps that got a command, in the order their commands started (``<node/name>``)."""
    return [command.split(" ", 1)[0] for command in runner.commands]


def statuses(outcomes: Mapping[str, StepOutcome]) -> dict[str, str]:
    return {step_id: outcome.status for step_id, outcome in outcomes.items()}


@pytest.fixture
def hooks(tmp_path: Path) -> RecordingHooks:
    return RecordingHooks(tmp_path)


# --- order and parallelism ----------------------------------------------------------------------


def test_a_chain_runs_one_step_at_a_time_in_its_order(hooks: RecordingHooks) -> None:
    first, second, third = step("first"), step("second"), step("third")
    runner = CountingRunner(FakeRunner(default=(0, b"", 0.02)))

    outcomes = execute(
        [first, second, third], after(first, second, third), runner, hooks, parallelism=4
    )

    assert ran(runner.inner) == ["<web/first>", "<web/second>", "<web/third>"]
    assert runner.most == 1
    assert statuses(outcomes) == {s.id: "success" for s in (first, second, third)}
    assert [o.attempts for o in outcomes.values()] == [1, 1, 1]
    assert hooks.outcomes == outcomes


def test_independent_steps_start_in_plan_order(hooks: RecordingHooks) -> None:
    steps = [step("c"), step("a", "db"), step("b")]
    runner = FakeRunner()

    execute(steps, [], runner, hooks, parallelism=1)

    assert ran(runner) == ["<web/c>", "<db/a>", "<web/b>"]


@pytest.mark.parametrize("parallelism", [1, 2, 3])
def test_no_more_steps_run_at_once_than_the_parallelism(
    hooks: RecordingHooks, parallelism: int
) -> None:
    steps = [step(f"s{i}", "web" if i % 2 else "db") for i in range(8)]
    runner = CountingRunner(FakeRunner(default=(0, b"", 0.03)))

    outcomes = execute(steps, [], runner, hooks, parallelism=parallelism)

    assert runner.most == parallelism
    assert statuses(outcomes) == {s.id: "success" for s in steps}


def test_a_steps_output_goes_to_its_log_sink_which_is_closed(hooks: RecordingHooks) -> None:
    runner = FakeRunner({"<web/talk>": (0, b"hello\n", 0.0)})

    execute([step("talk")], [], runner, hooks)

    assert [(bytes(s.data), s.closed) for s in hooks.sinks] == [(b"hello\n", True)]


# --- conditions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fail_fast", [True, False], ids=["fail-fast", "keep-going"])
def test_a_failure_skips_its_dependants_and_runs_failure_steps_of_its_own_node_only(
    hooks: RecordingHooks, fail_fast: bool
) -> None:
    build = step("build")
    deploy = step("deploy")  # success() after build
    smoke = step("smoke")  # success() after deploy
    rollback = step("rollback", condition="failure()")  # after build
    report = step("report", condition="failure()")  # after the skipped deploy
    notify = step("notify", condition="always()")  # after build
    migrate = step("migrate", "db")  # another node's success() step after build
    restore = step("restore", "db", condition="failure()")  # another node's failure() step
    steps = [build, deploy, smoke, rollback, report, notify, migrate, restore]
    edges = [
        *after(build, deploy, smoke),
        (build.id, rollback.id),
        (deploy.id, report.id),
        (build.id, notify.id),
        (build.id, migrate.id),
        (build.id, restore.id),
    ]
    runner = FakeRunner({"<web/build>": (2, b"", 0.0)})

    outcomes = execute(steps, edges, runner, hooks, parallelism=1, fail_fast=fail_fast)

    assert statuses(outcomes) == {
        build.id: "error",
        deploy.id: "skipped",
        smoke.id: "skipped",
        rollback.id: "success",
        report.id: "success",
        notify.id: "success",
        migrate.id: "skipped",
        restore.id: "skipped",
    }
    assert (outcomes[build.id].error, outcomes[build.id].exit_code) == ("exit code 2", 2)
    assert outcomes[deploy.id].error == "a step it depends on failed"
    assert outcomes[migrate.id].error == "a step it depends on failed"
    assert sorted(ran(runner)) == ["<web/build>", "<web/notify>", "<web/report>", "<web/rollback>"]
    assert hooks.outcomes == outcomes


def test_without_a_failure_failure_steps_are_skipped_and_always_steps_run(
    hooks: RecordingHooks,
) -> None:
    build = step("build")
    rollback = step("rollback", condition="failure()")
    notify = step("notify", condition="always()")
    runner = FakeRunner()

    outcomes = execute(
        [build, rollback, notify], [(build.id, rollback.id), (build.id, notify.id)], runner, hooks
    )

    assert statuses(outcomes) == {
        build.id: "success",
        rollback.id: "skipped",
        notify.id: "success",
    }
    assert sorted(ran(runner)) == ["<web/build>", "<web/notify>"]


# --- fail-fast and keep-going -----------------------------------------------------------------


def test_fail_fast_skips_steps_not_yet_started_on_every_node(hooks: RecordingHooks) -> None:
    broken, one, two = step("broken"), step("one", "db"), step("two", "db")
    runner = FakeRunner({"<web/broken>": FAIL})

    outcomes = execute([broken, one, two], after(one, two), runner, hooks, parallelism=1)

    assert ran(runner) == ["<web/broken>"]
    assert statuses(outcomes) == {broken.id: "error", one.id: "skipped", two.id: "skipped"}
    assert outcomes[one.id].error == "fail-fast: an earlier step failed"


def test_fail_fast_lets_running_steps_finish(hooks: RecordingHooks) -> None:
    broken, slow, later = step("broken"), step("slow", "db"), step("later", "db")
    runner = FakeRunner({"<web/broken>": FAIL, "<db/slow>": (0, b"", 0.3)})

    outcomes = execute([broken, slow, later], after(slow, later), runner, hooks, parallelism=2)

    assert statuses(outcomes) == {broken.id: "error", slow.id: "success", later.id: "skipped"}
    assert outcomes[later.id].error == "fail-fast: an earlier step failed"


def test_keep_going_runs_branches_independent_of_the_failure(hooks: RecordingHooks) -> None:
    broken, dependant = step("broken"), step("dependant")
    one, two = step("one", "db"), step("two", "db")
    runner = FakeRunner({"<web/broken>": FAIL})

    outcomes = execute(
        [broken, dependant, one, two],
        [*after(broken, dependant), *after(one, two)],
        runner,
        hooks,
        parallelism=1,
        fail_fast=False,
    )

    assert statuses(outcomes) == {
        broken.id: "error",
        dependant.id: "skipped",
        one.id: "success",
        two.id: "success",
    }
    assert ran(runner) == ["<web/broken>", "<db/one>", "<db/two>"]


# --- retries and timeouts -----------------------------------------------------------------------


def test_a_failing_step_is_retried_with_a_doubling_backoff_then_errors(
    hooks: RecordingHooks,
) -> None:
    flaky = step("flaky", retries=Retries(attempts=3, backoff=0.5))
    runner = FakeRunner({"<web/flaky>": FAIL})
    sleeps = Sleeps()

    outcomes = execute([flaky], [], runner, hooks, sleep=sleeps)

    outcome = outcomes[flaky.id]
    assert (outcome.status, outcome.attempts, outcome.error) == ("error", 4, "exit code 1")
    assert sleeps.delays == [0.5, 1.0, 2.0]
    assert len(runner.commands) == 4
    assert hooks.starts == [(flaky.id, 1), (flaky.id, 2), (flaky.id, 3), (flaky.id, 4)]
    assert len(hooks.sinks) == 4  # a log per attempt


def test_a_retried_step_that_succeeds_stops_retrying(hooks: RecordingHooks) -> None:
    flaky = step("flaky", retries=Retries(attempts=5, backoff=2.0))
    runner = FakeRunner({"<web/flaky> attempt=1": FAIL, "<web/flaky> attempt=2": FAIL})
    sleeps = Sleeps()

    outcomes = execute([flaky], [], runner, hooks, sleep=sleeps)

    outcome = outcomes[flaky.id]
    assert (outcome.status, outcome.attempts, outcome.exit_code) == ("success", 3, 0)
    assert outcome.error is None
    assert sleeps.delays == [2.0, 4.0]
    assert len(runner.commands) == 3


def test_a_step_without_retries_never_sleeps(hooks: RecordingHooks) -> None:
    sleeps = Sleeps()

    once = step("once")

    outcomes = execute([once], [], FakeRunner({"<web/once>": FAIL}), hooks, sleep=sleeps)

    assert (outcomes[once.id].status, outcomes[once.id].attempts) == ("error", 1)
    assert sleeps.delays == []


def test_a_cancel_during_the_backoff_ends_the_step_cancelled(hooks: RecordingHooks) -> None:
    flaky = step("flaky", retries=Retries(attempts=3, backoff=1.0))
    cancel = threading.Event()
    runner = FakeRunner({"<web/flaky>": FAIL})

    outcomes = execute([flaky], [], runner, hooks, cancel=cancel, sleep=Sleeps(cancel))

    assert (outcomes[flaky.id].status, outcomes[flaky.id].attempts) == ("cancelled", 1)
    assert len(runner.commands) == 1


def test_a_step_that_runs_past_its_timeout_errors(hooks: RecordingHooks) -> None:
    stuck, dependant = step("stuck", timeout=0.05), step("dependant")
    runner = FakeRunner({"<web/stuck>": (0, b"", 30.0)})
    start = time.monotonic()

    outcomes = execute([stuck, dependant], after(stuck, dependant), runner, hooks)

    assert time.monotonic() - start < 5
    outcome = outcomes[stuck.id]
    assert (outcome.status, outcome.error, outcome.exit_code) == (
        "error",
        "timed out after 50ms",
        None,
    )
    assert outcomes[dependant.id].status == "skipped"


# --- cancel ---------------------------------------------------------------------------------------


def test_a_cancel_ends_running_and_pending_steps_cancelled(hooks: RecordingHooks) -> None:
    slow1, slow2 = step("slow1"), step("slow2")
    next_ = step("next")  # after slow1
    queued = step("queued", "db")  # independent, waiting for a free slot
    cleanup = step("cleanup", condition="always()")  # after slow2
    steps = [slow1, slow2, next_, queued, cleanup]
    edges = [*after(slow1, next_), *after(slow2, cleanup)]
    runner = FakeRunner(default=(0, b"", 30.0))
    cancel = threading.Event()
    results: list[dict[str, StepOutcome]] = []
    thread = threading.Thread(
        target=lambda: results.append(
            execute(steps, edges, runner, hooks, parallelism=2, cancel=cancel)
        )
    )

    thread.start()
    deadline = time.monotonic() + 5
    while len(runner.commands) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    cancel.set()
    thread.join(5)

    assert not thread.is_alive()
    assert sorted(ran(runner)) == ["<web/slow1>", "<web/slow2>"]
    (outcomes,) = results
    assert statuses(outcomes) == {s.id: "cancelled" for s in steps}
    assert outcomes[slow1.id].error == "stopped by a signal"
    assert hooks.outcomes == outcomes


def test_a_cancel_before_the_start_runs_nothing(hooks: RecordingHooks) -> None:
    steps = [step("a"), step("b", "db")]
    cancel = threading.Event()
    cancel.set()
    runner = FakeRunner()

    outcomes = execute(steps, [], runner, hooks, cancel=cancel)

    assert runner.commands == []
    assert statuses(outcomes) == {s.id: "cancelled" for s in steps}


# --- setup errors ---------------------------------------------------------------------------------


def test_a_setup_error_fails_the_step_without_starting_a_process(tmp_path: Path) -> None:
    secret = step("secret", retries=Retries(attempts=2, backoff=1.0))
    dependant = step("dependant")
    message = "secret DB_PASSWORD is not set (RUNNER_SECRET_DB_PASSWORD or --secrets-file)"
    hooks = RecordingHooks(tmp_path, setup_errors={secret.id: message})
    runner = FakeRunner()
    sleeps = Sleeps()

    outcomes = execute([secret, dependant], after(secret, dependant), runner, hooks, sleep=sleeps)

    outcome = outcomes[secret.id]
    assert (outcome.status, outcome.error, outcome.exit_code) == ("error", message, None)
    assert outcome.attempts == 1  # a setup error is not retried: nothing would change
    assert sleeps.delays == []
    assert runner.commands == []
    assert hooks.sinks == []
    assert outcomes[dependant.id].status == "skipped"


# --- resume and outputs ---------------------------------------------------------------------------


def test_steps_done_in_an_earlier_attempt_are_not_rerun_and_their_outputs_reach_later_steps(
    hooks: RecordingHooks,
) -> None:
    first, second, third = step("first"), step("second"), step("third")
    done = {first.id: StepOutcome("success", attempts=1, outputs={"url": "http://x"})}
    runner = FakeRunner()

    outcomes = execute(
        [first, second, third], after(first, second, third), runner, hooks, done=done
    )

    assert ran(runner) == ["<web/second>", "<web/third>"]
    assert first.id not in {step_id for step_id, _ in hooks.starts}
    assert statuses(outcomes) == {s.id: "success" for s in (first, second, third)}
    assert outcomes[first.id].outputs == {"url": "http://x"}
    assert hooks.outputs_seen_by(second) == [{"first": {"url": "http://x"}}]


def test_a_steps_outputs_are_read_by_later_steps_of_its_node_only(tmp_path: Path) -> None:
    build, deploy, smoke = step("build"), step("deploy"), step("smoke")
    elsewhere = step("elsewhere", "db")  # after build, on another node
    hooks = RecordingHooks(
        tmp_path,
        writes={
            build.id: 'url=http://x\n{"port": 8080}\n',
            deploy.id: "release=r1\n",
        },
    )
    runner = FakeRunner()

    outcomes = execute(
        [build, deploy, smoke, elsewhere],
        [*after(build, deploy, smoke), (build.id, elsewhere.id)],
        runner,
        hooks,
    )

    assert outcomes[build.id].outputs == {"url": "http://x", "port": "8080"}
    assert hooks.outputs_seen_by(build) == [{}]
    assert hooks.outputs_seen_by(deploy) == [{"build": {"url": "http://x", "port": "8080"}}]
    assert hooks.outputs_seen_by(smoke) == [
        {"build": {"url": "http://x", "port": "8080"}, "deploy": {"release": "r1"}}
    ]
    assert hooks.outputs_seen_by(elsewhere) == [{}]


def test_a_failed_step_passes_on_no_outputs(tmp_path: Path) -> None:
    build = step("build")
    rollback = step("rollback", condition="failure()")
    hooks = RecordingHooks(tmp_path, writes={build.id: "url=http://half-done\n"})
    runner = FakeRunner({"<web/build>": FAIL})

    outcomes = execute([build, rollback], after(build, rollback), runner, hooks)

    assert outcomes[build.id].outputs == {}
    assert hooks.outputs_seen_by(rollback) == [{}]
