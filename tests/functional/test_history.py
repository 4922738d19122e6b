"""`runner changes list` filters and formats, and `runner history PATH`: real repos, real CLI.

The change records come from real `runner apply` and `runner run` processes whose steps are real
shell commands; the histories from real commits made with the git CLI.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.opsrepo import MINIMAL, OpsRepoBuilder, Result, run_cli

DEV_API = "/projects/pay/environments/dev/assets/api"
PROD_API = "/projects/pay/environments/prod/assets/api"
PROD_DB = "/projects/pay/environments/prod/assets/db"
PROD_API_FILE = "projects/pay/environments/prod/assets/api.yaml"
PROD_ENV_FILE = "projects/pay/environments/prod/environment.yaml"
DEV_API_FILE = "projects/pay/environments/dev/assets/api.yaml"

# MINIMAL's web template with a second action whose only step fails.
WEB = """\
    name: Web service
    properties:
      replicas: 2
      image: {repository: acme/web, tag: "1.0.0"}
    on_change: deploy
    actions:
      deploy:
        steps:
          - {name: build, run: echo build}
          - {name: roll, run: echo roll}
      broken:
        steps:
          - {name: fail, run: echo failing && exit 3}
    """

COLUMNS = "id,node,action,status,kind,commit,created,started,finished,retry_of,run"


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, result.stderr
    return result


# --- changes list --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[OpsRepoBuilder, list[dict[str, Any]]]:
    """Five changes: an apply of three nodes (success), a failing ad-hoc run on dev/api (error)
    and a successful ad-hoc run on prod/db; in that order."""
    files = dict(MINIMAL)
    files["templates/web/template.yaml"] = WEB
    repo = OpsRepoBuilder(tmp_path_factory.mktemp("changes") / "ops", files)
    repo.commit("initial")
    _ok(repo.runner("apply"))
    failed = repo.runner("run", DEV_API, "broken")
    assert failed.exit_code == 1, failed.stderr
    _ok(repo.runner("run", PROD_DB, "deploy"))
    listed = json.loads(_ok(repo.runner("changes", "list", "--format", "json")).stdout)
    return repo, listed


Row = tuple[str, str, str, str]


def _row(change: dict[str, Any]) -> Row:
    return (change["node"], change["action"], change["kind"], change["status"])


def _rows(repo: OpsRepoBuilder, *filters: str) -> list[Row]:
    args = [a for f in filters for a in ("--filter", f)]
    out = _ok(repo.runner("changes", "list", "--format", "json", *args)).stdout
    return [_row(c) for c in json.loads(out)]


def test_the_records_are_what_apply_and_run_made(
    recorded: tuple[OpsRepoBuilder, list[dict[str, Any]]],
) -> None:
    repo, listed = recorded
    assert sorted(_row(c) for c in listed[:3]) == [
        (DEV_API, "deploy", "apply", "success"),
        (PROD_API, "deploy", "apply", "success"),
        (PROD_DB, "deploy", "apply", "success"),
    ]
    assert [_row(c) for c in listed[3:]] == [
        (DEV_API, "broken", "run", "error"),
        (PROD_DB, "deploy", "run", "success"),
    ]
    head = repo.git("rev-parse", "HEAD")
    for change in listed:
        assert set(change) == set(COLUMNS.split(","))
        assert change["commit"] == head
        assert change["run"] is None
        assert change["retry_of"] is None
    assert [c["created"] for c in listed] == sorted(c["created"] for c in listed)


def test_filters_by_status_node_action_and_kind(
    recorded: tuple[OpsRepoBuilder, list[dict[str, Any]]],
) -> None:
    repo, listed = recorded
    everything = [_row(c) for c in listed]
    assert _rows(repo, "status=error") == [(DEV_API, "broken", "run", "error")]
    # The same key twice: either value.
    assert _rows(repo, "status=error", "status=success") == everything
    # Different keys: all of them.
    assert _rows(repo, "kind=run", "status=success") == [(PROD_DB, "deploy", "run", "success")]
    assert _rows(repo, "action=broken", "kind=apply") == []
    assert _rows(repo, "kind=apply") == everything[:3]
    # An exact node is that node only (a missing leading slash is fine).
    assert _rows(repo, "node=projects/pay/environments/prod/assets/db") == [
        r for r in everything if r[0] == PROD_DB
    ]
    assert _rows(repo, "node=/projects/pay/environments/prod", "run=20261101T0000Z-abcdef") == []


def test_a_trailing_percent_matches_by_prefix(
    recorded: tuple[OpsRepoBuilder, list[dict[str, Any]]],
) -> None:
    repo, listed = recorded
    everything = [_row(c) for c in listed]
    assert _rows(repo, "node=/projects/pay/environments/prod/%") == [
        r for r in everything if r[0] in (PROD_API, PROD_DB)
    ]
    assert _rows(repo, "node=/projects/pay/environments/prod/assets/a%") == [
        r for r in everything if r[0] == PROD_API
    ]
    assert _rows(repo, "node=/projects/pay/environments/dev/%", "status=success") == [
        (DEV_API, "deploy", "apply", "success")
    ]


def test_since_and_until_compare_the_creation_time(
    recorded: tuple[OpsRepoBuilder, list[dict[str, Any]]],
) -> None:
    repo, listed = recorded
    everything = [_row(c) for c in listed]
    created = [c["created"] for c in listed]
    assert _rows(repo, "since=1h", "until=2000-01-01") == everything[:0]
    assert _rows(repo, "since=7d", "since=2000-01-01") == everything
    assert _rows(repo, "until=24h") == []
    # An exact time is inclusive at both ends; a Z suffix reads as +00:00.
    assert _rows(repo, f"since={created[3]}") == everything[3:]
    assert _rows(repo, f"since={created[3]}", f"until={created[3].replace('+00:00', 'Z')}") == [
        everything[3]
    ]
    # A date takes in its whole (UTC) day.
    day = created[0][:10]
    assert _rows(repo, f"until={day}") == [
        r for r, c in zip(everything, created, strict=True) if c[:10] <= day
    ]


def test_csv_has_a_header_and_lists_oldest_first_and_limit_keeps_the_newest(
    recorded: tuple[OpsRepoBuilder, list[dict[str, Any]]],
) -> None:
    repo, listed = recorded
    out = _ok(repo.runner("changes", "list", "--format", "csv")).stdout
    lines = out.splitlines()
    assert lines[0] == COLUMNS
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["id"] for r in rows] == [c["id"] for c in listed]
    assert rows[3]["status"] == "error"
    assert rows[3]["retry_of"] == ""
    assert rows[3]["commit"] == listed[3]["commit"]

    limited = _ok(repo.runner("changes", "list", "--format", "csv", "--limit", "2")).stdout
    assert [r["id"] for r in csv.DictReader(io.StringIO(limited))] == [
        listed[3]["id"],
        listed[4]["id"],
    ]
    filtered = repo.runner(
        "changes", "list", "--format", "csv", "--filter", "node=/projects/pay/environments/prod/%"
    )
    assert _ok(filtered).stdout.splitlines()[1:] == [
        line for line in lines[1:] if "/projects/pay/environments/prod/" in line
    ]


def test_the_text_table_stays(recorded: tuple[OpsRepoBuilder, list[dict[str, Any]]]) -> None:
    repo, listed = recorded
    out = _ok(repo.runner("changes", "list", "--filter", "status=error")).stdout
    change = listed[3]
    assert out == (
        f"{'ID':26} {'STATUS':9} {'ACTION':12} {'COMMIT':12} NODE\n"
        f"{change['id']:26} {'error':9} {'broken':12} {change['commit'][:12]:12} {DEV_API}\n"
    )
    none = _ok(repo.runner("changes", "list", "--filter", "status=cancelled")).stdout
    assert none == "No changes match the filters.\n"


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ("colour=red", "unknown key 'colour'"),
        ("status=done", "unknown status 'done'"),
        ("until=2026-13-45", "'2026-13-45' is not a date"),
        ("node=", "expected KEY=VALUE"),
    ],
)
def test_a_bad_filter_exits_3_naming_it(
    recorded: tuple[OpsRepoBuilder, list[dict[str, Any]]], given: str, named: str
) -> None:
    repo, _ = recorded
    result = repo.runner("changes", "list", "--filter", given)
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: --filter {given!r}: {named}")


def test_show_and_logs_still_work(recorded: tuple[OpsRepoBuilder, list[dict[str, Any]]]) -> None:
    repo, listed = recorded
    failed = listed[3]["id"]
    shown = _ok(repo.runner("changes", "show", failed)).stdout
    assert shown.splitlines()[0] == f"change {failed}: error"
    logs = _ok(repo.runner("changes", "logs", failed, "--step", "fail")).stdout
    assert logs == "==> fail <==\nfailing\nerror: exit code 3\n"


# --- runner history ------------------------------------------------------------------------------


def _edit(repo: OpsRepoBuilder, path: str, old: str, new: str) -> None:
    target = repo.root / path
    text = target.read_text()
    assert old in text, (path, old)
    target.write_text(text.replace(old, new))


def _history_repo(root: Path) -> tuple[OpsRepoBuilder, list[str]]:
    """Four commits: prod/api created with a secret; prod's environment layer changes
    replicas; an unrelated dev change; prod/api's own file changes its tag and secret name."""
    files = dict(MINIMAL)
    files[PROD_API_FILE] = """\
        template: web
        depends_on: [db]
        properties:
          image: {tag: "1.0.9"}
          token: !secret API_TOKEN
        """
    repo = OpsRepoBuilder(root, files)
    commits = [repo.commit("Create the prod api")]
    _edit(repo, PROD_ENV_FILE, "replicas: 4", "replicas: 5")
    commits.append(repo.commit("Scale prod"))
    _edit(repo, DEV_API_FILE, '"1.1.0"', '"1.2.0"')
    commits.append(repo.commit("Bump dev"))
    _edit(repo, PROD_API_FILE, '"1.0.9"', '"1.1.0"')
    _edit(repo, PROD_API_FILE, "API_TOKEN", "API_TOKEN_V2")
    commits.append(repo.commit("Ship 1.1.0 to prod"))
    return repo, commits


def _diff(entry: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (p["key"], p["change"], p["old"], p["new"], p["layer"], p["file"], p["line"])
        for p in entry["properties_diff"]
    ]


def test_history_lists_the_commits_that_changed_the_node_with_their_diffs(tmp_path: Path) -> None:
    repo, commits = _history_repo(tmp_path / "ops")
    out = _ok(repo.runner("history", PROD_API, "--format", "json")).stdout
    assert "API_TOKEN" not in out
    found = json.loads(out)
    assert (found["node"], found["rev"], found["complete"]) == (PROD_API, commits[3], True)
    assert found["skipped"] == []
    entries = found["entries"]
    assert [(e["commit"], e["change"], e["subject"]) for e in entries] == [
        (commits[3], "modified", "Ship 1.1.0 to prod"),
        (commits[1], "modified", "Scale prod"),
        (commits[0], "created", "Create the prod api"),
    ]
    assert {(e["author"], e["email"]) for e in entries} == {("Test User", "test@example.com")}
    assert _diff(entries[0]) == [
        ("image.tag", "changed", "1.0.9", "1.1.0", "asset", PROD_API_FILE, 4),
        ("token", "changed", "***", "***", "asset", PROD_API_FILE, 5),
    ]
    assert _diff(entries[1]) == [
        ("replicas", "changed", 4, 5, "environment", PROD_ENV_FILE, 4),
    ]
    web = "templates/web/template.yaml"
    assert _diff(entries[2]) == [
        ("image.repository", "added", None, "acme/web", "template", web, 4),
        ("image.tag", "added", None, "1.0.9", "asset", PROD_API_FILE, 4),
        ("org", "added", None, "acme", "repo", "properties.yaml", 1),
        ("owner", "added", None, "team-pay", "project", "projects/pay/project.yaml", 2),
        ("regions", "added", None, ["eu-west-1"], "repo", "properties.yaml", 2),
        ("replicas", "added", None, 4, "environment", PROD_ENV_FILE, 4),
        ("token", "added", None, "***", "asset", PROD_API_FILE, 5),
    ]

    text = _ok(repo.runner("history", PROD_API)).stdout
    assert "API_TOKEN" not in text
    lines = text.splitlines()
    assert lines[0] == (
        f"History of {PROD_API} from {commits[3][:12]} (first parent, newest first): 3 changes"
    )
    heads = [line for line in lines if line[:2] in ("~ ", "+ ", "- ", "! ")]
    assert [(h.split()[0], h.split()[1], h.split("  ")[-1]) for h in heads] == [
        ("~", commits[3][:12], "Ship 1.1.0 to prod"),
        ("~", commits[1][:12], "Scale prod"),
        ("+", commits[0][:12], "Create the prod api"),
    ]
    assert all("  Test User  " in h for h in heads)
    first = lines.index(heads[0])
    assert lines[first + 1 : first + 4] == [
        "    modified",
        f'    image.tag: "1.0.9" → "1.1.0"  [asset {PROD_API_FILE}:4]',
        f"    token: *** → ***  [asset {PROD_API_FILE}:5]",
    ]
    second = lines.index(heads[1])
    assert lines[second + 1 : second + 3] == [
        "    modified",
        f"    replicas: 4 → 5  [environment {PROD_ENV_FILE}:4]",
    ]


def test_history_max_and_rev(tmp_path: Path) -> None:
    repo, commits = _history_repo(tmp_path / "ops")
    newest = json.loads(
        _ok(repo.runner("history", PROD_API, "--max", "1", "--format", "json")).stdout
    )
    assert [e["commit"] for e in newest["entries"]] == [commits[3]]
    assert newest["complete"] is False
    text = _ok(repo.runner("history", PROD_API, "--max", "1")).stdout
    assert text.endswith("\n(stopped after 1 change; raise --max to go further back)\n")
    older = json.loads(
        _ok(repo.runner("history", PROD_API, "--rev", commits[2], "--format", "json")).stdout
    )
    assert [e["commit"] for e in older["entries"]] == [commits[1], commits[0]]
    env = json.loads(
        _ok(repo.runner("history", "projects/pay/environments/prod/", "--format", "json")).stdout
    )
    assert [(e["commit"], e["change"]) for e in env["entries"]] == [
        (commits[1], "modified"),
        (commits[0], "created"),
    ]


def test_history_skips_a_commit_where_the_node_does_not_load_and_shows_deletion(
    tmp_path: Path,
) -> None:
    repo = OpsRepoBuilder(tmp_path / "ops")
    created = repo.commit("initial")
    _edit(repo, PROD_API_FILE, 'image: {tag: "1.0.9"}', 'image: {tag: "1.0.9"')
    broken = repo.commit("Break the prod api file")
    _edit(repo, PROD_API_FILE, 'image: {tag: "1.0.9"', 'image: {tag: "2.0.0"}')
    fixed = repo.commit("Fix it with 2.0.0")
    repo.remove(PROD_API_FILE)
    deleted = repo.commit("Retire the prod api")

    found = json.loads(_ok(repo.runner("history", PROD_API, "--format", "json")).stdout)
    assert [(e["commit"], e["change"]) for e in found["entries"]] == [
        (deleted, "deleted"),
        (fixed, "modified"),
        (created, "created"),
    ]
    assert _diff(found["entries"][1]) == [
        ("image.tag", "changed", "1.0.9", "2.0.0", "asset", PROD_API_FILE, 4),
    ]
    assert [(s["commit"], s["subject"]) for s in found["skipped"]] == [
        (broken, "Break the prod api file")
    ]
    assert found["skipped"][0]["reason"].startswith(f"{PROD_API_FILE}:")
    assert ("image.tag", "removed", "2.0.0", None) in [p[:4] for p in _diff(found["entries"][0])]
    text = _ok(repo.runner("history", PROD_API)).stdout
    assert f"! {broken[:12]}" in text
    assert f"- {deleted[:12]}" in text


def test_an_unknown_node_exits_3(tmp_path: Path) -> None:
    repo = OpsRepoBuilder(tmp_path / "ops")
    repo.commit("initial")
    missing = repo.runner("history", "/projects/pay/environments/prod/assets/nope")
    assert missing.exit_code == 3
    assert missing.stderr == (
        "error: /projects/pay/environments/prod/assets/nope: no such node at HEAD nor in its "
        "history\n"
    )
    not_a_path = repo.runner("history", "/projects/pay/things/x")
    assert not_a_path.exit_code == 3
    assert "not a node path" in not_a_path.stderr


def test_history_of_an_ops_repo_in_a_folder_from_the_top_level(tmp_path: Path) -> None:
    mono = OpsRepoBuilder(tmp_path / "mono", {"README.md": "a monorepo\n"})
    for path, text in MINIMAL.items():
        mono.write(f"ops/{path}", text)
    first = mono.commit("Add the ops repo")
    mono.write("README.md", "still a monorepo\n")
    mono.commit("Docs")
    target = mono.root / "ops" / PROD_API_FILE
    target.write_text(target.read_text().replace('"1.0.9"', '"1.0.10"'))
    bumped = mono.commit("Bump prod")

    found = json.loads(
        _ok(mono.runner("--repo", "ops", "history", PROD_API, "--format", "json")).stdout
    )
    assert [(e["commit"], e["change"]) for e in found["entries"]] == [
        (bumped, "modified"),
        (first, "created"),
    ]
    assert _diff(found["entries"][0]) == [
        ("image.tag", "changed", "1.0.9", "1.0.10", "asset", PROD_API_FILE, 4),
    ]


def test_history_of_the_example_repo_masks_its_secrets(tmp_path: Path) -> None:
    """`runner init` gives a committed copy of the example repo: one creation per node."""
    root = tmp_path / "ops"
    _ok(run_cli("init", str(root), cwd=tmp_path))
    out = _ok(run_cli("--repo", str(root), "history", PROD_API, "--format", "json", cwd=tmp_path))
    found = json.loads(out.stdout)
    assert [e["change"] for e in found["entries"]] == ["created"]
    keys = {p["key"]: p for p in found["entries"][0]["properties_diff"]}
    assert keys["payment_gateway.api_token"]["new"] == "***"
    assert keys["image.tag"]["new"] == "1.42.0"
    assert "PAY_GATEWAY_TOKEN" not in out.stdout
