"""`runner apply` when steps go wrong, and the commands that recover from it.

Real ops repos, real `runner` processes, the real state branch. Every test builds a small ops
repo: one project `ops`, one environment `dev`, assets on templates written for the test, and a
repo-wide property `out` naming a scratch folder. Steps append "<asset> <step>" to
`<out>/trace`, so a test sees what ran and in what order; runner.yaml says `parallelism: 1`, so
that order is deterministic.

Failing steps are results, not crashes (SPEC 2.4, issue 4):
- a failing step ends `error`, the change `error`, `apply` exits 1;
- later `success()` steps end `skipped`; `if: failure()` and `if: always()` steps run;
- fail-fast (the default) skips every queued step; `--keep-going` only the dependants;
- `timeout` kills the step's whole process group; `retries` run it again after a backoff;
- a missing secret fails the step that needs it, naming the secret.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.opsrepo import OpsRepoBuilder, Result

ENV = "/projects/ops/environments/dev"

# Appends "<asset> <step>" to the trace file: what ran, in order.
TRACE = 'echo "${RUNNER_NODE##*/} $RUNNER_STEP" >> ${{ properties.out }}/trace'


def node(asset: str) -> str:
    return f"{ENV}/assets/{asset}"


def traced(name: str, **extra: Any) -> dict[str, Any]:
    """A step that only leaves its line in the trace."""
    return {"name": name, "run": TRACE, **extra}


# --- an ops repo made for one test -----------------------------------------------------------


@dataclass
class Lab:
    repo: OpsRepoBuilder
    out: Path

    def runner(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return self.repo.runner(*args, env=env)

    def trace(self) -> list[str]:
        path = self.out / "trace"
        return path.read_text("utf-8").splitlines() if path.exists() else []

    def records(self) -> list[dict[str, Any]]:
        """Every change record on the state branch, oldest first (ids sort by time)."""
        return state_records(self.repo.root)

    def record(self, asset: str) -> dict[str, Any]:
        """The only change record of ``asset``."""
        found = [r for r in self.records() if r["node"] == node(asset)]
        assert len(found) == 1, found
        return found[0]


def steps_of(record: dict[str, Any]) -> dict[str, str]:
    """step id → status"""
    return {s["id"]: s["status"] for s in record["steps"]}


def step(record: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(s for s in record["steps"] if s["id"] == step_id)


def make_repo(
    tmp_path: Path,
    templates: dict[str, list[dict[str, Any]]],
    assets: dict[str, dict[str, Any]],
    settings: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
) -> Lab:
    """An ops repo with one template per entry of ``templates`` (its `deploy` action runs the
    given steps on every change) and one asset per entry of ``assets`` under /projects/ops/dev."""
    out = tmp_path / "out"
    out.mkdir()
    files = {
        "runner.yaml": _dump(settings if settings is not None else {"parallelism": 1}),
        "properties.yaml": _dump({"out": str(out), **(properties or {})}),
        "projects/ops/project.yaml": _dump({"name": "Ops"}),
        "projects/ops/environments/dev/environment.yaml": _dump({"name": "Dev"}),
    }
    for name, steps in templates.items():
        files[f"templates/{name}/template.yaml"] = _dump(
            {"name": name, "on_change": "deploy", "actions": {"deploy": {"steps": steps}}}
        )
    for name, body in assets.items():
        files[f"projects/ops/environments/dev/assets/{name}.yaml"] = _dump(body)
    repo = OpsRepoBuilder(tmp_path / "ops", files)
    repo.commit("initial")
    return Lab(repo, out)


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, width=1000)


def git(
    cwd: Path, *args: str, input: bytes | None = None, env: dict[str, str] | None = None
) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        input=input,
        capture_output=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return done.stdout.decode("utf-8").strip()


def state_records(repo: Path, branch: str = "runner-state") -> list[dict[str, Any]]:
    """The change records on ``branch`` of the repository at ``repo`` (bare or not)."""
    listing = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", branch, "--", "changes/"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    if listing.returncode != 0:  # no state branch yet
        return []
    records = [
        yaml.safe_load(git(repo, "show", f"{branch}:{path}"))
        for path in listing.stdout.split()
        if path.endswith(".yaml")
    ]
    return sorted(records, key=lambda r: str(r["id"]))


def fsck(repo: Path) -> str:
    """Problems ``git fsck --strict`` finds: "" when the repository is sound. Dangling commits
    are not problems: a writer that loses a compare-and-swap race leaves its commit behind."""
    done = subprocess.run(
        ["git", "fsck", "--strict", "--no-dangling", "--no-progress"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    return (done.stdout + done.stderr).strip() or ("" if done.returncode == 0 else "failed")


def processes_with(token: str) -> list[int]:
    """Live processes whose command line contains ``token``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if token.encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


# --- a failing step ---------------------------------------------------------------------------


MIGRATION_FAILS = [
    traced("prepare"),
    {"name": "migrate", "run": "echo 'migrating 42 tables'; echo 'disk full' >&2; exit 3"},
    traced("smoke"),
    traced("page-oncall", **{"if": "failure()"}),
    traced("cleanup", **{"if": "always()"}),
]


def test_a_failing_step_fails_the_change_skips_later_steps_and_runs_failure_handlers(
    tmp_path: Path,
) -> None:
    lab = make_repo(tmp_path, {"job": MIGRATION_FAILS}, {"api": {"template": "job"}})

    applied = lab.runner("apply")

    assert applied.exit_code == 1, applied.stderr
    assert lab.trace() == ["api prepare", "api page-oncall", "api cleanup"]
    record = lab.record("api")
    assert record["status"] == "error"
    assert steps_of(record) == {
        "prepare": "success",
        "migrate": "error",
        "smoke": "skipped",
        "page-oncall": "success",
        "cleanup": "success",
    }
    migrate = step(record, "migrate")
    assert (migrate["exit_code"], migrate["error"]) == (3, "exit code 3")
    assert "migrate: exit code 3" in applied.stdout
    assert record["id"] in applied.stdout


def test_changes_logs_shows_a_failed_steps_output_and_error(tmp_path: Path) -> None:
    lab = make_repo(tmp_path, {"job": MIGRATION_FAILS}, {"api": {"template": "job"}})
    assert lab.runner("apply").exit_code == 1
    change_id = lab.record("api")["id"]

    logs = lab.runner("changes", "logs", change_id, "--step", "migrate")

    assert logs.exit_code == 0, logs.stderr
    assert logs.stdout.splitlines()[0] == "==> migrate <=="
    assert "migrating 42 tables" in logs.stdout
    assert "disk full" in logs.stdout  # stderr is in the log too
    assert "exit code 3" in logs.stdout
    assert "prepare" not in logs.stdout

    shown = json.loads(lab.runner("changes", "show", change_id, "--format", "json").stdout)
    assert (shown["id"], shown["status"]) == (change_id, "error")
    listed = json.loads(lab.runner("changes", "list", "--format", "json").stdout)
    assert [(c["id"], c["status"], c["node"]) for c in listed] == [
        (change_id, "error", node("api"))
    ]


def test_failure_handlers_are_skipped_when_nothing_failed(tmp_path: Path) -> None:
    steps = [traced("prepare"), traced("page-oncall", **{"if": "failure()"}), traced("cleanup")]
    lab = make_repo(tmp_path, {"job": steps}, {"api": {"template": "job"}})

    applied = lab.runner("apply")

    assert applied.exit_code == 0, applied.stderr
    assert lab.trace() == ["api prepare", "api cleanup"]
    record = lab.record("api")
    assert record["status"] == "success"
    assert steps_of(record) == {
        "prepare": "success",
        "page-oncall": "skipped",
        "cleanup": "success",
    }


# --- fail-fast and keep-going ---------------------------------------------------------------

# `a-broken` fails; `b-independent` has nothing to do with it; `c-dependant` depends on it.
# With parallelism 1 the plan order is a, b, c.
THREE_NODES: dict[str, dict[str, Any]] = {
    "a-broken": {"template": "broken"},
    "b-independent": {"template": "fine"},
    "c-dependant": {"template": "fine", "depends_on": ["a-broken"]},
}
TWO_TEMPLATES = {
    "broken": [{"name": "deploy", "run": "exit 1"}],
    "fine": [traced("one"), traced("two")],
}


def test_fail_fast_skips_every_queued_step_once_one_failed(tmp_path: Path) -> None:
    lab = make_repo(tmp_path, TWO_TEMPLATES, THREE_NODES)

    applied = lab.runner("apply")

    assert applied.exit_code == 1, applied.stderr
    assert lab.trace() == []
    assert [(r["node"], r["status"]) for r in sorted(lab.records(), key=lambda r: r["node"])] == [
        (node("a-broken"), "error"),
        (node("b-independent"), "skipped"),
        (node("c-dependant"), "skipped"),
    ]
    assert steps_of(lab.record("b-independent")) == {"one": "skipped", "two": "skipped"}
    assert steps_of(lab.record("c-dependant")) == {"one": "skipped", "two": "skipped"}


def test_keep_going_runs_independent_nodes_and_skips_only_the_dependants(tmp_path: Path) -> None:
    lab = make_repo(tmp_path, TWO_TEMPLATES, THREE_NODES)

    applied = lab.runner("apply", "--keep-going")

    assert applied.exit_code == 1, applied.stderr
    assert lab.trace() == ["b-independent one", "b-independent two"]
    assert lab.record("a-broken")["status"] == "error"
    assert lab.record("b-independent")["status"] == "success"
    dependant = lab.record("c-dependant")
    assert dependant["status"] == "skipped"
    assert steps_of(dependant) == {"one": "skipped", "two": "skipped"}


def test_fail_fast_false_in_runner_yaml_is_keep_going(tmp_path: Path) -> None:
    lab = make_repo(tmp_path, TWO_TEMPLATES, THREE_NODES, {"parallelism": 1, "fail_fast": False})

    assert lab.runner("apply").exit_code == 1
    assert lab.trace() == ["b-independent one", "b-independent two"]
    assert lab.record("c-dependant")["status"] == "skipped"


def test_the_dependants_of_a_failed_node_are_planned_again_by_the_next_apply(
    tmp_path: Path,
) -> None:
    lab = make_repo(tmp_path, TWO_TEMPLATES, THREE_NODES)
    assert lab.runner("apply", "--keep-going").exit_code == 1
    fixed = {
        "name": "broken",
        "on_change": "deploy",
        "actions": {"deploy": {"steps": [traced("deploy")]}},
    }
    lab.repo.write("templates/broken/template.yaml", _dump(fixed))
    lab.repo.commit("fix the broken template")

    again = lab.runner("apply")

    assert again.exit_code == 0, again.stderr
    assert [line for line in lab.trace() if not line.startswith("b-")] == [
        "a-broken deploy",
        "c-dependant one",
        "c-dependant two",
    ]
    assert {(r["node"], r["status"]) for r in lab.records()[3:]} >= {
        (node("a-broken"), "success"),
        (node("c-dependant"), "success"),
    }


# --- timeouts and retries -------------------------------------------------------------------


def test_a_step_past_its_timeout_is_killed_with_its_whole_process_group(tmp_path: Path) -> None:
    token = f"30.{os.getpid():07d}1"  # `sleep 30.<pid>1`: findable in /proc, still ~30 s
    steps = [
        {"name": "hang", "timeout": "1s", "run": f"sleep {token} & sleep {token}; wait"},
        traced("after"),
    ]
    lab = make_repo(tmp_path, {"job": steps}, {"api": {"template": "job"}})

    started = time.monotonic()
    applied = lab.runner("apply")
    elapsed = time.monotonic() - started

    assert applied.exit_code == 1, applied.stderr
    assert elapsed < 15, f"apply took {elapsed:.1f}s for a step with a 1s timeout"
    assert processes_with(token) == []  # the background sleep died too
    record = lab.record("api")
    assert record["status"] == "error"
    hang = step(record, "hang")
    assert (hang["status"], hang["error"]) == ("error", "timed out after 1s")
    assert step(record, "after")["status"] == "skipped"
    assert lab.trace() == []


def test_a_flaky_step_is_retried_with_backoff_until_it_succeeds(tmp_path: Path) -> None:
    # Fails on its first two tries, succeeds on the third.
    flaky = (
        "n=$(cat ${{ properties.out }}/tries 2>/dev/null || echo 0); n=$((n + 1)); "
        'echo $n > ${{ properties.out }}/tries; echo "try $n"; [ "$n" -ge 3 ]'
    )
    steps = [
        {"name": "connect", "run": flaky, "retries": {"attempts": 2, "backoff": "0.1s"}},
        traced("after"),
    ]
    lab = make_repo(tmp_path, {"job": steps}, {"api": {"template": "job"}})

    applied = lab.runner("apply")

    assert applied.exit_code == 0, applied.stderr
    assert (lab.out / "tries").read_text().strip() == "3"
    record = lab.record("api")
    assert record["status"] == "success"
    connect = step(record, "connect")
    assert (connect["status"], connect["attempts"], connect["error"]) == ("success", 3, None)
    assert lab.trace() == ["api after"]
    log = lab.runner("changes", "logs", record["id"], "--step", "connect").stdout
    assert [line for line in log.splitlines() if line.startswith("try ")] == [
        "try 1",
        "try 2",
        "try 3",
    ]


def test_a_step_that_keeps_failing_ends_in_error_after_its_last_attempt(tmp_path: Path) -> None:
    steps = [
        {
            "name": "connect",
            "run": "echo x >> ${{ properties.out }}/tries; exit 7",
            "retries": {"attempts": 2, "backoff": "0.1s"},
        }
    ]
    lab = make_repo(tmp_path, {"job": steps}, {"api": {"template": "job"}})

    assert lab.runner("apply").exit_code == 1
    assert (lab.out / "tries").read_text().split() == ["x", "x", "x"]
    connect = step(lab.record("api"), "connect")
    assert (connect["status"], connect["attempts"], connect["exit_code"]) == ("error", 3, 7)


# --- a missing secret -----------------------------------------------------------------------


def test_a_missing_secret_fails_the_step_that_needs_it_naming_the_secret(tmp_path: Path) -> None:
    steps = [
        traced("build"),
        {"name": "publish", "run": 'echo "publishing with ${{ secrets.REGISTRY_TOKEN }}"'},
        traced("notify", **{"if": "always()"}),
    ]
    lab = make_repo(tmp_path, {"job": steps}, {"api": {"template": "job"}})

    applied = lab.runner("apply")

    assert applied.exit_code == 1, applied.stderr
    assert "REGISTRY_TOKEN" in applied.stdout
    record = lab.record("api")
    assert record["status"] == "error"
    publish = step(record, "publish")
    assert publish["status"] == "error"
    assert "REGISTRY_TOKEN" in publish["error"]
    assert lab.trace() == ["api build", "api notify"]
    assert "publishing" not in lab.runner("changes", "logs", record["id"]).stdout  # never ran


# --- saved plans, ad-hoc runs, retries of a change, stale leases (issue 4, "Commands") -------

# Appends "<asset> <tag property>" to the trace.
WEB = [{"name": "deploy", "run": TRACE.replace("$RUNNER_STEP", "${{ properties.tag }}")}]


def test_apply_of_a_saved_plan_runs_it_when_the_state_has_not_moved(tmp_path: Path) -> None:
    lab = make_repo(tmp_path, {"web": WEB}, {"api": {"template": "web"}}, properties={"tag": 1})
    plan_file = tmp_path / "plan.json"
    assert lab.runner("plan", "--output", str(plan_file)).exit_code == 0

    applied = lab.runner("apply", "--plan", str(plan_file))

    assert applied.exit_code == 0, applied.stderr
    assert lab.trace() == ["api 1"]


def test_apply_of_a_saved_plan_refuses_when_the_state_branch_moved_since(tmp_path: Path) -> None:
    lab = make_repo(tmp_path, {"web": WEB}, {"api": {"template": "web"}}, properties={"tag": 1})
    assert lab.runner("apply").exit_code == 0
    lab.repo.write("properties.yaml", _dump({"out": str(lab.out), "tag": 2}))
    lab.repo.commit("tag 2")
    plan_file = tmp_path / "plan.json"
    assert lab.runner("plan", "--output", str(plan_file)).exit_code == 0
    assert lab.runner("apply").exit_code == 0  # another pipeline applied it meanwhile

    refused = lab.runner("apply", "--plan", str(plan_file))

    assert refused.exit_code == 4, refused.stderr
    assert "plan again" in refused.stderr
    assert lab.trace() == ["api 1", "api 2"]
    assert len(lab.records()) == 2


def test_run_sets_an_override_and_records_a_change_of_kind_run(tmp_path: Path) -> None:
    steps = [
        {"name": "scale", "run": "echo ${{ properties.replicas }} >> ${{ properties.out }}/trace"}
    ]
    lab = make_repo(
        tmp_path, {"web": steps}, {"api": {"template": "web"}}, properties={"replicas": 2}
    )

    ran = lab.runner("run", node("api"), "deploy", "--set", "replicas=5")

    assert ran.exit_code == 0, ran.stderr
    assert lab.trace() == ["5"]
    record = lab.record("api")
    assert (record["kind"], record["status"], record["action"]) == ("run", "success", "deploy")
    assert record["overrides"] == {"replicas": 5}
    listed = json.loads(lab.runner("changes", "list", "--format", "json").stdout)
    assert [(c["kind"], c["status"]) for c in listed] == [("run", "success")]


def test_retry_makes_a_new_change_that_runs_only_the_failed_steps(tmp_path: Path) -> None:
    # `release` fails the first time it runs, succeeds afterwards.
    once = "test -e ${{ properties.out }}/fixed || { touch ${{ properties.out }}/fixed; exit 1; }"
    steps = [traced("build"), {"name": "release", "run": f"{TRACE}; {once}"}, traced("verify")]
    lab = make_repo(tmp_path, {"web": steps}, {"api": {"template": "web"}})
    assert lab.runner("apply").exit_code == 1
    failed = lab.record("api")

    retried = lab.runner("retry", failed["id"])

    assert retried.exit_code == 0, retried.stderr
    assert lab.trace() == ["api build", "api release", "api release", "api verify"]
    first, second = lab.records()
    assert first == failed  # the failed change stays as it was
    assert second["id"] != failed["id"]
    assert (second["kind"], second["status"], second["retry_of"]) == (
        "retry",
        "success",
        failed["id"],
    )
    assert steps_of(second) == {"build": "success", "release": "success", "verify": "success"}
    shown = lab.runner("changes", "show", second["id"]).stdout
    assert f"retry of {failed['id']}" in shown


def _commit_on_state_branch(repo: Path, path: str, text: str) -> None:
    """Write one file on runner-state with git plumbing, as another machine's runner would."""
    blob = git(repo, "hash-object", "-w", "--stdin", input=text.encode())
    index = {"GIT_INDEX_FILE": str(repo / ".git" / "scratch-index")}
    found = subprocess.run(
        ["git", "rev-parse", "-q", "--verify", "refs/heads/runner-state"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    parent = found.stdout.strip()
    if parent:
        git(repo, "read-tree", parent, env=index)
    git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=index)
    tree = git(repo, "write-tree", env=index)
    commit = git(repo, "commit-tree", tree, *(["-p", parent] if parent else []), "-m", "lease")
    git(repo, "update-ref", "refs/heads/runner-state", commit, *([parent] if parent else []))
    (repo / ".git" / "scratch-index").unlink()


def test_unlock_force_breaks_a_stale_lease_and_records_an_event(tmp_path: Path) -> None:
    lab = make_repo(tmp_path, {"web": [traced("deploy")]}, {"api": {"template": "web"}})
    lease_file = "leases/projects/ops/environments/dev/assets/api.yaml"
    _commit_on_state_branch(
        lab.repo.root,
        lease_file,
        _dump(
            {
                "node": node("api"),
                "holder": "ci-runner-7:4242:dead00",
                "change": "20260101T000000Z-dead00",
                "acquired": "2026-01-01T00:00:00.000+00:00",
                "expires": "2999-01-01T00:00:00.000+00:00",
            }
        ),
    )

    blocked = lab.runner("apply", "--lock-timeout", "1s")
    assert blocked.exit_code == 4, blocked.stderr
    assert "ci-runner-7:4242:dead00" in blocked.stderr
    assert lab.trace() == []

    unlocked = lab.runner("unlock", node("api"), "--force")

    assert unlocked.exit_code == 0, unlocked.stderr
    assert "ci-runner-7:4242:dead00" in unlocked.stdout
    assert lease_file not in git(lab.repo.root, "ls-tree", "-r", "--name-only", "runner-state")
    events = git(lab.repo.root, "ls-tree", "-r", "--name-only", "runner-state", "--", "events/")
    assert len(events.split()) == 1
    event = yaml.safe_load(git(lab.repo.root, "show", f"runner-state:{events}"))
    assert (event["kind"], event["node"]) == ("unlock", node("api"))
    assert event["removed"]["holder"] == "ci-runner-7:4242:dead00"
    assert event["removed"]["change"] == "20260101T000000Z-dead00"

    applied = lab.runner("apply", "--lock-timeout", "1s")
    assert applied.exit_code == 0, applied.stderr
    assert lab.trace() == ["api deploy"]
    assert fsck(lab.repo.root) == ""


def test_unlock_of_a_node_nobody_holds_says_so(tmp_path: Path) -> None:
    lab = make_repo(tmp_path, {"web": [traced("deploy")]}, {"api": {"template": "web"}})

    unlocked = lab.runner("unlock", node("api"), "--force")

    assert unlocked.exit_code == 0, unlocked.stderr
    assert "was not locked" in unlocked.stdout
