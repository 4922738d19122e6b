"""`runner approve|reject|continue` and `runner cancel` on runs and on changes.

A decision is one state commit: the decision file, the record it concerns and an audit event.
Only a member of the groups named by the wait step (or by `requires_approval_from`) may decide;
an outsider is refused with exit 4 and nothing is recorded. Real repos, the real CLI; runs are
carried on by `advance_runs` (what `runner reconcile` calls) in a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.functional.test_workflows import (
    ALICE,
    Lab,
    _wait_for,
    make_lab,
    statuses,
    step_of,
)

GATES = """\
    steps:
      - {name: dev, change: {target: /projects/pay/environments/dev/assets/api, action: deploy}}
      - {name: gate, wait: {approval_from: [release-managers]}}
      - {name: second, wait: {}}
    """

# prod is held by requires_approval_from: its changes wait for `runner approve CHANGE`.
GUARDED_PROD = {
    "projects/pay/environments/prod/environment.yaml": """\
        name: Production
        depends_on: [dev]
        settings: {requires_approval_from: [release-managers]}
        """,
}
TO_PROD = """\
    steps:
      - {name: prod, change: {target: /projects/pay/environments/prod/assets/db, action: deploy}}
      - {name: notify, if: always(), run: "echo notify >> {out}/trace"}
    """


def events(lab: Lab) -> list[dict[str, Any]]:
    found = [yaml.safe_load(lab.state(p) or "") for p in lab.state_files("events")]
    return sorted(found, key=lambda e: str(e["id"]))


def waiting_changes(lab: Lab) -> list[dict[str, Any]]:
    found = [yaml.safe_load(lab.state(p) or "") for p in lab.state_files("changes")]
    return sorted((c for c in found if c["status"] == "waiting"), key=lambda c: str(c["id"]))


# --- wait steps --------------------------------------------------------------------------------


def test_a_wait_without_groups_is_continued_by_anyone(tmp_path: Path) -> None:
    flow = """\
        steps:
          - {name: hold, wait: {}}
          - {name: after, run: "echo after >> {out}/trace"}
        """
    lab = make_lab(tmp_path, {"hold": flow})
    started = lab.runner("workflow", "run", "hold")
    run_id = started.stdout.splitlines()[-1].split()[1]
    assert started.stdout.splitlines()[-1] == (
        f"run {run_id} waits at hold: runner continue {run_id} hold"
    )

    continued = lab.runner("continue", run_id, "hold", "--by", "mallory")

    assert continued.exit_code == 0, continued.stderr
    assert continued.stdout.startswith(f"continued step hold of run {run_id} as mallory;")
    (carried,) = lab.advance()
    assert carried["status"] == "success"
    assert step_of(carried, "hold")["decision"]["decision"] == "continue"
    assert lab.trace() == ["after"]
    assert [(e["kind"], e["by"]) for e in events(lab)] == [("continue", "mallory")]


def test_only_a_waiting_wait_step_can_be_decided(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, {"gates": GATES})
    run_id = lab.start("gates")["id"]
    before = lab.tip()

    no_step = lab.runner("approve", run_id, "--by", "alice")
    change_step = lab.runner("approve", run_id, "dev", "--by", "alice")
    pending = lab.runner("continue", run_id, "second")
    unknown_step = lab.runner("approve", run_id, "nope", "--by", "alice")
    unknown_id = lab.runner("cancel", "19990101")

    assert [r.exit_code for r in (no_step, change_step, pending, unknown_step, unknown_id)] == [
        3
    ] * 5
    assert no_step.stderr.strip() == (
        f"error: {run_id} is a workflow run: name its wait step (waiting: gate)"
    )
    assert change_step.stderr.strip() == f"error: step dev of run {run_id} is a change step"
    assert pending.stderr.strip() == f"error: step second of run {run_id} is pending, not waiting"
    assert unknown_step.stderr.strip() == (
        f"error: run {run_id} has no step 'nope' (wait steps: gate, second)"
    )
    assert unknown_id.stderr.strip() == "error: no run or change '19990101' on the state branch"
    assert lab.tip() == before


def test_the_git_identity_decides_when_no_user_is_given(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, {"gates": GATES})
    lab.repo.git("config", "user.name", "Alice Liddell")
    lab.repo.git("config", "user.email", "alice@example.com")
    run_id = lab.start("gates")["id"]

    approved = lab.runner("approve", run_id, "gate", env={"GITHUB_ACTOR": ""})

    assert approved.exit_code == 0, approved.stderr
    decision = yaml.safe_load(lab.state(f"approvals/{run_id}/gate.yaml") or "")
    assert decision["user"] == "Alice Liddell <alice@example.com>"  # listed as alice


# --- changes held by requires_approval_from ----------------------------------------------------


def test_a_held_change_is_approved_by_a_member_only_and_then_runs(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, {}, files=GUARDED_PROD)
    held = lab.runner("run", "/projects/pay/environments/prod/assets/db", "deploy")
    assert held.exit_code == 0, held.stderr
    (change,) = waiting_changes(lab)
    assert change["waiting_for"] == ["release-managers"]
    before = lab.tip()

    outsider = lab.runner("approve", change["id"][:20], "--by", "bob")
    continued = lab.runner("continue", change["id"], "--by", "alice")
    assert (outsider.exit_code, continued.exit_code) == (4, 3)
    assert outsider.stderr.startswith("error: bob is not in release-managers; only alice may ")
    assert "`runner continue` is for wait steps of a workflow run" in continued.stderr
    assert lab.tip() == before

    approved = lab.runner("approve", change["id"][:20], "-m", "ship it", env=ALICE)

    assert approved.exit_code == 0, approved.stderr
    assert approved.stdout.startswith(
        f"approved change {change['id']} on /projects/pay/environments/prod/assets/db as alice "
        '("ship it");'
    )
    decision = yaml.safe_load(lab.state(f"approvals/{change['id']}.yaml") or "")
    assert {k: decision[k] for k in ("decision", "user", "message")} == {
        "decision": "approve",
        "user": "alice",
        "message": "ship it",
    }
    assert lab.change(change["id"])["approval"] == decision
    assert lab.change(change["id"])["status"] == "waiting"  # deciding runs nothing
    (event,) = events(lab)
    assert (event["kind"], event["by"], event["node"], event["change"]) == (
        "approve",
        "alice",
        "/projects/pay/environments/prod/assets/db",
        change["id"],
    )
    again = lab.runner("approve", change["id"], "--by", "alice")
    assert again.exit_code == 3
    assert "was already approved by alice" in again.stderr

    ran = lab.runner("run", "/projects/pay/environments/prod/assets/db", "deploy")
    assert ran.exit_code == 0, ran.stderr
    assert lab.change(change["id"])["status"] == "success"
    assert lab.trace() == ["deploy prod/assets/db 1.0.0"]


def test_a_rejected_change_is_cancelled(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, {}, files=GUARDED_PROD)
    assert lab.runner("run", "/projects/pay/environments/prod/assets/db", "deploy").exit_code == 0
    (change,) = waiting_changes(lab)

    rejected = lab.runner("reject", change["id"], "--by", "alice", "-m", "wrong tag")

    assert rejected.exit_code == 0, rejected.stderr
    assert rejected.stdout.strip().endswith("; it stays cancelled")
    record = lab.change(change["id"])
    assert record["status"] == "cancelled"
    assert record["approval"]["decision"] == "reject"
    assert [(e["kind"], e["change"]) for e in events(lab)] == [("reject", change["id"])]
    assert lab.runner("approve", change["id"], "--by", "alice").exit_code == 3


def test_a_run_waits_for_its_held_change_and_goes_on_once_it_is_approved(
    tmp_path: Path,
) -> None:
    lab = make_lab(tmp_path, {"to-prod": TO_PROD}, files=GUARDED_PROD)

    started = lab.runner("workflow", "run", "to-prod")

    assert started.exit_code == 0, started.stderr
    run_id = started.stdout.splitlines()[-2].split()[1]
    (change,) = waiting_changes(lab)
    assert (change["run"], change["run_step"]) == (run_id, "prod")
    assert started.stdout.splitlines()[-1] == (
        f"run {run_id} waits at prod for approval from release-managers: "
        f"runner approve {change['id']} (/projects/pay/environments/prod/assets/db)"
    )
    record = lab.run_record(run_id)
    assert statuses(record) == {"prod": "waiting", "notify": "pending"}
    assert step_of(record, "prod")["changes"] == [change["id"]]
    assert lab.advance() == []  # nothing decided yet

    assert lab.runner("approve", change["id"], "--by", "alice").exit_code == 0
    (carried,) = lab.advance()

    assert carried["status"] == "success"
    assert statuses(carried) == {"prod": "success", "notify": "success"}
    assert step_of(carried, "prod")["changes"] == [change["id"]]
    assert lab.change(change["id"])["status"] == "success"
    assert lab.trace() == ["deploy prod/assets/db 1.0.0", "notify"]


def test_rejecting_a_runs_held_change_ends_the_run_in_error(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, {"to-prod": TO_PROD}, files=GUARDED_PROD)
    run_id = lab.start("to-prod")["id"]
    (change,) = waiting_changes(lab)

    assert lab.runner("reject", change["id"], "--by", "alice", "-m", "no").exit_code == 0
    (carried,) = lab.advance()

    assert carried["status"] == "error"
    assert statuses(carried) == {"prod": "error", "notify": "success"}
    assert step_of(carried, "prod")["error"] == (
        f"change {change['id']} of /projects/pay/environments/prod/assets/db rejected by alice: no"
    )
    assert lab.trace() == ["notify"]
    assert lab.run_record(run_id)["status"] == "error"


# --- cancel ------------------------------------------------------------------------------------


def test_cancelling_a_waiting_run_cancels_its_waiting_steps_and_changes(tmp_path: Path) -> None:
    flow = """\
        run_as: parallel
        steps:
          - name: prod
            change: {target: /projects/pay/environments/prod/assets/db, action: deploy}
          - {name: gate, wait: {approval_from: [release-managers]}}
          - {name: after, needs: [gate], run: "echo after >> {out}/trace"}
        """
    lab = make_lab(tmp_path, {"flow": flow}, files=GUARDED_PROD)
    run_id = lab.start("flow")["id"]
    (change,) = waiting_changes(lab)

    cancelled = lab.runner("cancel", run_id[:22], "--by", "carol", "-m", "freeze")

    assert cancelled.exit_code == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f'cancelled run {run_id} as carol ("freeze")'
    record = lab.run_record(run_id)
    assert record["status"] == "cancelled"
    assert statuses(record) == {"prod": "cancelled", "gate": "cancelled", "after": "cancelled"}
    assert step_of(record, "gate")["message"] == "cancelled by carol"
    assert lab.change(change["id"])["status"] == "cancelled"
    (event,) = events(lab)
    assert (event["kind"], event["by"], event["run"]) == ("cancel", "carol", run_id)
    assert event["message"] == f"cancelled run {run_id} (pay/flow): freeze"

    again = lab.runner("cancel", run_id)
    late = lab.runner("approve", run_id, "gate", "--by", "alice")
    assert (again.exit_code, late.exit_code) == (3, 3)
    assert again.stderr.strip() == f"error: run {run_id} already ended: cancelled"
    assert lab.advance() == []
    assert lab.trace() == []


def test_cancelling_a_waiting_change(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, {}, files=GUARDED_PROD)
    assert lab.runner("run", "/projects/pay/environments/prod/assets/db", "deploy").exit_code == 0
    (change,) = waiting_changes(lab)

    cancelled = lab.runner("cancel", change["id"], "--by", "alice")

    assert cancelled.exit_code == 0, cancelled.stderr
    assert cancelled.stdout.strip() == (
        f"cancelled change {change['id']} on /projects/pay/environments/prod/assets/db as alice"
    )
    assert lab.change(change["id"])["status"] == "cancelled"
    assert [(e["kind"], e["change"]) for e in events(lab)] == [("cancel", change["id"])]
    assert lab.runner("cancel", change["id"]).exit_code == 3


def test_a_running_run_cannot_be_cancelled_from_outside(tmp_path: Path) -> None:
    flow = """\
        steps:
          - {name: hang, run: "touch {out}/started; while [ ! -f {out}/go ]; do sleep 0.05; done"}
        """
    lab = make_lab(tmp_path, {"hang": flow})
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "workflow", "run", "hang"],
        cwd=lab.repo.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lab.out / "started", proc)
        (path,) = lab.state_files("runs")
        run_id = path.split("/")[1][: -len(".yaml")]
        refused = lab.runner("cancel", run_id)
    finally:
        (lab.out / "go").touch()
        proc.communicate(timeout=60)

    assert refused.exit_code == 4
    assert refused.stderr.startswith(f"error: run {run_id} is being run by ")
    assert "interrupt that runner (Ctrl-C or SIGTERM)" in refused.stderr
    assert proc.returncode == 0
    assert lab.run_record(run_id)["status"] == "success"


# --- a shared remote ---------------------------------------------------------------------------


def test_decisions_sync_from_and_push_to_the_remote(tmp_path: Path) -> None:
    settings = "groups: {release-managers: [alice]}\nstate: {remote: origin}\n"
    lab = make_lab(tmp_path, {"gates": GATES}, settings=settings)
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    lab.repo.git("remote", "add", "origin", str(remote))
    lab.repo.git("push", "-q", "origin", "main")
    run_id = lab.start("gates")["id"]
    assert _remote_file(remote, f"runs/{run_id}.yaml") is not None  # pushed at the end
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", "-b", "main", str(remote), str(other)], check=True)

    approved = subprocess.run(
        [sys.executable, "-m", "runner", "approve", run_id, "gate", "--by", "alice"],
        cwd=other,
        capture_output=True,
        text=True,
    )

    assert approved.returncode == 0, approved.stderr
    assert _remote_file(remote, f"approvals/{run_id}/gate.yaml") is not None
    (carried,) = lab.advance()  # syncs the decision in from the remote
    assert statuses(carried)["gate"] == "success"


def _remote_file(remote: Path, path: str) -> str | None:
    done = subprocess.run(
        ["git", "show", f"runner-state:{path}"], cwd=remote, capture_output=True, text=True
    )
    return done.stdout if done.returncode == 0 else None
