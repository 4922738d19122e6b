"""B4: 1,000 no-op steps (``true``) at parallelism 2, against ``xargs -P2``.

Three figures, each the best of ``--runs``:

* executor: 1,000 independent ``PlannedStep``s of one node, run by the real ``Executor`` with the
  real ``SubprocessRunner`` (each step ``/bin/sh -c true``) and trivial hooks (the command as is,
  ``PATH`` as the whole environment, a temporary folder as working directory, an existing empty
  outputs file, output thrown away), timed in-process from the executor's start to its end;
* baseline: ``printf 'true\\n%.0s' {1..1000} | xargs -P2 -I{} sh -c {}`` (``sh -c true`` 1,000
  times, two at once: the same shell per command as the runner's), process start to exit;
* CLI: ``runner apply --parallel 2`` on an ops repo with one asset whose action has 1,000 steps
  ``true`` with ``run_as: parallel``, process start to exit, so planning, the checkout, leases
  and the change record and logs on the state branch are included. The state branch is deleted
  before each run (every run is a first apply); the parse cache is kept, as on a CI runner.

Target: executor / baseline <= 1.2. The CLI figure is printed against the same baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _measure import Measured, run_process

from runner.execution.executor import Executor, StepOutcome
from runner.execution.stepenv import Launch
from runner.planning.dag import PlannedStep
from runner.process import SubprocessRunner

TARGET_RATIO = 1.2
NODE = "/projects/bench/environments/env/assets/noop"
ACTION = "noop"
STATE_BRANCH = "runner-state"


class DiscardSink:
    """A log sink that keeps nothing."""

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


class TrivialHooks:
    """Executor hooks that do the least a real run needs: a command, an environment, a working
    directory and an outputs file that exists."""

    def __init__(self, folder: Path) -> None:
        self.cwd = folder
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        self.outputs_file = folder / "outputs.txt"
        self.outputs_file.write_text("", "utf-8")
        self.sink = DiscardSink()

    def launch(self, step: PlannedStep, outputs: Mapping[str, Mapping[str, str]]) -> Launch:
        return Launch(step.run, self.env, self.cwd, self.outputs_file)

    def log(self, step: PlannedStep, attempt: int) -> DiscardSink:
        return self.sink

    def started(self, step: PlannedStep, attempt: int) -> None:
        pass

    def finished(self, step: PlannedStep, outcome: StepOutcome) -> None:
        pass


def step_name(i: int) -> str:
    return f"s{i:04d}"


def planned_steps(count: int) -> list[PlannedStep]:
    """``count`` independent ``true`` steps of one node, in plan order."""
    return [
        PlannedStep(
            id=f"{NODE}:{ACTION}/{step_name(i)}",
            node=NODE,
            action=ACTION,
            name=step_name(i),
            run="true",
        )
        for i in range(count)
    ]


def time_executor(count: int, parallel: int) -> float:
    """Seconds from the executor's start to its end; raises unless every step succeeded."""
    steps = planned_steps(count)
    with tempfile.TemporaryDirectory(prefix="b4-") as tmp:
        hooks = TrivialHooks(Path(tmp))
        start = time.perf_counter()
        runner, cancel = SubprocessRunner(), threading.Event()
        executor = Executor(runner, hooks, parallelism=parallel, fail_fast=True, cancel=cancel)
        outcomes = executor.run(steps, [])
        seconds = time.perf_counter() - start
    failed = [step_id for step_id, o in outcomes.items() if o.status != "success"]
    if len(outcomes) != count or failed:
        raise RuntimeError(f"executor: {len(failed)} of {count} steps did not succeed")
    return seconds


def xargs_argv(count: int, parallel: int) -> list[str]:
    script = f"printf 'true\\n%.0s' {{1..{count}}} | xargs -P{parallel} -I{{}} sh -c {{}}"
    return ["bash", "-c", script]


# --- the whole CLI --------------------------------------------------------------------------------


def ops_files(count: int) -> dict[str, str]:
    steps = "".join(f"      - name: {step_name(i)}\n        run: 'true'\n" for i in range(count))
    return {
        "runner.yaml": f"state: {{branch: {STATE_BRANCH}}}\nparallelism: 2\n",
        "properties.yaml": "org: bench\n",
        "templates/noop/template.yaml": (
            "name: No-op\n"
            "properties: {}\n"
            f"on_change: {ACTION}\n"
            "actions:\n"
            f"  {ACTION}:\n"
            "    run_as: parallel\n"
            "    steps:\n" + steps
        ),
        "projects/bench/project.yaml": "name: Bench\n",
        "projects/bench/environments/env/environment.yaml": "name: Env\n",
        "projects/bench/environments/env/assets/noop.yaml": "template: noop\n",
    }


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def make_ops_repo(root: Path, count: int) -> Path:
    git(root.parent, "init", "-q", "-b", "main", str(root))
    for path, text in ops_files(count).items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, "utf-8")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "one asset, 1,000 no-op steps")
    return root


def drop_state(repo: Path) -> None:
    """Forget every earlier apply: the next one starts from nothing."""
    if git(repo, "branch", "--list", STATE_BRANCH):
        git(repo, "branch", "-D", "-q", STATE_BRANCH)


def cli(repo: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "runner", "--repo", str(repo), *args]


def cli_json(repo: Path, *args: str) -> Any:
    done = subprocess.run(cli(repo, *args, "--format", "json"), check=True, capture_output=True)
    return json.loads(done.stdout)


def check_recorded(repo: Path, count: int) -> None:
    """The last apply recorded one successful change of ``count`` successful steps."""
    changes = cli_json(repo, "changes", "list")
    if [c["status"] for c in changes] != ["success"]:
        raise RuntimeError(f"apply recorded {[c['status'] for c in changes]}, not one success")
    steps = cli_json(repo, "changes", "show", changes[0]["id"])["steps"]
    ok = sum(1 for s in steps if s["status"] == "success")
    if (len(steps), ok) != (count, count):
        raise RuntimeError(f"apply recorded {ok} successful steps of {len(steps)}, not {count}")


def best(results: list[Measured]) -> Measured:
    return min(results, key=lambda m: m.seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3, help="best of N")
    parser.add_argument("--no-cli", action="store_true", help="leave out the runner apply figure")
    args = parser.parse_args(argv)
    n, p = args.steps, args.parallel

    baselines: list[Measured] = []
    executor: list[float] = []
    cli_runs: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="b4-ops-") as tmp:
        repo = None if args.no_cli else make_ops_repo(Path(tmp) / "ops", n)
        for _ in range(args.runs):  # interleaved, so a noisy moment hits every figure alike
            baselines.append(run_process(xargs_argv(n, p)))
            executor.append(time_executor(n, p))
            if repo is not None:
                drop_state(repo)
                cli_runs.append(run_process(cli(repo, "apply", "--parallel", str(p))))
        if repo is not None:
            check_recorded(repo, n)

    base, ours = best(baselines), min(executor)
    ratio = ours / base.seconds
    verdict = "meets" if ratio <= TARGET_RATIO else "misses"
    print(f"B4: {n} no-op steps (true), parallelism {p} (best of {args.runs})")
    print(
        f"  baseline xargs -P{p} sh -c    {base.seconds:7.3f} s  "
        f"{base.seconds / n * 1000:6.2f} ms/step   (process start to exit)"
    )
    print(
        f"  executor + SubprocessRunner  {ours:7.3f} s  {ours / n * 1000:6.2f} ms/step   "
        f"(in-process, executor start to end)"
    )
    print(f"  ratio executor/baseline      {ratio:7.2f}   target <= {TARGET_RATIO} ({verdict} it)")
    if cli_runs:
        whole = best(cli_runs)
        print(
            f"  runner apply --parallel {p}    {whole.seconds:7.3f} s  "
            f"{whole.seconds / n * 1000:6.2f} ms/step   "
            f"(process start to exit, peak {whole.max_rss_mb:.0f} MB)"
        )
        print(f"  ratio apply/baseline         {whole.seconds / base.seconds:7.2f}")
    failed = [b for b in baselines if b.exit_code != 0] + [c for c in cli_runs if c.exit_code != 0]
    if failed:
        print("  a baseline or apply run did not exit 0", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
