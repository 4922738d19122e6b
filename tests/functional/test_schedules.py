"""Schedules on real repositories: `runner schedules list/preview` through the CLI, and the
claim protocol `runner reconcile` relies on, raced by real processes (one repo, and clones
pushing to one bare remote): every fire is won by exactly one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from runner.loading.source import locate
from runner.operations.schedules import armed_at, due_schedules
from runner.operations.validate import load_valid
from runner.state.events import list_events
from runner.state.records import read_yaml
from runner.state.schedule_state import ClaimResult, claim, read_states, set_last_run
from runner.state.store import StateStore
from tests.support.opsrepo import MINIMAL, OpsRepoBuilder

SCHEDULES = """\
    - name: nightly
      cron: "30 1 * * *"
      target: /projects/pay/environments/prod
      action: deploy
      new_commits_only: true
    - name: once
      run_at: "2026-11-27T05:00:00"
      timezone: Australia/Melbourne
      target: /projects/pay/environments/dev/assets/api
      action: deploy
      max_runs: 1
    - name: paused
      cron: "0 9 * * mon"
      target: /projects/pay/environments/dev
      action: deploy
      enabled: false
    - name: over
      cron: "0 * * * *"
      end_at: "2026-01-01"
      target: /projects/pay/environments/dev
      action: deploy
"""
RUNNER_YAML = """\
    parallelism: 2
    timezone: Europe/London
    groups: {release-managers: [alice]}
    """
MERGED = "2026-11-20T12:00:00Z"  # when the schedules were committed


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def commit_at(repo: OpsRepoBuilder, when: str, message: str = "change") -> str:
    """Commit the work tree with ``when`` as author and committer time."""
    env = {**os.environ, "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
    subprocess.run(["git", "add", "-A"], cwd=repo.root, check=True)
    subprocess.run(
        ["git", "commit", "-q", "--allow-empty", "-m", message], cwd=repo.root, check=True, env=env
    )
    return repo.git("rev-parse", "HEAD")


def make_repo(
    root: Path, schedules: str = SCHEDULES, runner_yaml: str = RUNNER_YAML
) -> OpsRepoBuilder:
    repo = OpsRepoBuilder(
        root, {**MINIMAL, "runner.yaml": runner_yaml, "schedules.yaml": schedules}
    )
    commit_at(repo, MERGED, "schedules")
    return repo


@pytest.fixture
def repo(tmp_path: Path) -> OpsRepoBuilder:
    return make_repo(tmp_path / "ops")


class Reconciler:
    """What `runner reconcile` does with schedules, in this process, on a real repo."""

    def __init__(self, root: Path, holder: str = "test:1:abc") -> None:
        self.ops = locate(root, root)
        self.holder = holder
        self.running: set[str] = set()
        self.asked: list[dict[str, Any]] = []

    def due(self, now: str) -> dict[str, datetime]:
        git = self.ops.require_git()
        snapshot = load_valid(self.ops, git.resolve("HEAD")).snapshot
        store = StateStore.for_settings(git, snapshot.settings)
        return {s.name: f for s, f in due_schedules(self.ops, snapshot, store, utc(now))}

    def claim(self, name: str, now: str) -> ClaimResult:
        git = self.ops.require_git()
        head = git.resolve("HEAD")
        snapshot = load_valid(self.ops, head).snapshot
        store = StateStore.for_settings(git, snapshot.settings)
        found = {s.name: (s, f) for s, f in due_schedules(self.ops, snapshot, store, utc(now))}
        schedule, fire = found[name]

        def still_running(last_run: dict[str, Any]) -> bool:
            self.asked.append(last_run)
            return str(last_run["id"]) in self.running

        armed = armed_at(git, self.ops.prefix, schedule, head)
        return claim(
            store, schedule, fire, head, self.holder, utc(now), still_running, armed_at=armed
        )

    def states(self) -> dict[str, dict[str, Any]]:
        return read_states(StateStore(self.ops.require_git()))


# --- list and preview ---------------------------------------------------------------------------

LIST_TEXT = """\
NAME     STATE     RUNS  WHEN                                  ZONE                 LAST FIRE (UTC)  LAST FIRE (LOCAL)  NEXT FIRE (UTC)   NEXT FIRE (LOCAL)      WHAT
nightly  active    0     30 1 * * *                            Europe/London        -                -                  2026-11-24 01:30  2026-11-24 01:30 GMT   deploy on /projects/pay/environments/prod
once     active    0/1   at 2026-11-27 05:00 AEDT              Australia/Melbourne  -                -                  2026-11-26 18:00  2026-11-27 05:00 AEDT  deploy on /projects/pay/environments/dev/assets/api
over     ended     0     0 * * * * until 2026-01-01 00:00 GMT  Europe/London        -                -                  -                 -                      deploy on /projects/pay/environments/dev
paused   disabled  0     0 9 * * mon                           Europe/London        -                -                  -                 -                      deploy on /projects/pay/environments/dev
"""  # noqa: E501


def test_list_text(repo: OpsRepoBuilder) -> None:
    result = repo.runner("schedules", "list", "--now", "2026-11-23T10:00:00Z")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == LIST_TEXT


def test_list_json(repo: OpsRepoBuilder) -> None:
    result = repo.runner(
        "schedules", "list", "--now", "2026-11-23T10:00:00+00:00", "--format", "json"
    )
    assert result.exit_code == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert list(rows) == ["nightly", "once", "over", "paused"]
    assert rows["nightly"] == {
        "name": "nightly",
        "file": "schedules.yaml:1",
        "state": "active",
        "target": "/projects/pay/environments/prod",
        "action": "deploy",
        "workflow": None,
        "cron": "30 1 * * *",
        "run_at": None,
        "timezone": "Europe/London",
        "enabled": True,
        "new_commits_only": True,
        "allow_parallel": False,
        "runs": 0,
        "max_runs": None,
        "end_at": None,
        "last_fire": None,
        "last_fire_local": None,
        "next_fire": "2026-11-24T01:30:00Z",
        "next_fire_local": "2026-11-24T01:30:00+00:00",
        "due": "2026-11-23T01:30:00Z",  # armed on the 20th: the latest window since is due
        "last_run": None,
        "last_skip": None,
    }
    once = rows["once"]
    assert (once["run_at"], once["next_fire"], once["next_fire_local"]) == (
        "2026-11-26T18:00:00Z",
        "2026-11-26T18:00:00Z",
        "2026-11-27T05:00:00+11:00",
    )
    assert (once["max_runs"], once["due"]) == (1, None)
    assert (rows["over"]["state"], rows["over"]["end_at"], rows["over"]["next_fire"]) == (
        "ended",
        "2026-01-01T00:00:00Z",
        None,
    )
    assert (rows["paused"]["state"], rows["paused"]["enabled"]) == ("disabled", False)


def test_list_shows_fires_from_the_state_branch(repo: OpsRepoBuilder) -> None:
    reconciler = Reconciler(repo.root)
    assert reconciler.claim("nightly", "2026-11-23T09:00:00Z").outcome == "fired"
    assert reconciler.claim("once", "2026-11-26T18:00:00Z").outcome == "fired"
    result = repo.runner("schedules", "list", "--now", "2026-11-26T20:00:00Z")
    assert result.exit_code == 0, result.stderr
    lines = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    # The nightly fire on the 24th, 25th and 26th is due (one fire); the one-off used its run.
    assert lines["nightly"][:11] == [
        "nightly",
        "active",
        "1",
        "30",
        "1",
        "*",
        "*",
        "*",
        "Europe/London",
        "2026-11-23",
        "01:30",
    ]
    assert lines["once"][:3] == ["once", "exhausted", "1/1"]
    assert "2026-11-26 18:00  2026-11-27 05:00 AEDT  -" in result.stdout


def test_preview(repo: OpsRepoBuilder) -> None:
    result = repo.runner(
        "schedules", "preview", "--from", "2026-11-26T00:00:00Z", "--to", "2026-11-28T00:00:00Z"
    )
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == textwrap.dedent(
        """\
        FIRE (UTC)        LOCAL                  ZONE                 SCHEDULE  WHAT
        2026-11-26 01:30  2026-11-26 01:30 GMT   Europe/London        nightly   deploy on /projects/pay/environments/prod
        2026-11-26 18:00  2026-11-27 05:00 AEDT  Australia/Melbourne  once      deploy on /projects/pay/environments/dev/assets/api
        2026-11-27 01:30  2026-11-27 01:30 GMT   Europe/London        nightly   deploy on /projects/pay/environments/prod
        3 fires from 2026-11-26 00:00 to 2026-11-28 00:00 UTC.
        """  # noqa: E501
    )
    named = repo.runner(
        "schedules", "preview", "--from", "2026-11-26", "--to", "2026-11-28", "--name", "once",
        "--format", "json",
    )  # fmt: skip
    assert named.exit_code == 0, named.stderr
    assert json.loads(named.stdout) == {
        "from": "2026-11-26T00:00:00Z",
        "to": "2026-11-28T00:00:00Z",
        "fires": [
            {
                "schedule": "once",
                "fire": "2026-11-26T18:00:00Z",
                "local": "2026-11-27T05:00:00+11:00",
                "timezone": "Australia/Melbourne",
                "target": "/projects/pay/environments/dev/assets/api",
                "action": "deploy",
                "workflow": None,
            }
        ],
        "truncated": False,
    }


def test_preview_across_daylight_saving(repo: OpsRepoBuilder) -> None:
    result = repo.runner(
        "schedules", "preview", "--from", "2026-10-24T12:00:00Z", "--to", "2026-10-26T12:00:00Z",
        "--name", "nightly",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[1:4] == [
        "2026-10-25 00:30  2026-10-25 01:30 BST  Europe/London  nightly   "
        "deploy on /projects/pay/environments/prod",
        "2026-10-26 01:30  2026-10-26 01:30 GMT  Europe/London  nightly   "
        "deploy on /projects/pay/environments/prod",
        "2 fires from 2026-10-24 12:00 to 2026-10-26 12:00 UTC.",
    ]


def test_preview_is_capped(tmp_path: Path) -> None:
    every_minute = """\
        - name: busy
          cron: "* * * * *"
          target: /projects/pay/environments/dev
          action: deploy
        """
    repo = make_repo(tmp_path / "ops", every_minute)
    result = repo.runner("schedules", "preview", "--from", "2026-11-23", "--to", "2026-11-24")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 + 1000 + 1
    assert lines[1].startswith("2026-11-23 00:01  2026-11-23 00:01 GMT")
    assert lines[1000].startswith("2026-11-23 16:40  2026-11-23 16:40 GMT")
    assert lines[-1] == (
        "Only the first 1,000 fires from 2026-11-23 00:00 to 2026-11-24 00:00 UTC are shown: "
        "narrow --from/--to or choose --name."
    )
    data = repo.runner(
        "schedules", "preview", "--from", "2026-11-23", "--to", "2026-11-24", "--format", "json"
    )
    body = json.loads(data.stdout)
    assert (len(body["fires"]), body["truncated"]) == (1000, True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("list", "--now", "next tuesday"),
            "error: --now: 'next tuesday' is not an ISO 8601 time (like 2026-11-23T02:00:00Z)\n",
        ),
        (
            ("preview", "--from", "2026-13-01", "--to", "2026-12-01"),
            "error: --from: '2026-13-01': month must be in 1..12\n",
        ),
        (
            ("preview", "--from", "2026-12-01", "--to", "2026-11-01"),
            "error: --to must be later than --from\n",
        ),
        (
            ("preview", "--from", "2026-11-01", "--to", "2026-12-01", "--name", "nope"),
            "error: no schedule named nope (schedules: nightly, once, over, paused)\n",
        ),
    ],
)
def test_bad_arguments_exit_3(repo: OpsRepoBuilder, args: tuple[str, ...], message: str) -> None:
    before = repo.snapshot_state()
    result = repo.runner("schedules", *args)
    assert (result.exit_code, result.stdout, result.stderr) == (3, "", message)
    assert repo.snapshot_state() == before


def test_a_bad_run_at_is_reported_with_file_and_line(tmp_path: Path) -> None:
    bad = """\
        - name: never
          run_at: "2026-02-30T10:00:00"
          target: /projects/pay/environments/dev
          action: deploy
        """
    repo = make_repo(tmp_path / "ops", bad)
    expected = "schedules.yaml:2: run_at: '2026-02-30T10:00:00': day is out of range for month\n"
    for command in (("validate",), ("schedules", "list")):
        result = repo.runner(*command)
        assert result.exit_code == 3, command
        assert result.stderr.startswith(expected), command


# --- arming and windows -------------------------------------------------------------------------


def test_a_schedule_fires_first_for_the_window_after_it_was_merged(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "ops", "[]\n")
    repo.write(
        "schedules.yaml",
        """\
        - name: soon
          run_at: "2026-11-23T14:00:00Z"
          target: /projects/pay/environments/dev
          action: deploy
        - name: too-late
          run_at: "2026-11-23T13:00:00Z"
          target: /projects/pay/environments/dev
          action: deploy
        """,
    )
    commit_at(repo, "2026-11-23T13:58:00Z", "add schedules")
    reconciler = Reconciler(repo.root)
    assert reconciler.due("2026-11-23T13:59:00Z") == {}
    assert reconciler.due("2026-11-23T14:05:00Z") == {"soon": utc("2026-11-23T14:00:00Z")}
    listed = repo.runner("schedules", "list", "--now", "2026-11-23T14:05:00Z", "--format", "json")
    states = {row["name"]: (row["state"], row["due"]) for row in json.loads(listed.stdout)}
    assert states == {"soon": ("active", "2026-11-23T14:00:00Z"), "too-late": ("ended", None)}


def test_arming_counts_from_the_merge_not_the_branch(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "ops", "[]\n")
    repo.git("checkout", "-q", "-b", "feature")
    repo.write(
        "schedules.yaml",
        """\
        - name: noon
          run_at: "2026-11-23T12:00:00Z"
          target: /projects/pay/environments/dev
          action: deploy
        """,
    )
    commit_at(repo, "2026-11-23T10:00:00Z", "add a schedule")
    repo.git("checkout", "-q", "main")
    env = {
        **os.environ,
        "GIT_AUTHOR_DATE": "2026-11-23T13:58Z",
        "GIT_COMMITTER_DATE": "2026-11-23T13:58Z",
    }
    subprocess.run(
        ["git", "merge", "-q", "--no-ff", "-m", "merge", "feature"],
        cwd=repo.root,
        check=True,
        env=env,
    )
    # Desired state from 13:58: the 12:00 one-off was already past.
    assert Reconciler(repo.root).due("2026-11-23T14:05:00Z") == {}


def test_a_missed_window_fires_once(repo: OpsRepoBuilder) -> None:
    reconciler = Reconciler(repo.root)
    assert reconciler.claim("nightly", "2026-11-21T09:00:00Z").outcome == "fired"
    commit_at(repo, "2026-11-22T12:00:00Z", "something new")
    # No reconcile for five days: one fire, for the latest window.
    assert reconciler.due("2026-11-26T09:00:00Z") == {"nightly": utc("2026-11-26T01:30:00Z")}
    result = reconciler.claim("nightly", "2026-11-26T09:00:00Z")
    assert (result.outcome, result.state["runs"]) == ("fired", 2)
    assert result.state["last_fire"] == "2026-11-26T01:30:00.000+00:00"
    assert "nightly" not in reconciler.due("2026-11-26T09:00:00Z")
    assert "nightly" not in reconciler.due("2026-11-27T01:29:00Z")
    assert "nightly" in reconciler.due("2026-11-27T01:30:00Z")


def test_new_commits_only(repo: OpsRepoBuilder) -> None:
    reconciler = Reconciler(repo.root)
    first = reconciler.claim("nightly", "2026-11-21T09:00:00Z")
    head = repo.git("rev-parse", "HEAD")
    assert (first.outcome, first.reason, first.state["commit"]) == ("fired", None, head)
    same = reconciler.claim("nightly", "2026-11-22T09:00:00Z")
    assert (same.outcome, same.reason) == ("skipped", "new_commits_only")
    assert same.state["runs"] == 1
    assert same.state["last_skip"] == {
        "fire": "2026-11-22T01:30:00.000+00:00",
        "reason": "new_commits_only",
    }
    assert "nightly" not in reconciler.due("2026-11-22T09:00:00Z")  # the skip used the window
    moved = commit_at(repo, "2026-11-22T12:00:00Z", "something new")
    again = reconciler.claim("nightly", "2026-11-23T09:00:00Z")
    assert (again.outcome, again.state["runs"], again.state["commit"]) == ("fired", 2, moved)
    events = [
        e for e in list_events(StateStore(reconciler.ops.require_git())) if e["kind"] == "schedule"
    ]
    assert [(e["schedule"], e["fire"], e["outcome"], e.get("reason")) for e in events] == [
        ("nightly", "2026-11-21T01:30:00.000+00:00", "fired", None),
        ("nightly", "2026-11-22T01:30:00.000+00:00", "skipped", "new_commits_only"),
        ("nightly", "2026-11-23T01:30:00.000+00:00", "fired", None),
    ]


def test_a_fire_is_skipped_while_the_last_run_is_still_going(tmp_path: Path) -> None:
    hourly = """\
        - name: hourly
          cron: "0 * * * *"
          target: /projects/pay/environments/dev
          action: deploy
        """
    repo = make_repo(tmp_path / "ops", hourly)
    reconciler = Reconciler(repo.root)
    assert reconciler.claim("hourly", "2026-11-23T10:00:00Z").outcome == "fired"
    store = StateStore(reconciler.ops.require_git())
    set_last_run(store, "hourly", "change", "20261123T100000000Z-aaaaaa")
    reconciler.running.add("20261123T100000000Z-aaaaaa")
    busy = reconciler.claim("hourly", "2026-11-23T11:00:00Z")
    assert (busy.outcome, busy.reason, busy.state["runs"]) == ("skipped", "still running", 1)
    assert reconciler.asked == [{"kind": "change", "id": "20261123T100000000Z-aaaaaa"}]
    reconciler.running.clear()
    done = reconciler.claim("hourly", "2026-11-23T12:00:00Z")
    assert (done.outcome, done.state["runs"], done.state["last_run"]) == ("fired", 2, None)
    state = read_yaml(store.read("schedules/hourly.yaml"))
    assert state == {
        "name": "hourly",
        "armed_at": "2026-11-20T12:00:00.000+00:00",
        "last_fire": "2026-11-23T12:00:00.000+00:00",
        "fired_at": "2026-11-23T12:00:00.000+00:00",
        "runs": 2,
        "commit": repo.git("rev-parse", "HEAD"),
        "claimed_by": "test:1:abc",
        "last_run": None,
        "last_skip": {"fire": "2026-11-23T11:00:00.000+00:00", "reason": "still running"},
    }


# --- races --------------------------------------------------------------------------------------

CLAIMER = """\
import json, os, sys, time
from datetime import datetime
from pathlib import Path

from runner.loading.source import locate
from runner.operations.schedules import due_schedules
from runner.operations.validate import load_valid
from runner.state.schedule_state import claim
from runner.state.store import StateStore

root, name, now_text, holder, ready, go = sys.argv[1:]
ops = locate(Path(root), Path(root))
git = ops.require_git()
head = git.resolve("HEAD")
snapshot = load_valid(ops, head).snapshot
store = StateStore.for_settings(git, snapshot.settings)
store.sync()
now = datetime.fromisoformat(now_text)
due = {s.name: (s, f) for s, f in due_schedules(ops, snapshot, store, now)}
schedule, fire = due[name]
Path(ready).touch()
while not os.path.exists(go):
    time.sleep(0.01)
result = claim(store, schedule, fire, head, holder, now, lambda last_run: False)
print(json.dumps({"outcome": result.outcome, "fire": fire.isoformat()}))
"""


def race(tmp_path: Path, roots: list[Path], name: str, now: str) -> list[dict[str, str]]:
    """One process per root, each claiming ``name``'s due fire once all are ready."""
    script = tmp_path / "claimer.py"
    script.write_text(CLAIMER)
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(len(roots))]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(root),
                name,
                now,
                f"racer-{i}",
                str(ready[i]),
                str(go),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, root in enumerate(roots)
    ]
    deadline = time.monotonic() + 60
    while not all(r.exists() for r in ready):
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            outputs = [p.communicate() for p in procs]
            pytest.fail(f"a claimer did not get ready: {outputs}")
        time.sleep(0.02)
    go.touch()
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        results.append(json.loads(stdout))
    return results


def test_processes_racing_for_one_fire_fire_it_once(repo: OpsRepoBuilder, tmp_path: Path) -> None:
    results = race(tmp_path, [repo.root] * 4, "nightly", "2026-11-23T10:00:00+00:00")
    assert Counter(r["outcome"] for r in results) == {"fired": 1, "taken": 3}
    assert {r["fire"] for r in results} == {"2026-11-23T01:30:00+00:00"}
    state = read_yaml(repo.git("show", "runner-state:schedules/nightly.yaml").encode())
    winner = next(i for i, r in enumerate(results) if r["outcome"] == "fired")
    assert (state["runs"], state["claimed_by"]) == (1, f"racer-{winner}")
    events = repo.git("log", "--format=%s", "runner-state").splitlines()
    assert events == ["runner: schedule nightly claims 2026-11-23T01:30:00.000+00:00"]


def test_clones_racing_through_a_remote_fire_once(tmp_path: Path) -> None:
    origin_yaml = RUNNER_YAML + "state: {branch: runner-state, remote: origin}\n"
    source = make_repo(tmp_path / "source", runner_yaml=origin_yaml)
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(source.root), str(bare)], check=True)
    clones = []
    for i in range(2):
        clone = tmp_path / f"clone-{i}"
        subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True)
        clones.append(clone)
    results = race(
        tmp_path,
        [clones[0], clones[1], clones[0], clones[1]],
        "nightly",
        "2026-11-23T10:00:00+00:00",
    )
    assert Counter(r["outcome"] for r in results) == {"fired": 1, "taken": 3}
    shown = subprocess.run(
        ["git", "show", "runner-state:schedules/nightly.yaml"],
        cwd=bare, check=True, capture_output=True, text=True,
    )  # fmt: skip
    state = read_yaml(shown.stdout.encode())
    winner = next(i for i, r in enumerate(results) if r["outcome"] == "fired")
    assert (state["runs"], state["claimed_by"]) == (1, f"racer-{winner}")
    log = subprocess.run(
        ["git", "log", "--format=%s", "runner-state"],
        cwd=bare, check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert log.stdout.splitlines() == [
        "runner: schedule nightly claims 2026-11-23T01:30:00.000+00:00"
    ]
