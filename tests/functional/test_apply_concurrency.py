"""`runner apply` under signals, crashes and races: real processes, real repos, real remotes.

Git is the only database (SPEC 4, issue 4): change records, logs and leases are commits on the
state branch, each a compare-and-swap of its tip (and, with a remote, a fast-forward push). So:
- SIGTERM/SIGINT stop the running steps, their statuses end `cancelled`, the record is
  committed, and the runner exits 143/130;
- a runner killed with SIGKILL leaves a lease that expires; the next runner takes it over, marks
  the dead change `aborted`, and `resume` re-runs only the steps that did not succeed;
- runners started at once on one repo, or on clones pushing to one bare remote, run every node
  exactly once between them, record every change exactly once and lose no commit.

The ops repos come from `make_repo` (tests/functional/test_apply_failures.py): steps append
"<asset> <step>" lines to `<out>/trace` (O_APPEND, one short line per write).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.functional.test_apply_failures import (
    TRACE,
    Lab,
    fsck,
    git,
    make_repo,
    node,
    processes_with,
    state_records,
    steps_of,
    traced,
)
from tests.support.opsrepo import run_cli

LOCK_TIMEOUT = "60s"


def start_runner(cwd: Path, *args: str) -> subprocess.Popen[str]:
    """``runner ARGS`` in the background, as CI would start it."""
    return subprocess.Popen(
        [sys.executable, "-m", "runner", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(
    what: str,
    check: Callable[[], bool],
    timeout: float = 30.0,
    runner: subprocess.Popen[str] | None = None,
) -> None:
    """Poll ``check`` until it holds; fail after ``timeout`` or as soon as ``runner`` exits."""
    deadline = time.monotonic() + timeout
    while not check():
        if runner is not None and runner.poll() is not None:
            stdout, stderr = runner.communicate()
            pytest.fail(f"the runner exited {runner.returncode} before {what}: {stdout}{stderr}")
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:g}s for {what}")
        time.sleep(0.1)


def step_running(repo: Path, asset: str, step_id: str) -> bool:
    """The state branch says ``step_id`` of ``asset``'s change is running."""
    return any(
        r["node"] == node(asset) and steps_of(r).get(step_id) == "running"
        for r in state_records(repo)
    )


def leases_on(repo: Path) -> list[str]:
    return git(repo, "ls-tree", "-r", "--name-only", "runner-state", "--", "leases/").split()


def assert_linear_and_sound(repo: Path) -> None:
    """The state branch has no merge commits and the repository is sound."""
    assert git(repo, "rev-list", "--min-parents=2", "runner-state") == ""
    assert fsck(repo) == ""


def unique_sleep() -> str:
    """An argument for ``sleep`` of about 30 s that no other process on the machine uses."""
    return f"30.{os.getpid():07d}{time.monotonic_ns() % 10_000:04d}"


# --- SIGTERM and SIGINT ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signum", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"]
)
def test_a_signal_cancels_the_running_step_records_it_and_exits_128_plus_signal(
    tmp_path: Path, signum: int, exit_code: int
) -> None:
    sleep = unique_sleep()
    steps = [
        traced("prepare"),
        {"name": "wait", "run": f"{TRACE}; exec sleep {sleep}"},
        traced("after"),
    ]
    lab = make_repo(tmp_path, {"job": steps}, {"api": {"template": "job"}})
    runner = start_runner(lab.repo.root, "apply")
    try:
        wait_for(
            "the step to run", lambda: step_running(lab.repo.root, "api", "wait"), runner=runner
        )

        signalled = time.monotonic()
        runner.send_signal(signum)
        stdout, stderr = runner.communicate(timeout=30)
        elapsed = time.monotonic() - signalled
    finally:
        runner.kill()
        runner.wait()

    assert runner.returncode == exit_code, stderr
    assert elapsed < 5, f"the runner took {elapsed:.1f}s to stop"
    assert processes_with(sleep) == []
    assert lab.trace() == ["api prepare", "api wait"]
    record = lab.record("api")
    assert record["status"] == "cancelled"
    statuses = steps_of(record)
    assert (statuses["prepare"], statuses["wait"]) == ("success", "cancelled")
    assert statuses["after"] in ("cancelled", "skipped")
    assert f"cancelled {node('api')}" in stdout
    assert leases_on(lab.repo.root) == []
    assert_linear_and_sound(lab.repo.root)


# --- a runner killed with SIGKILL -----------------------------------------------------------


# `long` sleeps ~30 s the first time it runs (the runner is killed under it), and is quick on any
# later run; it writes its pid (its process group: steps run in a session of their own) first.
def crash_steps(sleep: str) -> list[dict[str, Any]]:
    first_time = (
        "test -e ${{ properties.out }}/crashed || "
        f"{{ touch ${{{{ properties.out }}}}/crashed; exec sleep {sleep}; }}"
    )
    return [
        traced("first"),
        {
            "name": "long",
            "run": f"echo $$ > ${{{{ properties.out }}}}/long.pid; {TRACE}; {first_time}",
        },
        traced("last"),
    ]


def crash_mid_step(tmp_path: Path) -> tuple[Lab, dict[str, Any]]:
    """An apply killed with SIGKILL while `long` runs; the step's process group killed too.
    Returns the lab and the change record the dead runner left."""
    sleep = unique_sleep()
    lab = make_repo(
        tmp_path,
        {"job": crash_steps(sleep)},
        {"api": {"template": "job"}},
        settings={"parallelism": 1, "leases": {"ttl": "2s", "renew_every": "1s"}},
    )
    runner = start_runner(lab.repo.root, "apply")
    try:
        wait_for(
            "the long step to run",
            lambda: step_running(lab.repo.root, "api", "long"),
            runner=runner,
        )
    finally:
        runner.kill()  # SIGKILL: no handler runs, nothing is recorded
        runner.communicate()
        pid_file = lab.out / "long.pid"
        if pid_file.exists():
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)
    wait_for("the step to die", lambda: processes_with(sleep) == [], timeout=5)
    (dead,) = lab.records()
    assert dead["status"] == "running"
    assert steps_of(dead) == {"first": "success", "long": "running", "last": "pending"}
    assert leases_on(lab.repo.root) == ["leases/projects/ops/environments/dev/assets/api.yaml"]
    return lab, dead


def test_the_next_apply_takes_over_an_expired_lease_marks_the_dead_change_aborted_and_reruns(
    tmp_path: Path,
) -> None:
    lab, dead = crash_mid_step(tmp_path)

    applied = lab.runner("apply", "--lock-timeout", LOCK_TIMEOUT)

    assert applied.exit_code == 0, applied.stderr
    aborted, rerun = lab.records()
    assert aborted["id"] == dead["id"]
    assert aborted["status"] == "aborted"
    assert steps_of(aborted) == {"first": "success", "long": "aborted", "last": "aborted"}
    assert (rerun["status"], rerun["node"]) == ("success", node("api"))
    assert lab.trace() == ["api first", "api long", "api first", "api long", "api last"]
    assert leases_on(lab.repo.root) == []
    assert_linear_and_sound(lab.repo.root)


def test_resume_after_a_crash_reruns_only_the_steps_that_did_not_succeed(tmp_path: Path) -> None:
    lab, dead = crash_mid_step(tmp_path)

    resumed = lab.runner("resume", dead["id"], "--lock-timeout", LOCK_TIMEOUT)

    assert resumed.exit_code == 0, resumed.stderr
    assert lab.trace() == ["api first", "api long", "api long", "api last"]  # `first` ran once
    (record,) = lab.records()  # the same record, carried on
    assert (record["id"], record["status"]) == (dead["id"], "success")
    assert steps_of(record) == {"first": "success", "long": "success", "last": "success"}
    assert leases_on(lab.repo.root) == []
    assert_linear_and_sound(lab.repo.root)

    again = lab.runner("apply")  # the resumed change applied the node at this commit
    assert again.exit_code == 0, again.stderr
    assert len(lab.trace()) == 4
    assert len(lab.records()) == 1


# --- races ----------------------------------------------------------------------------------

RACERS = 4
NODES = ("n1", "n2", "n3", "n4", "n5")
# Each node: `begin` and `end` around a short sleep, so overlapping runs of a node would show.
SLOW = [
    {"name": "begin", "run": f"{TRACE}; sleep 0.3"},
    traced("end"),
]


def race_assets() -> dict[str, dict[str, Any]]:
    assets: dict[str, dict[str, Any]] = {name: {"template": "slow"} for name in NODES}
    assets["n5"]["depends_on"] = ["n1"]
    return assets


def assert_every_node_ran_exactly_once(lab: Lab) -> None:
    trace = lab.trace()
    assert Counter(trace) == Counter(f"{n} {s}" for n in NODES for s in ("begin", "end")), trace
    for name in NODES:  # never two runs of one node at once: its begin is followed by its end
        mine = [line for line in trace if line.startswith(f"{name} ")]
        assert mine == [f"{name} begin", f"{name} end"]


def assert_every_change_recorded_once(records: list[dict[str, Any]]) -> None:
    assert sorted((r["node"], r["status"]) for r in records) == [
        (node(name), "success") for name in NODES
    ]
    assert len({r["id"] for r in records}) == len(records)


def finish_all(runners: list[subprocess.Popen[str]]) -> list[tuple[int, str, str]]:
    results = []
    try:
        for runner in runners:
            stdout, stderr = runner.communicate(timeout=90)
            results.append((runner.returncode, stdout, stderr))
    finally:
        for runner in runners:
            runner.kill()
            runner.wait()
    return results


def test_four_runners_started_at_once_on_one_repo_run_every_node_once(tmp_path: Path) -> None:
    lab = make_repo(tmp_path, {"slow": SLOW}, race_assets(), settings={"parallelism": 2})

    runners = [
        start_runner(lab.repo.root, "apply", "--lock-timeout", LOCK_TIMEOUT) for _ in range(RACERS)
    ]
    results = finish_all(runners)

    assert [code for code, _, _ in results] == [0] * RACERS, [err for _, _, err in results]
    assert_every_node_ran_exactly_once(lab)
    assert_every_change_recorded_once(lab.records())
    ran = [line for _, out, _ in results for line in out.splitlines() if line.startswith("success")]
    assert len(ran) == len(NODES)
    for _, stdout, _ in results:  # a runner that found a node done says so
        assert (
            all(
                line.startswith("success") or "already applied with these inputs" in line
                for line in stdout.splitlines()
            )
            or stdout == "Nothing to do.\n"
        ), stdout
    assert leases_on(lab.repo.root) == []
    assert_linear_and_sound(lab.repo.root)

    again = lab.runner("apply")
    assert (again.exit_code, again.stdout) == (0, "Nothing to do.\n")


def test_four_clones_pushing_to_one_bare_remote_run_every_node_once(tmp_path: Path) -> None:
    lab = make_repo(
        tmp_path,
        {"slow": SLOW},
        race_assets(),
        settings={"parallelism": 2, "state": {"remote": "origin"}},
    )
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "--initial-branch=main", str(remote))
    git(lab.repo.root, "remote", "add", "origin", str(remote))
    git(lab.repo.root, "push", "-q", "origin", "main")
    clones = []
    for i in range(RACERS):
        clone = tmp_path / f"ci-{i}"
        git(tmp_path, "clone", "-q", str(remote), str(clone))
        clones.append(clone)

    runners = [
        start_runner(clone, "apply", "--push", "--lock-timeout", LOCK_TIMEOUT) for clone in clones
    ]
    results = finish_all(runners)

    assert [code for code, _, _ in results] == [0] * RACERS, [err for _, _, err in results]
    assert_every_node_ran_exactly_once(lab)
    assert_every_change_recorded_once(state_records(remote))
    assert leases_on(remote) == []
    assert_linear_and_sound(remote)
    for clone in clones:
        assert fsck(clone) == ""

    late = tmp_path / "ci-late"  # a fifth pipeline, later: everything is applied
    git(tmp_path, "clone", "-q", str(remote), str(late))
    again = lab.runner("apply")
    assert (again.exit_code, again.stdout) == (0, "Nothing to do.\n")
    late_apply = run_cli("apply", "--push", cwd=late)
    assert (late_apply.exit_code, late_apply.stdout) == (0, "Nothing to do.\n"), late_apply.stderr
    assert len(state_records(remote)) == len(NODES)
