"""`runner properties` and `runner init` through the real CLI on real git repositories."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.opsrepo import MINIMAL, OpsRepoBuilder, run_cli

PROD_API = "/projects/pay/environments/prod/assets/api"


def test_properties_prints_the_converged_mapping(ops: OpsRepoBuilder) -> None:
    result = ops.runner("properties", PROD_API, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "replicas": 4,
        "image": {"repository": "acme/web", "tag": "1.0.9"},
        "org": "acme",
        "regions": ["eu-west-1"],
        "owner": "team-pay",
    }


def test_explain_names_layer_file_and_line_of_every_leaf(ops: OpsRepoBuilder) -> None:
    result = ops.runner("properties", PROD_API, "--explain", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [
        {
            "key": "image.repository",
            "value": "acme/web",
            "layer": "template",
            "file": "templates/web/template.yaml",
            "line": 4,
        },
        {
            "key": "image.tag",
            "value": "1.0.9",
            "layer": "asset",
            "file": "projects/pay/environments/prod/assets/api.yaml",
            "line": 4,
        },
        {"key": "org", "value": "acme", "layer": "repo", "file": "properties.yaml", "line": 1},
        {
            "key": "owner",
            "value": "team-pay",
            "layer": "project",
            "file": "projects/pay/project.yaml",
            "line": 2,
        },
        {
            "key": "regions",
            "value": ["eu-west-1"],
            "layer": "repo",
            "file": "properties.yaml",
            "line": 2,
        },
        {
            "key": "replicas",
            "value": 4,
            "layer": "environment",
            "file": "projects/pay/environments/prod/environment.yaml",
            "line": 4,
        },
    ]


def test_explain_text_is_one_line_per_leaf(ops: OpsRepoBuilder) -> None:
    result = ops.runner("properties", "projects/pay/environments/dev", "--explain")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        'org = "acme"             repo properties.yaml:1',
        'owner = "team-pay"       project projects/pay/project.yaml:2',
        'regions = ["eu-west-1"]  repo properties.yaml:2',
        "replicas = 1             environment projects/pay/environments/dev/environment.yaml:2",
    ]


def test_secrets_are_masked_in_every_format(ops: OpsRepoBuilder) -> None:
    ops.write(
        "projects/pay/environments/prod/assets/db.yaml",
        """\
        template: web
        properties:
          password: !secret DB_PASSWORD
          token: {secret: API_TOKEN}
          list: [{secret: OTHER}]
        """,
    )
    path = "/projects/pay/environments/prod/assets/db"
    for args in (["--format", "json"], ["--format", "yaml"], ["--explain"]):
        result = ops.runner("properties", path, *args)
        assert result.exit_code == 0, result.stderr
        assert "DB_PASSWORD" not in result.stdout
        assert "***" in result.stdout
    data = json.loads(ops.runner("properties", path, "--format", "json").stdout)
    assert (data["password"], data["token"], data["list"]) == ("***", "***", ["***"])


def test_working_tree_edits_are_seen_without_rev_and_not_with_it(ops: OpsRepoBuilder) -> None:
    ops.write("projects/pay/environments/prod/environment.yaml", "properties: {replicas: 9}\n")
    now = ops.runner("properties", PROD_API, "--format", "json")
    committed = ops.runner("properties", PROD_API, "--format", "json", "--rev", "HEAD")
    assert json.loads(now.stdout)["replicas"] == 9
    assert json.loads(committed.stdout)["replicas"] == 4


def test_unknown_node_and_unknown_rev_exit_3(ops: OpsRepoBuilder) -> None:
    missing = ops.runner("properties", "/projects/pay/environments/qa")
    assert (missing.exit_code, missing.stderr) == (
        3,
        "error: /projects/pay/environments/qa: no such node\n",
    )
    bad_rev = ops.runner("validate", "--rev", "nope")
    assert (bad_rev.exit_code, bad_rev.stderr) == (3, "error: unknown revision 'nope'\n")


def test_an_ops_repo_in_a_folder_of_a_monorepo(tmp_path: Path) -> None:
    mono = OpsRepoBuilder(tmp_path / "mono", files={"README.md": "the monorepo\n"})
    for path, text in MINIMAL.items():
        mono.write(f"ops/{path}", text)
    mono.write("ops/templates/web/template.yaml", MINIMAL["templates/web/template.yaml"])
    first = mono.commit("ops repo inside a monorepo")
    template = (mono.root / "ops/templates/web/template.yaml").read_text()
    mono.write(
        "ops/templates/web/template.yaml",
        template + f"versions:\n  v1: {{rev: {first}}}\n",
    )
    mono.write("ops/projects/pay/environments/prod/assets/db.yaml", "template: web@v1\n")
    mono.commit("pin db to v1")

    from_subfolder = mono.runner("validate", cwd=mono.root / "ops" / "projects" / "pay")
    assert from_subfolder.exit_code == 0, from_subfolder.stderr
    with_repo = mono.runner("--repo", "ops", "validate", "--rev", "HEAD")
    assert with_repo.exit_code == 0, with_repo.stderr
    explained = mono.runner(
        "--repo", "ops", "properties", "/projects/pay/environments/prod/assets/db", "--explain"
    )
    assert 'image.tag = "1.0.0"            template templates/web/template.yaml@v1:4' in (
        explained.stdout
    )


def test_init_makes_a_valid_committed_repo_with_pinned_versions_tagged(tmp_path: Path) -> None:
    target = tmp_path / "new-ops"
    result = run_cli("init", str(target), cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    assert "Pinned template versions point at the tags: web-2024_q4." in result.stdout
    repo = OpsRepoBuilder.__new__(OpsRepoBuilder)
    repo.root = target
    assert repo.git("status", "--porcelain") == ""
    assert repo.git("tag") == "web-2024_q4"
    checked = run_cli("validate", "--rev", "HEAD", cwd=target)
    assert checked.exit_code == 0, checked.stderr
    assert checked.stdout.startswith("valid (")
    explained = run_cli("properties", PROD_API, "--explain", cwd=target)
    assert "template templates/web/template.yaml@2024_q4:" in explained.stdout


def test_init_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    result = run_cli("init", "busy", cwd=tmp_path)
    assert (result.exit_code, result.stderr) == (3, "error: busy: exists and is not empty\n")
