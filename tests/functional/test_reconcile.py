"""``runner reconcile`` end to end, and approvals of changes held by requires_approval_from.

Real repositories and real steps: each step appends a line to a file under ``out/``, so the
tests count what ran, not what was recorded."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.opsrepo import MINIMAL, OpsRepoBuilder, Result

DEV = "/projects/pay/environments/dev/assets/api"
PROD = "/projects/pay/environments/prod/assets/api"

TEMPLATE = """\
    name: Web service
    properties:
      replicas: 2
      image: {repository: acme/web, tag: "1.0.0"}
    on_change: deploy
    check: drift-check
    actions:
      deploy:
        steps:
          - name: roll
            run: >-
              echo "${{ node.path }} ${{ properties.image.tag }}" >> ${{ properties.out }}/ran &&
              mkdir -p ${{ properties.out }}/${{ node.path }} &&
              echo "${{ properties.image.tag }}" > ${{ properties.out }}/${{ node.path }}/tag
      drift-check:
        steps:
          - name: compare
            run: >-
              test "$(cat ${{ properties.out }}/${{ node.path }}/tag 2>/dev/null)" =
              "${{ properties.image.tag }}" || { echo drift; exit 2; }
    """


def lab_repo(tmp_path: Path, **extra: str) -> tuple[OpsRepoBuilder, Path]:
    out = tmp_path / "out"
    out.mkdir()
    files = {k: v for k, v in MINIMAL.items() if not k.endswith("prod/assets/db.yaml")}
    files["properties.yaml"] = f"org: acme\nout: {out}\n"
    files["templates/web/template.yaml"] = TEMPLATE
    files["projects/pay/environments/prod/assets/api.yaml"] = (
        "template: web\nproperties:\n  image: {tag: '1.0.9'}\n"
    )
    files["projects/pay/environments/prod/environment.yaml"] = (
        "name: Production\ntype: production\ndepends_on: [dev]\nproperties: {replicas: 4}\n"
        "settings:\n  requires_approval_from: [release-managers]\n"
    )
    files.update(extra)
    repo = OpsRepoBuilder(tmp_path / "ops", files)
    repo.commit("ops repo")
    return repo, out


def ran(out: Path) -> list[str]:
    path = out / "ran"
    return path.read_text().splitlines() if path.exists() else []


def change_id(result: Result, node: str) -> str:
    found = re.search(rf"change (\S+) on {re.escape(node)} waits for approval", result.stdout)
    assert found, result.stdout
    return found.group(1)


def state_files(repo: OpsRepoBuilder, prefix: str) -> list[str]:
    listing = repo.git("ls-tree", "-r", "--name-only", "runner-state", "--", prefix)
    return listing.splitlines() if listing else []


def state_yaml(repo: OpsRepoBuilder, path: str) -> str:
    return repo.git("show", f"runner-state:{path}")


def test_a_gated_node_waits_under_apply_and_runs_once_approved_and_reconciled(
    tmp_path: Path,
) -> None:
    repo, out = lab_repo(tmp_path)
    first = repo.runner("apply")
    assert first.exit_code == 0, first.stderr
    assert ran(out) == [f"{DEV} 1.1.0"]  # prod did not run
    waiting = change_id(first, PROD)
    assert "waits for approval from release-managers" in first.stdout

    again = repo.runner("apply")  # a second push: the same waiting change, not another
    assert again.exit_code == 0, again.stderr
    assert change_id(again, PROD) == waiting
    prod_records = [
        p for p in state_files(repo, "changes") if f"node: {PROD}" in state_yaml(repo, p)
    ]
    assert len(prod_records) == 1

    outsider = repo.runner("approve", waiting, "--by", "mallory")
    assert outsider.exit_code == 4, outsider.stdout + outsider.stderr
    assert "mallory" in outsider.stderr
    assert f"approvals/{waiting}.yaml" not in state_files(repo, "approvals")

    approved = repo.runner("approve", waiting, "--by", "alice", "--message", "go")
    assert approved.exit_code == 0, approved.stderr
    assert ran(out) == [f"{DEV} 1.1.0"]  # approving records; it does not run anything

    done = repo.runner("reconcile", "--no-drift")
    assert done.exit_code == 0, done.stdout + done.stderr
    assert ran(out) == [f"{DEV} 1.1.0", f"{PROD} 1.0.9"]
    record = json.loads(repo.runner("changes", "show", waiting, "--format", "json").stdout)
    assert record["status"] == "success"
    assert record["approval"]["user"] == "alice"
    head = repo.git("rev-parse", "HEAD")
    assert f"commit: {head}" in state_yaml(repo, "applied.yaml")
    assert state_files(repo, "waiting") == []

    quiet = repo.runner("reconcile", "--no-drift")
    assert quiet.exit_code == 0
    assert len(ran(out)) == 2


def test_new_inputs_supersede_a_waiting_change_and_its_approval_does_not_carry_over(
    tmp_path: Path,
) -> None:
    repo, out = lab_repo(tmp_path)
    old = change_id(repo.runner("apply"), PROD)
    repo.write(
        "projects/pay/environments/prod/assets/api.yaml",
        "template: web\nproperties:\n  image: {tag: '2.0.0'}\n",
    )
    repo.commit("prod 2.0.0")
    second = repo.runner("apply")
    new = change_id(second, PROD)
    assert new != old
    shown = json.loads(repo.runner("changes", "show", old, "--format", "json").stdout)
    assert shown["status"] == "cancelled"
    assert any("superseded" in r for r in shown["reasons"])
    assert repo.runner("approve", old, "--by", "alice").exit_code == 3  # no longer waiting
    assert repo.runner("approve", new, "--by", "alice").exit_code == 0
    assert repo.runner("apply").exit_code == 0
    assert ran(out)[-1] == f"{PROD} 2.0.0"


def test_a_node_that_runs_after_a_waiting_node_is_held_back(tmp_path: Path) -> None:
    dns = "/projects/pay/assets/dns"
    repo, out = lab_repo(
        tmp_path, **{"projects/pay/assets/dns.yaml": f"template: web\ndepends_on: [{PROD}]\n"}
    )
    result = repo.runner("apply")
    assert result.exit_code == 0, result.stderr
    assert ran(out) == [f"{DEV} 1.1.0"]
    assert f"held      {dns}  runs after {PROD}, which waits for approval" in result.stdout
    assert "applied.yaml" not in state_files(repo, "applied.yaml")  # not everything ran
    assert repo.runner("approve", change_id(result, PROD), "--by", "alice").exit_code == 0
    assert repo.runner("apply").exit_code == 0
    assert [line.split()[0] for line in ran(out)] == [DEV, PROD, dns]


def test_a_paused_repository_blocks_apply_run_and_reconcile_with_the_reason(
    tmp_path: Path,
) -> None:
    repo, out = lab_repo(tmp_path)
    repo.write("runner.yaml", MINIMAL["runner.yaml"] + 'paused: {reason: "Change freeze"}\n')
    repo.git("add", "-A")
    repo.git(
        "-c",
        "user.name=Pat Lead",
        "-c",
        "user.email=pat@example.com",
        "commit",
        "-q",
        "-m",
        "freeze",
    )
    for args in (("apply",), ("run", DEV, "deploy"), ("reconcile",)):
        blocked = repo.runner(*args)
        assert blocked.exit_code == 4, (args, blocked.stdout, blocked.stderr)
        assert "Change freeze" in blocked.stderr
        assert "Pat Lead" in blocked.stderr
    assert ran(out) == []


def test_an_emergency_pause_on_the_state_branch_blocks_reconcile_until_resume_all(
    tmp_path: Path,
) -> None:
    repo, out = lab_repo(tmp_path)
    assert repo.runner("pause", "--reason", "incident 42", "--by", "bob").exit_code == 0
    blocked = repo.runner("reconcile")
    assert blocked.exit_code == 4
    assert "incident 42" in blocked.stderr
    assert "bob" in blocked.stderr
    assert ran(out) == []
    assert repo.runner("resume-all", "--by", "bob").exit_code == 0
    assert repo.runner("reconcile", "--no-drift").exit_code == 0
    assert ran(out) == [f"{DEV} 1.1.0"]


SCHEDULED = """\
    - name: nightly-deploy
      cron: "0 2 * * *"
      timezone: UTC
      target: /projects/pay/environments/dev/assets/api
      action: deploy
      new_commits_only: true
    """


def test_concurrent_reconciles_fire_a_due_schedule_exactly_once(tmp_path: Path) -> None:
    repo, out = lab_repo(tmp_path, **{"schedules.yaml": SCHEDULED})
    assert repo.runner("apply").exit_code == 0
    before = len(ran(out))
    tomorrow = _next_day_at(repo, "02:00:30")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "runner", "reconcile", "--no-drift", "--now", tomorrow],
            cwd=repo.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    assert len(ran(out)) == before + 1
    state = state_yaml(repo, "schedules/nightly-deploy.yaml")
    assert "runs: 1" in state


def test_new_commits_only_skips_a_schedule_until_the_repo_moves(tmp_path: Path) -> None:
    repo, out = lab_repo(tmp_path, **{"schedules.yaml": SCHEDULED})
    assert repo.runner("apply").exit_code == 0
    day1 = _next_day_at(repo, "02:00:30")
    day2 = _next_day_at(repo, "02:00:30", days=2)
    day3 = _next_day_at(repo, "02:00:30", days=3)
    assert repo.runner("reconcile", "--no-drift", "--now", day1).exit_code == 0
    fired = len(ran(out))
    skipped = repo.runner("reconcile", "--no-drift", "--now", day2)
    assert skipped.exit_code == 0
    assert len(ran(out)) == fired
    assert "new_commits_only" in skipped.stdout
    repo.write("README.md", "notes\n")
    repo.commit("unrelated commit")
    assert repo.runner("reconcile", "--no-drift", "--now", day3).exit_code == 0
    assert len(ran(out)) == fired + 1


def test_drift_is_recorded_and_self_heal_puts_it_right(tmp_path: Path) -> None:
    repo, out = lab_repo(
        tmp_path,
        **{
            "projects/pay/environments/dev/environment.yaml": (
                "name: Development\nproperties: {replicas: 1}\nsettings: {self_heal: true}\n"
            )
        },
    )
    assert repo.runner("apply").exit_code == 0
    in_sync = repo.runner("reconcile")
    assert in_sync.exit_code == 0, in_sync.stdout + in_sync.stderr
    assert re.search(rf"drift\s+in sync\s+{re.escape(DEV)}", in_sync.stdout), in_sync.stdout
    (out / DEV.strip("/") / "tag").write_text("hand-edited\n")
    healed = repo.runner("reconcile")
    assert healed.exit_code == 0, healed.stdout + healed.stderr
    assert re.search(rf"drift\s+drift\s+{re.escape(DEV)}", healed.stdout), healed.stdout
    assert (out / DEV.strip("/") / "tag").read_text() == "1.1.0\n"
    events = json.loads(repo.runner("events", "list", "--format", "json").stdout)
    assert [e["node"] for e in events if e["kind"] == "drift"] == [DEV]


def _next_day_at(repo: OpsRepoBuilder, clock: str, days: int = 1) -> str:
    """An ISO time ``days`` after the last commit's date, at ``clock`` UTC."""
    stamp = int(repo.git("log", "-1", "--format=%ct"))
    day = datetime.fromtimestamp(stamp, UTC).date() + timedelta(days=days)
    return f"{day.isoformat()}T{clock}Z"


@pytest.fixture(autouse=True)
def _identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_ACTOR", raising=False)


RELEASE = """\
    name: Release
    steps:
      - {name: dev, change: {target: /projects/pay/environments/dev, action: deploy}}
      - {name: approve-prod, wait: {approval_from: [release-managers]}}
      - {name: prod, change: {target: /projects/pay/environments/prod, action: deploy}}
    """


def test_a_release_run_is_approved_once_and_settles_the_waiting_apply_change(
    tmp_path: Path,
) -> None:
    repo, out = lab_repo(tmp_path, **{"projects/pay/workflows/release.yaml": RELEASE})
    held = change_id(repo.runner("apply"), PROD)  # the push: prod waits for a release manager
    started = repo.runner("workflow", "run", "release", "--format", "json")
    assert started.exit_code == 0, started.stderr
    run = json.loads(started.stdout)["id"]
    assert repo.runner("approve", run, "approve-prod", "--by", "alice").exit_code == 0

    carried = repo.runner("reconcile", "--no-drift")
    assert carried.exit_code == 0, carried.stdout + carried.stderr
    shown = json.loads(repo.runner("runs", "show", run, "--format", "json").stdout)
    assert shown["status"] == "success"
    assert ran(out)[-1] == f"{PROD} 1.0.9"
    prod_change = json.loads(
        repo.runner("changes", "show", shown["steps"][2]["changes"][0], "--format", "json").stdout
    )
    assert prod_change["approval"]["user"] == "alice"  # the wait step's approval, asked once
    settled = json.loads(repo.runner("changes", "show", held, "--format", "json").stdout)
    assert settled["status"] == "cancelled"
    assert any("not needed" in r for r in settled["reasons"])

    count = len(ran(out))
    again = repo.runner("apply")
    assert again.exit_code == 0
    assert "waits for approval" not in again.stdout
    assert len(ran(out)) == count


def test_resume_or_retry_cannot_run_a_change_that_was_not_approved(tmp_path: Path) -> None:
    repo, out = lab_repo(tmp_path)
    waiting = change_id(repo.runner("apply"), PROD)
    resumed = repo.runner("resume", waiting)
    assert resumed.exit_code == 4, resumed.stdout + resumed.stderr
    assert "was never approved" in resumed.stderr
    assert repo.runner("reject", waiting, "--by", "alice").exit_code == 0
    retried = repo.runner("retry", waiting)
    assert retried.exit_code == 4, retried.stdout + retried.stderr
    assert "was rejected" in retried.stderr
    assert ran(out) == [f"{DEV} 1.1.0"]


def test_a_pause_committed_after_a_change_stops_its_retry(tmp_path: Path) -> None:
    repo, out = lab_repo(
        tmp_path,
        **{
            "projects/pay/environments/dev/assets/api.yaml": "template: web\n"
            "properties:\n  image: {tag: '1.1.0'}\n  demo_fail: true\n"
        },
    )
    failing = TEMPLATE.replace(
        "          - name: roll\n",
        "          - name: gate\n"
        "            run: test ${{ properties.demo_fail }} != true\n"
        "          - name: roll\n",
    )
    repo.write("templates/web/template.yaml", failing)
    repo.commit("a failing deploy")
    failed = repo.runner("run", DEV, "deploy")
    assert failed.exit_code == 1, failed.stdout + failed.stderr
    failed_id = re.search(r"change (\S+)", failed.stdout)
    assert failed_id
    repo.write("runner.yaml", MINIMAL["runner.yaml"] + 'paused: {reason: "freeze"}\n')
    repo.commit("freeze")
    retried = repo.runner("retry", failed_id.group(1))
    assert retried.exit_code == 4, retried.stdout + retried.stderr
    assert "freeze" in retried.stderr
    assert ran(out) == []  # the gate step failed before anything was rolled out


def test_a_fire_still_running_elsewhere_holds_back_the_next_one(tmp_path: Path) -> None:
    hourly = SCHEDULED.replace('"0 2 * * *"', '"0 * * * *"').replace(
        "new_commits_only: true", "new_commits_only: false"
    )
    slow = TEMPLATE.replace(
        "      drift-check:\n",
        "      slow:\n"
        "        steps:\n"
        "          - name: hold\n"
        "            run: >-\n"
        "              echo slow >> ${{ properties.out }}/ran;\n"
        "              while [ ! -f ${{ properties.out }}/go ]; do sleep 0.05; done\n"
        "      drift-check:\n",
    )
    repo, out = lab_repo(
        tmp_path,
        **{"schedules.yaml": hourly.replace("action: deploy", "action: slow")},
        **{"templates/web/template.yaml": slow},
    )
    first_hour = _next_day_at(repo, "02:00:30")
    second_hour = _next_day_at(repo, "03:00:30")
    command = [sys.executable, "-m", "runner", "reconcile", "--no-drift", "--now"]
    first = subprocess.Popen(
        [*command, first_hour], cwd=repo.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "slow" not in ran(out) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # until the slow step has started
        assert "slow" in ran(out)
        second = repo.runner("reconcile", "--no-drift", "--now", second_hour)
        assert second.exit_code == 0, second.stdout + second.stderr
        assert "still running" in second.stdout
    finally:
        (out / "go").touch()
        first.communicate(timeout=120)
    assert ran(out).count("slow") == 1


def test_approve_with_a_filter_decides_every_matching_waiting_change(tmp_path: Path) -> None:
    worker = "/projects/pay/environments/prod/assets/worker"
    repo, out = lab_repo(
        tmp_path, **{"projects/pay/environments/prod/assets/worker.yaml": "template: web\n"}
    )
    first = repo.runner("apply")
    held = {change_id(first, PROD), change_id(first, worker)}
    prod = "node=/projects/pay/environments/prod/%"
    outsider = repo.runner("approve", "--filter", prod, "--by", "mallory")
    assert outsider.exit_code == 4
    assert repo.runner("approve", "--filter", "node=/projects/shop/%", "--by", "alice").stdout == (
        "No waiting change matches.\n"
    )
    both = repo.runner("approve", "--filter", prod, "--by", "alice")
    assert both.exit_code == 0, both.stderr
    assert {line.split()[2] for line in both.stdout.splitlines()} == held
    assert repo.runner("approve", "some-id", "--filter", prod).exit_code == 3
    assert repo.runner("reconcile", "--no-drift").exit_code == 0
    assert sorted(line.split()[0] for line in ran(out)) == [DEV, PROD, worker]


def test_drift_every_spaces_the_checks_of_a_node(tmp_path: Path) -> None:
    repo, _ = lab_repo(tmp_path, **{"runner.yaml": MINIMAL["runner.yaml"] + "drift: {every: 1h}\n"})
    assert repo.runner("apply").exit_code == 0
    checks = []
    for clock in ("10:00:00", "10:30:00", "11:00:00"):
        done = repo.runner("reconcile", "--now", _next_day_at(repo, clock))
        assert done.exit_code == 0, done.stdout + done.stderr
        checks.append(re.findall(rf"^drift\s+(.+?)\s+{re.escape(DEV)}", done.stdout, re.M))
    assert checks == [["in sync"], [], ["in sync"]]
    note = state_yaml(repo, "drift/projects/pay/environments/dev/assets/api.yaml")
    assert "result: success" in note
    assert "T11:00:00" in note


def test_the_check_action_needs_no_approval_however_it_is_started(tmp_path: Path) -> None:
    repo, out = lab_repo(tmp_path)
    deploy = repo.runner("run", PROD, "deploy")
    assert deploy.exit_code == 0, deploy.stderr
    assert "waits for approval" in deploy.stdout
    check = repo.runner("run", PROD, "drift-check")  # nothing deployed yet: it finds drift
    assert check.exit_code == 1, check.stdout + check.stderr
    assert "waits for approval" not in check.stdout
    assert re.search(rf"^error\s+{re.escape(PROD)}\s+drift-check", check.stdout, re.M)
    assert ran(out) == []


def test_a_scheduled_run_still_going_elsewhere_holds_back_the_next_fire(tmp_path: Path) -> None:
    schedule = '- name: hourly-sweep\n  cron: "0 * * * *"\n  timezone: UTC\n  workflow: sweep\n'
    sweep = (
        "name: Sweep\n"
        "steps:\n"
        "  - name: hold\n"
        f"    run: echo sweep >> {tmp_path}/out/ran; "
        f"while [ ! -f {tmp_path}/out/go ]; do sleep 0.05; done\n"
    )
    repo, out = lab_repo(
        tmp_path,
        **{"schedules.yaml": schedule, "projects/pay/workflows/sweep.yaml": sweep},
    )
    command = [sys.executable, "-m", "runner", "reconcile", "--no-drift", "--now"]
    first = subprocess.Popen(
        [*command, _next_day_at(repo, "02:00:30")],
        cwd=repo.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while "sweep" not in ran(out) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # until the run's step has started
        assert "sweep" in ran(out)
        second = repo.runner("reconcile", "--no-drift", "--now", _next_day_at(repo, "03:00:30"))
        assert second.exit_code == 0, second.stdout + second.stderr
        assert "still running" in second.stdout
    finally:
        (out / "go").touch()
        first.communicate(timeout=120)
    assert ran(out).count("sweep") == 1
