"""`runner workflow run`, `runner runs list/show`, and runs carried on after a decision.

Real ops repos (tests/support/opsrepo.py MINIMAL plus workflows), the real CLI, the real state
branch, real step processes. The template's `deploy` appends "deploy <env>/<asset> <image tag>"
to `<out>/trace`; workflow `run:` steps append their own lines, so a test sees what ran. Runs
waiting for a decision are carried on by `advance_runs` called on the real repository in a
subprocess (what `runner reconcile` does), and once through `runner reconcile` itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.functional.test_apply_failures import processes_with
from tests.support.opsrepo import MINIMAL, OpsRepoBuilder, Result

TEMPLATE = """\
    name: Web service
    properties:
      replicas: 2
      image: {repository: acme/web, tag: "1.0.0"}
    on_change: deploy
    actions:
      deploy:
        steps:
          - name: roll
            run: >-
              echo "deploy ${RUNNER_NODE#/projects/pay/environments/}
              ${{ properties.image.tag }}" >> ${{ properties.out }}/trace
      break:
        steps:
          - {name: fail, run: "echo broken; exit 2"}
    """

RELEASE = """\
    name: Release
    steps:
      - {name: dev, change: {target: /projects/pay/environments/dev, action: deploy}}
      - {name: approve, needs: [dev], wait: {approval_from: [release-managers], message: Check dev}}
      - name: prod
        needs: [approve]
        change: {target: /projects/pay/environments/prod, action: deploy}
      - {name: notify, if: always(), run: "echo notify >> {out}/trace"}
    """


@dataclass
class Lab:
    repo: OpsRepoBuilder
    out: Path

    def runner(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return self.repo.runner(*args, env=env)

    def trace(self) -> list[str]:
        path = self.out / "trace"
        return path.read_text("utf-8").splitlines() if path.exists() else []

    def state(self, path: str) -> str | None:
        done = subprocess.run(
            ["git", "show", f"runner-state:{path}"],
            cwd=self.repo.root,
            capture_output=True,
            text=True,
        )
        return done.stdout if done.returncode == 0 else None

    def state_files(self, prefix: str) -> list[str]:
        done = subprocess.run(
            ["git", "ls-tree", "-r", "--name-only", "runner-state", "--", prefix],
            cwd=self.repo.root,
            capture_output=True,
            text=True,
        )
        return done.stdout.split() if done.returncode == 0 else []

    def tip(self) -> str:
        return self.repo.git("rev-parse", "runner-state")

    def run_record(self, run_id: str) -> dict[str, Any]:
        text = self.state(f"runs/{run_id}.yaml")
        assert text is not None, run_id
        return yaml.safe_load(text)  # type: ignore[no-any-return]

    def change(self, change_id: str) -> dict[str, Any]:
        text = self.state(f"changes/{change_id[:8]}/{change_id}.yaml")
        assert text is not None, change_id
        return yaml.safe_load(text)  # type: ignore[no-any-return]

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
        """`runner workflow run NAME --format json`: the run record it printed."""
        done = self.runner("workflow", "run", name, "--format", "json", *args, env=env)
        assert done.exit_code in (0, 1), done.stderr
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    def advance(self, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """`advance_runs` on this repository, in a subprocess: the runs it touched."""
        code = textwrap.dedent(
            """\
            import json, os, threading
            from pathlib import Path
            from runner.loading.source import locate
            from runner.operations.apply import ApplyOptions
            from runner.workflows.engine import advance_runs
            from runner.workflows.records import as_dict
            ops = locate(None, Path.cwd())
            runs = advance_runs(ops, ApplyOptions(), os.environ, threading.Event())
            print(json.dumps([as_dict(r) for r in runs]))
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=self.repo.root,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)  # type: ignore[no-any-return]


def make_lab(
    tmp_path: Path,
    workflows: dict[str, str],
    *,
    settings: str | None = None,
    files: dict[str, str] | None = None,
) -> Lab:
    out = tmp_path / "out"
    out.mkdir()
    tree = dict(MINIMAL)
    tree["properties.yaml"] = f"org: acme\nout: {out}\n"
    tree["templates/web/template.yaml"] = TEMPLATE
    if settings is not None:
        tree["runner.yaml"] = settings
    for name, text in workflows.items():
        project, _, code = name.rpartition("/")
        body = textwrap.dedent(text).replace("{out}", str(out))
        tree[f"projects/{project or 'pay'}/workflows/{code}.yaml"] = body
    tree.update(files or {})
    repo = OpsRepoBuilder(tmp_path / "ops", tree)
    repo.commit("initial")
    return Lab(repo, out)


def statuses(record: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in record["steps"]}


def step_of(record: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in record["steps"] if s["name"] == name)


# --- a release: deploy dev, wait, approve, carry on ------------------------------------------


def test_a_run_waits_refuses_an_outsider_and_goes_on_once_a_member_approves(
    tmp_path: Path,
) -> None:
    lab = make_lab(tmp_path, {"release": RELEASE})

    started = lab.runner("workflow", "run", "release")

    assert started.exit_code == 0, started.stderr
    run_id = started.stdout.splitlines()[-2].split()[1]
    assert started.stdout.splitlines()[-2:] == [
        f"run {run_id} of pay/release: waiting",
        f"run {run_id} waits at approve for approval from release-managers: "
        f"runner approve {run_id} approve",
    ]
    assert lab.trace() == ["deploy dev/assets/api 1.1.0"]
    record = lab.run_record(run_id)
    assert (record["id"], record["workflow"], record["name"]) == (run_id, "pay/release", "Release")
    assert (record["status"], record["trigger"], record["finished"]) == ("waiting", "manual", None)
    assert record["commit"] == lab.repo.git("rev-parse", "HEAD")
    assert statuses(record) == {
        "dev": "success",
        "approve": "waiting",
        "prod": "pending",
        "notify": "pending",
    }
    approve = step_of(record, "approve")
    assert (approve["waiting_for"], approve["message"], approve["needs"]) == (
        ["release-managers"],
        "Check dev",
        ["dev"],
    )
    assert step_of(record, "notify")["needs"] == ["prod"]  # sequential: after the step above
    (dev_change,) = step_of(record, "dev")["changes"]
    change = lab.change(dev_change)
    assert (change["node"], change["status"], change["kind"]) == (
        "/projects/pay/environments/dev/assets/api",
        "success",
        "workflow",
    )
    assert (change["run"], change["run_step"]) == (run_id, "dev")

    before = lab.tip()
    refused = lab.runner("approve", run_id, "approve", "--by", "mallory")
    assert refused.exit_code == 4
    assert refused.stderr.startswith("error: mallory is not in release-managers; only alice")
    assert lab.tip() == before  # nothing recorded
    assert lab.advance() == []  # no news: nothing carried on

    approved = lab.runner("approve", run_id, "approve", "-m", "dev looks fine", env=ALICE)
    assert approved.exit_code == 0, approved.stderr
    assert approved.stdout.strip() == (
        f'approved step approve of run {run_id} as alice ("dev looks fine"); '
        "the next `runner reconcile` carries the run on"
    )
    decision = yaml.safe_load(lab.state(f"approvals/{run_id}/approve.yaml") or "")
    assert {k: decision[k] for k in ("decision", "user", "message")} == {
        "decision": "approve",
        "user": "alice",
        "message": "dev looks fine",
    }
    assert step_of(lab.run_record(run_id), "approve")["decision"] == decision
    events = [yaml.safe_load(lab.state(p) or "") for p in lab.state_files("events")]
    assert [(e["kind"], e["by"], e["run"], e["step"]) for e in events] == [
        ("approve", "alice", run_id, "approve")
    ]
    again = lab.runner("approve", run_id, "approve", "--by", "alice")
    assert again.exit_code == 3
    assert f"was already approved by alice at {decision['time']}" in again.stderr

    (carried,) = lab.advance()

    assert (carried["id"], carried["status"]) == (run_id, "success")
    assert lab.trace() == [
        "deploy dev/assets/api 1.1.0",
        "deploy prod/assets/db 1.0.0",  # depends_on order under the environment
        "deploy prod/assets/api 1.0.9",
        "notify",
    ]
    record = lab.run_record(run_id)
    assert record["status"] == "success"
    assert record["finished"] is not None
    assert set(statuses(record).values()) == {"success"}
    prod = [lab.change(c) for c in step_of(record, "prod")["changes"]]
    assert sorted((c["node"], c["status"], c["run_step"]) for c in prod) == [
        ("/projects/pay/environments/prod/assets/api", "success", "prod"),
        ("/projects/pay/environments/prod/assets/db", "success", "prod"),
    ]
    assert lab.advance() == []  # finished runs are left alone


ALICE = {"GITHUB_ACTOR": "alice"}


def test_reconcile_carries_an_approved_run_on(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, {"release": RELEASE})
    if lab.runner("reconcile", "--help").exit_code != 0:
        pytest.skip("runner reconcile is not available")
    run_id = lab.start("release")["id"]
    assert lab.runner("approve", run_id, "approve", "--by", "alice").exit_code == 0

    reconciled = lab.runner("reconcile", "--no-drift")

    assert reconciled.exit_code == 0, reconciled.stderr
    record = lab.run_record(run_id)
    assert record["status"] == "success"
    assert step_of(record, "approve")["decision"]["user"] == "alice"
    assert "notify" in lab.trace()


def test_a_rejected_wait_ends_the_run_in_error_and_always_steps_still_run(
    tmp_path: Path,
) -> None:
    lab = make_lab(tmp_path, {"release": RELEASE})
    run_id = lab.start("release")["id"]

    rejected = lab.runner("reject", run_id, "approve", "--by", "alice", "-m", "not today")
    assert rejected.exit_code == 0, rejected.stderr
    (carried,) = lab.advance()

    assert carried["status"] == "error"
    record = lab.run_record(run_id)
    assert statuses(record) == {
        "dev": "success",
        "approve": "error",
        "prod": "skipped",
        "notify": "success",
    }
    assert step_of(record, "approve")["error"] == "rejected by alice: not today"
    assert step_of(record, "approve")["decision"]["decision"] == "reject"
    assert step_of(record, "prod")["message"] == "skipped: approve failed"
    assert lab.trace() == ["deploy dev/assets/api 1.1.0", "notify"]
    shown = lab.runner("runs", "show", run_id)
    assert shown.exit_code == 0
    assert f"run {run_id}: error" in shown.stdout
    (line,) = [x for x in shown.stdout.splitlines() if x.startswith("  error     approve ")]
    assert line.startswith("  error     approve  rejected by alice at ")
    assert line.endswith(': "not today"')


# --- ordering and conditions -------------------------------------------------------------------


def test_failure_always_and_needs_decide_what_runs_after_a_failed_step(tmp_path: Path) -> None:
    flow = """\
        steps:
          - {name: build, run: "echo build >> {out}/trace"}
          - {name: test, run: "echo test >> {out}/trace; exit 3"}
          - {name: deploy, run: "echo deploy >> {out}/trace"}
          - {name: rollback, if: failure(), run: "echo rollback >> {out}/trace"}
          - {name: report, if: always(), run: "echo report >> {out}/trace"}
          - {name: lint, needs: [build], run: "echo lint >> {out}/trace"}
        """
    lab = make_lab(tmp_path, {"ci": flow}, settings="parallelism: 1\n")

    done = lab.runner("workflow", "run", "ci")

    assert done.exit_code == 1, done.stderr
    assert lab.trace() == ["build", "test", "rollback", "report", "lint"]
    run_id = done.stdout.splitlines()[-1].split()[1]
    record = lab.run_record(run_id)
    assert record["status"] == "error"
    assert statuses(record) == {
        "build": "success",
        "test": "error",
        "deploy": "skipped",
        "rollback": "success",
        "report": "success",
        "lint": "success",
    }
    assert (step_of(record, "test")["exit_code"], step_of(record, "test")["error"]) == (
        3,
        "exit code 3",
    )
    assert step_of(record, "lint")["needs"] == ["build"]
    assert done.stdout.splitlines()[:6] == [
        "success   build  exit code 0",
        "error     test  exit code 3",
        "skipped   deploy  skipped: test failed",
        "success   rollback  exit code 0",
        "success   report  exit code 0",
        "success   lint  exit code 0",
    ]
    log = lab.state(f"logs/{run_id}/test.log") or ""
    assert log.splitlines()[-1] == "error: exit code 3"


def test_a_failure_handler_is_skipped_when_nothing_failed_and_what_follows_runs(
    tmp_path: Path,
) -> None:
    flow = """\
        steps:
          - {name: deploy, run: "echo deploy >> {out}/trace"}
          - {name: rollback, if: failure(), run: "echo rollback >> {out}/trace"}
          - {name: notify, run: "echo notify >> {out}/trace"}
        """
    lab = make_lab(tmp_path, {"ci": flow})

    record = lab.start("ci")

    assert record["status"] == "success"
    assert statuses(record) == {"deploy": "success", "rollback": "skipped", "notify": "success"}
    assert lab.trace() == ["deploy", "notify"]


# Each step of the pair waits for the other to have started: they pass only when they run at
# the same time (one after the other, the first would wait until its timeout).
def _meets(me: str, other: str) -> str:
    return (
        f"touch {{out}}/{me}; while [ ! -f {{out}}/{other} ]; do sleep 0.05; done; "
        f"echo {me} >> {{out}}/trace"
    )


def test_a_parallel_group_runs_its_steps_together_and_later_steps_wait_for_all(
    tmp_path: Path,
) -> None:
    flow = f"""\
        steps:
          - name: checks
            run_as: parallel
            steps:
              - {{name: lint, timeout: 60s, run: "{_meets("lint", "unit")}"}}
              - {{name: unit, timeout: 60s, run: "{_meets("unit", "lint")}"}}
          - {{name: after, run: "echo after >> {{out}}/trace"}}
        """
    lab = make_lab(tmp_path, {"ci": flow})

    record = lab.start("ci")

    assert record["status"] == "success", record
    assert statuses(record) == {
        "checks": "success",
        "checks/lint": "success",
        "checks/unit": "success",
        "after": "success",
    }
    assert [s["kind"] for s in record["steps"]] == ["group", "run", "run", "run"]
    assert step_of(record, "after")["needs"] == ["checks"]
    assert sorted(lab.trace()[:2]) == ["lint", "unit"]
    assert lab.trace()[2] == "after"


def test_a_parallel_workflow_runs_steps_together_and_needs_joins_them(tmp_path: Path) -> None:
    flow = f"""\
        run_as: parallel
        steps:
          - {{name: one, timeout: 20s, run: "{_meets("one", "two")}"}}
          - {{name: two, timeout: 20s, run: "{_meets("two", "one")}"}}
          - {{name: both, needs: [one, two], run: "echo both >> {{out}}/trace"}}
        """
    lab = make_lab(tmp_path, {"ci": flow})

    record = lab.start("ci")

    assert statuses(record) == {"one": "success", "two": "success", "both": "success"}
    assert lab.trace()[2] == "both"


def test_a_nested_workflow_runs_inline_with_its_overrides_and_the_runs_set(
    tmp_path: Path,
) -> None:
    deploy_dev = """\
        property_overrides: {image: {tag: "7.0.0"}}
        steps:
          - {name: dev, change: {target: /projects/pay/environments/dev/assets/api, action: deploy}}
          - {name: smoke, run: "echo smoke $RUNNER_STEP >> {out}/trace"}
        """
    release = """\
        steps:
          - {name: first, workflow: deploy-dev}
          - name: prod
            change:
              target: /projects/pay/environments/prod/assets/api
              action: deploy
              property_overrides: {image: {tag: "8.0.0"}}
          - {name: done, run: "echo done >> {out}/trace"}
        """
    lab = make_lab(tmp_path, {"deploy-dev": deploy_dev, "release": release})

    record = lab.start("release", "--set", "replicas=3")

    assert record["status"] == "success", record
    assert [s["name"] for s in record["steps"]] == [
        "first",
        "first/dev",
        "first/smoke",
        "prod",
        "done",
    ]
    assert step_of(record, "first")["kind"] == "workflow"
    assert record["overrides"] == {"replicas": 3}
    assert lab.trace() == [
        "deploy dev/assets/api 7.0.0",
        "smoke first/smoke",
        "deploy prod/assets/api 8.0.0",
        "done",
    ]
    (dev,) = step_of(record, "first/dev")["changes"]
    assert lab.change(dev)["run_step"] == "first/dev"
    assert lab.change(dev)["overrides"] == {"image": {"tag": "7.0.0"}, "replicas": 3}


# --- inline commands ---------------------------------------------------------------------------

TOKEN = "wf-s3cr3t-9d41"


def test_an_inline_command_gets_the_run_environment_and_a_secret_it_never_shows(
    tmp_path: Path,
) -> None:
    flow = """\
        steps:
          - name: publish
            run: >-
              echo "$RUNNER_RUN_ID $RUNNER_WORKFLOW $RUNNER_STEP $RUNNER_COMMIT" > {out}/env;
              test -f runner.yaml && echo "at the ops root" > {out}/cwd;
              printf %s "${{ secrets.TOKEN }}" | sha256sum | cut -d' ' -f1 > {out}/hash;
              echo "token is ${{ secrets.TOKEN }}";
              touch {out}/started; while [ ! -f {out}/go ]; do sleep 0.05; done
        """
    lab = make_lab(tmp_path, {"publish": flow})
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "workflow", "run", "publish"],
        cwd=lab.repo.root,
        env={**os.environ, "RUNNER_SECRET_TOKEN": TOKEN},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lab.out / "started", proc)
        assert processes_with(TOKEN) == []  # not on any command line
    finally:
        (lab.out / "go").touch()
        stdout, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 0, stderr
    run_id = stdout.splitlines()[-1].split()[1]
    head = lab.repo.git("rev-parse", "HEAD")
    assert (lab.out / "env").read_text().split() == [run_id, "pay/publish", "publish", head]
    assert (lab.out / "cwd").read_text() == "at the ops root\n"
    assert (lab.out / "hash").read_text().strip() == hashlib.sha256(TOKEN.encode()).hexdigest()
    assert lab.state(f"logs/{run_id}/publish.log") == "token is ***\n"
    everything = lab.repo.git("log", "-p", "runner-state") + stdout + stderr
    assert TOKEN not in everything


def test_an_inline_command_is_retried_and_its_log_keeps_every_attempt(tmp_path: Path) -> None:
    flow = """\
        steps:
          - name: flaky
            retries: {attempts: 2, backoff: 0s}
            run: >-
              echo try >> {out}/tries; echo "attempt $(wc -l < {out}/tries)";
              [ "$(wc -l < {out}/tries)" -ge 3 ]
        """
    lab = make_lab(tmp_path, {"flaky": flow})

    record = lab.start("flaky")

    assert record["status"] == "success"
    assert step_of(record, "flaky")["message"] == "exit code 0 after 3 attempts"
    log = lab.state(f"logs/{record['id']}/flaky.log") or ""
    assert log.splitlines() == [
        "attempt 1",
        "--- attempt 2 ---",
        "attempt 2",
        "--- attempt 3 ---",
        "attempt 3",
    ]


def test_sigterm_stops_a_running_step_and_the_run_ends_cancelled(tmp_path: Path) -> None:
    flow = """\
        steps:
          - {name: hang, run: "touch {out}/started; while true; do sleep 0.05; done"}
          - {name: after, run: "echo after >> {out}/trace"}
        """
    lab = make_lab(tmp_path, {"hang": flow})
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "workflow", "run", "hang"],
        cwd=lab.repo.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(lab.out / "started", proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 143, stderr
    run_id = stdout.splitlines()[-1].split()[1]
    record = lab.run_record(run_id)
    assert record["status"] == "cancelled"
    assert statuses(record) == {"hang": "cancelled", "after": "cancelled"}
    assert lab.trace() == []


def test_a_run_whose_runner_died_is_aborted_once_its_lease_expires(tmp_path: Path) -> None:
    flow = """\
        steps:
          - {name: hang, run: "touch {out}/started; while [ ! -f {out}/go ]; do sleep 0.05; done"}
        """
    settings = "leases: {ttl: 1s, renew_every: 0.2s}\ngroups: {release-managers: [alice]}\n"
    lab = make_lab(tmp_path, {"hang": flow}, settings=settings)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "workflow", "run", "hang"],
        cwd=lab.repo.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lab.out / "started", proc)
        _wait_until(lambda: statuses(lab.run_record(_only_run(lab)))["hang"] == "running")
        proc.kill()
        proc.wait(timeout=30)
    finally:
        (lab.out / "go").touch()  # the orphaned step ends
    run_id = _only_run(lab)
    assert lab.run_record(run_id)["status"] == "running"

    deadline = time.monotonic() + 30
    touched: list[dict[str, Any]] = []
    while not touched and time.monotonic() < deadline:
        touched = lab.advance()  # nothing until the lease has expired
        time.sleep(0.2)

    assert [(r["id"], r["status"]) for r in touched] == [(run_id, "aborted")]
    record = lab.run_record(run_id)
    assert (record["status"], statuses(record)) == ("aborted", {"hang": "aborted"})


def _only_run(lab: Lab) -> str:
    (run_id,) = [p.split("/")[1][: -len(".yaml")] for p in lab.state_files("runs")]
    return run_id


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.05)


def _wait_for(path: Path, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert proc.poll() is None, "the runner ended before the step started"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


# --- names, listings and concurrency -----------------------------------------------------------


SHOP = {
    "projects/shop/project.yaml": "name: Shop\n",
}
QUICK = """\
    steps:
      - {name: hello, run: "echo hello-$RUNNER_WORKFLOW >> {out}/trace"}
    """


def test_workflow_names_resolve_by_file_name_or_project_and_name(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, {"pay/quick": QUICK, "shop/quick": QUICK}, files=SHOP)

    ambiguous = lab.runner("workflow", "run", "quick")
    unknown = lab.runner("workflow", "run", "nope")
    qualified = lab.runner("workflow", "run", "shop/quick")

    assert ambiguous.exit_code == 3
    assert ambiguous.stderr.strip() == (
        "error: workflow 'quick' is ambiguous: write one of pay/quick, shop/quick"
    )
    assert unknown.exit_code == 3
    assert unknown.stderr.strip() == (
        "error: unknown workflow 'nope' (workflows: pay/quick, shop/quick)"
    )
    assert qualified.exit_code == 0, qualified.stderr
    assert lab.trace() == ["hello-shop/quick"]
    assert len(lab.state_files("runs")) == 1


def test_a_second_run_of_the_same_workflow_is_blocked_while_one_waits(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, {"release": RELEASE})
    first = lab.start("release")["id"]

    second = lab.runner("workflow", "run", "release")

    assert second.exit_code == 4
    assert second.stderr.startswith(f"error: run {first} of pay/release is waiting (started ")
    assert f"`runner cancel {first}`" in second.stderr
    assert len(lab.state_files("runs")) == 1

    lab.repo.write(
        "runner.yaml",
        "groups: {release-managers: [alice]}\nallow_parallel: {runs_of_same_workflow: true}\n",
    )
    lab.repo.commit("allow parallel runs")
    assert lab.runner("workflow", "run", "release").exit_code == 0
    assert len(lab.state_files("runs")) == 2


def test_runs_list_and_show_print_records_with_id_status_steps_and_decisions(
    tmp_path: Path,
) -> None:
    lab = make_lab(tmp_path, {"release": RELEASE, "quick": QUICK})
    waiting = lab.start("release")["id"]
    done = lab.start("quick")["id"]
    assert lab.runner("approve", waiting, "approve", "--by", "alice").exit_code == 0

    listed = json.loads(lab.runner("runs", "list", "--format", "json").stdout)
    only_waiting = lab.runner("runs", "list", "--filter", "status=waiting", "--format", "json")
    by_workflow = lab.runner("runs", "list", "--filter", "workflow=quick", "--format", "json")
    shown = json.loads(lab.runner("runs", "show", waiting[:22], "--format", "json").stdout)
    text = lab.runner("runs", "list")

    assert [(r["id"], r["status"], r["workflow"]) for r in listed] == [
        (waiting, "waiting", "pay/release"),
        (done, "success", "pay/quick"),
    ]
    assert listed[0]["waiting"] == ["approve"]
    assert [r["id"] for r in json.loads(only_waiting.stdout)] == [waiting]
    assert [r["id"] for r in json.loads(by_workflow.stdout)] == [done]
    assert (shown["id"], shown["status"]) == (waiting, "waiting")
    assert step_of(shown, "approve")["decision"]["user"] == "alice"
    assert len(step_of(shown, "dev")["changes"]) == 1
    assert text.stdout.splitlines()[0].split() == [
        "ID",
        "STATUS",
        "WORKFLOW",
        "TRIGGER",
        "WAITING",
        "AT",
        "BY",
    ]
    assert text.stdout.splitlines()[1].split()[:5] == [
        waiting,
        "waiting",
        "pay/release",
        "manual",
        "approve",
    ]
    assert lab.runner("runs", "show", "nope").exit_code == 3


def test_validate_names_a_change_step_whose_action_no_target_asset_has(tmp_path: Path) -> None:
    flow = """\
        steps:
          - {name: dev, change: {target: /projects/pay/environments/dev, action: deploi}}
          - {name: db, change: {target: /projects/pay/environments/prod/assets/db, action: nope}}
        """
    lab = make_lab(tmp_path, {"typo": flow})

    validated = lab.runner("validate")
    run = lab.runner("workflow", "run", "typo")

    assert validated.exit_code == 3
    assert validated.stderr.splitlines() == [
        "projects/pay/workflows/typo.yaml:2: step dev: no asset under "
        "/projects/pay/environments/dev has an action 'deploi' (actions there: break, deploy)",
        "projects/pay/workflows/typo.yaml:3: step db: /projects/pay/environments/prod/assets/db "
        "has no action 'nope' (actions: break, deploy)",
        "2 problems (working tree)",
    ]
    assert run.exit_code == 3
    assert lab.state_files("runs") == []
