"""Pausing (SPEC 2.6): `paused:` in runner.yaml, `runner pause` / `runner resume-all` on the state
branch, and the audit events they leave (`runner events list`). Real repos, real CLI."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.gitrepo import GitRepo
from runner.loading.snapshot import load
from runner.loading.source import locate
from runner.operations.pause import Paused, ensure_not_paused
from runner.state.leases import Lease, lease_to_yaml
from runner.state.store import StateStore, StateView
from tests.support.opsrepo import MINIMAL, OpsRepoBuilder, Result

DEV_API = "/projects/pay/environments/dev/assets/api"
PROD_DB = "/projects/pay/environments/prod/assets/db"
FREEZE = "Change freeze until 2 Jan"
RUNNER_YAML = "parallelism: 2\ngroups: {release-managers: [alice]}\n"
PAUSED_LINE = f'paused: {{reason: "{FREEZE}"}}\n'


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, result.stderr
    return result


def _state(repo: OpsRepoBuilder, path: str) -> dict[str, Any] | None:
    done = subprocess.run(
        ["git", "show", f"runner-state:{path}"], cwd=repo.root, capture_output=True, text=True
    )
    return yaml.safe_load(done.stdout) if done.returncode == 0 else None


def _state_tip(repo: OpsRepoBuilder) -> str:
    return repo.git("rev-parse", "runner-state")


def _frozen(tmp_path: Path) -> tuple[OpsRepoBuilder, str]:
    """runner.yaml paused by Alice's commit, then edited (same reason) by someone else."""
    repo = OpsRepoBuilder(tmp_path / "ops")
    repo.commit("initial")
    repo.write("runner.yaml", RUNNER_YAML + PAUSED_LINE)
    repo.git("add", "-A")
    repo.git(
        "-c", "user.name=Alice Admin", "-c", "user.email=alice@example.com",
        "commit", "-q", "-m", "Freeze changes for the holidays",
    )  # fmt: skip
    frozen = repo.git("rev-parse", "HEAD")
    repo.write("runner.yaml", RUNNER_YAML.replace("parallelism: 2", "parallelism: 3") + PAUSED_LINE)
    repo.commit("More parallelism")
    return repo, frozen


def _settings_message(frozen: str) -> str:
    return (
        f"repository paused: {FREEZE} (runner.yaml:3, paused by Alice Admin in {frozen[:12]} "
        '"Freeze changes for the holidays")'
    )


def test_paused_in_runner_yaml_apply_and_run_exit_4_naming_the_reason_and_who(
    tmp_path: Path,
) -> None:
    repo, frozen = _frozen(tmp_path)
    applied = repo.runner("apply")
    assert (applied.exit_code, applied.stdout) == (4, "")
    assert applied.stderr == f"error: {_settings_message(frozen)}\n"
    ran = repo.runner("run", PROD_DB, "deploy")
    assert (ran.exit_code, ran.stderr) == (4, f"error: {_settings_message(frozen)}\n")
    assert repo.git("branch", "--list", "runner-state") == ""  # nothing was recorded

    # Commands that make no change are never paused.
    assert repo.runner("plan").exit_code == 0
    assert repo.runner("history", PROD_DB).exit_code == 0

    # resume-all cannot lift a pause written in runner.yaml, and says so.
    resumed = _ok(repo.runner("resume-all"))
    assert resumed.stdout == (
        "Not paused on the state branch: nothing to lift.\n"
        "runner.yaml pauses the repository as well, until a commit removes its `paused` "
        f"setting: {_settings_message(frozen)}\n"
    )

    repo.write("runner.yaml", RUNNER_YAML)
    repo.commit("Thaw")
    assert _ok(repo.runner("apply")).stdout.count("success") == 3


def test_ensure_not_paused_reads_the_snapshot_and_the_state_branch(tmp_path: Path) -> None:
    repo, frozen = _frozen(tmp_path)
    ops = locate(repo.root, repo.root)
    with pytest.raises(Paused) as raised:
        ensure_not_paused(ops, load(ops, "HEAD"))
    assert str(raised.value) == _settings_message(frozen)
    assert raised.value.exit_code == 4
    # The commit before the freeze is not paused, on either side.
    ensure_not_paused(ops, load(ops, "HEAD~2"))
    _ok(repo.runner("pause", "--reason", "disk full", "--by", "ops-bot"))
    with pytest.raises(Paused, match=r"^repository paused on the state branch: disk full \(by "):
        ensure_not_paused(ops, load(ops, "HEAD~2"))


def test_pause_and_resume_all_on_the_state_branch(tmp_path: Path) -> None:
    repo = OpsRepoBuilder(tmp_path / "ops")
    repo.commit("initial")
    before = repo.git("status", "--porcelain")

    paused = _ok(repo.runner("pause", "--reason", "incident 7", "--by", "alice"))
    record = _state(repo, "paused.yaml")
    assert record is not None
    assert (record["reason"], record["by"]) == ("incident 7", "alice")
    assert datetime.fromisoformat(record["time"]) > datetime.now(UTC) - timedelta(minutes=5)
    assert paused.stdout == (
        f"Paused: incident 7 (by alice at {record['time']})\n"
        "apply, run, reconcile and workflow runs exit 4 until `runner resume-all`.\n"
    )
    assert repo.git("log", "-1", "--format=%s", "runner-state") == "runner: pause: incident 7"
    names = repo.git("show", "--name-only", "--format=", "runner-state").splitlines()
    assert len(names) == 2
    assert names[0].startswith("events/")
    assert names[1] == "paused.yaml"

    blocked = repo.runner("apply")
    assert blocked.exit_code == 4
    assert blocked.stderr == (
        f"error: repository paused on the state branch: incident 7 (by alice at "
        f"{record['time']}; runner resume-all lifts it)\n"
    )
    assert repo.runner("run", DEV_API, "deploy").exit_code == 4

    changed = _ok(repo.runner("pause", "--reason", "incident 8", "--by", "bob"))
    record = _state(repo, "paused.yaml")
    assert record is not None
    assert (record["reason"], record["by"]) == ("incident 8", "bob")
    assert changed.stdout.splitlines()[0] == (
        f"Pause reason changed: incident 8 (by bob at {record['time']}); was: incident 7"
    )
    tip = _state_tip(repo)
    again = _ok(repo.runner("pause", "--reason", "incident 8", "--by", "carol"))
    assert (
        again.stdout.splitlines()[0] == f"Already paused: incident 8 (by bob at {record['time']})"
    )
    assert _state_tip(repo) == tip

    resumed = _ok(repo.runner("resume-all", "--by", "carol"))
    assert resumed.stdout == "Resumed: the pause on the state branch is lifted (was: incident 8)\n"
    assert _state(repo, "paused.yaml") is None
    tip = _state_tip(repo)
    nothing = _ok(repo.runner("resume-all"))
    assert nothing.stdout == "Not paused on the state branch: nothing to lift.\n"
    assert _state_tip(repo) == tip

    assert _ok(repo.runner("apply")).stdout.count("success") == 3
    assert repo.git("status", "--porcelain") == before


def test_a_pause_is_pushed_and_stops_another_clone(tmp_path: Path) -> None:
    remote = tmp_path / "state.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    files = dict(MINIMAL)
    files["runner.yaml"] = RUNNER_YAML + f"state: {{remote: {remote}}}\n"
    first = OpsRepoBuilder(tmp_path / "first", files)
    first.commit("initial")
    subprocess.run(["git", "clone", "-q", str(first.root), str(tmp_path / "second")], check=True)
    second = OpsRepoBuilder(tmp_path / "second", {})

    out = _ok(first.runner("pause", "--reason", "incident 9", "--by", "alice")).stdout
    assert f"State branch pushed to {remote}." in out.splitlines()
    shown = subprocess.run(
        ["git", "--git-dir", str(remote), "show", "runner-state:paused.yaml"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert yaml.safe_load(shown.stdout)["reason"] == "incident 9"

    blocked = second.runner("apply")
    assert blocked.exit_code == 4
    assert blocked.stderr.startswith(
        "error: repository paused on the state branch: incident 9 (by alice at "
    )
    assert "State branch pushed to" in _ok(second.runner("resume-all", "--by", "bob")).stdout
    assert _ok(first.runner("apply")).stdout.count("success") == 3


# --- events list ---------------------------------------------------------------------------------


def _take_lease(repo: OpsRepoBuilder, node: str) -> None:
    """A lease left on the state branch by a runner that is gone."""
    moment = datetime.now(UTC)
    lease = Lease(node, "ci-7:4242:abcdef", "20261101T000000000Z-abcdef", moment, moment)
    store = StateStore(GitRepo.open(repo.root))

    def mutate(view: StateView) -> dict[str, bytes | None]:
        return {lease.path: lease_to_yaml(lease)}

    store.update(mutate, "a lease of a runner that died")


def test_events_list_after_pause_resume_and_unlock(tmp_path: Path) -> None:
    repo = OpsRepoBuilder(tmp_path / "ops")
    repo.commit("initial")
    assert _ok(repo.runner("events", "list")).stdout == "No events recorded yet.\n"
    _ok(repo.runner("pause", "--reason", "incident 7", "--by", "alice"))
    _ok(repo.runner("pause", "--reason", "incident 8", "--by", "bob"))
    _ok(repo.runner("resume-all", "--by", "carol"))
    _take_lease(repo, DEV_API)
    _ok(repo.runner("unlock", DEV_API, "--force"))

    events = json.loads(_ok(repo.runner("events", "list", "--format", "json")).stdout)
    assert [(e["kind"], e["by"], e.get("node"), e["message"]) for e in events] == [
        ("pause", "alice", None, "repository paused: incident 7"),
        ("pause", "bob", None, "pause reason changed to: incident 8 (was: incident 7)"),
        ("resume", "carol", None, "pause lifted (was: incident 8)"),
        ("unlock", "Test User <test@example.com>", DEV_API, f"lease on {DEV_API} broken by force"),
    ]
    assert events[3]["removed"]["holder"] == "ci-7:4242:abcdef"
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)

    def kinds(*filters: str) -> list[str]:
        args = [a for f in filters for a in ("--filter", f)]
        out = _ok(repo.runner("events", "list", "--format", "json", *args)).stdout
        return [e["kind"] for e in json.loads(out)]

    assert kinds("kind=resume", "kind=unlock", "since=1h") == ["resume", "unlock"]
    assert kinds("node=/projects/pay/%", "kind=pause", "kind=unlock") == ["unlock"]
    assert kinds("until=2000-01-01") == []
    assert kinds("by=carol", "by=bob", f"until={events[2]['time']}") == ["pause", "resume"]

    out = _ok(repo.runner("events", "list", "--format", "csv", "--limit", "2")).stdout
    assert out.splitlines()[0] == "id,time,kind,by,node,message,details"
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["id"] for r in rows] == [events[2]["id"], events[3]["id"]]
    assert (rows[0]["node"], rows[0]["details"]) == ("", "")
    assert json.loads(rows[1]["details"])["removed"]["holder"] == "ci-7:4242:abcdef"

    table = _ok(repo.runner("events", "list", "--filter", "kind=resume")).stdout.splitlines()
    assert table == [
        f"{'TIME':29} {'KIND':9} {'BY':20} {'NODE':12} MESSAGE",
        f"{events[2]['time']:29} {'resume':9} {'carol':20} {'-':12} pause lifted (was: incident 8)",
    ]
    bad = repo.runner("events", "list", "--filter", "status=error")
    assert bad.exit_code == 3
    assert bad.stderr.startswith("error: --filter 'status=error': unknown key 'status'")
