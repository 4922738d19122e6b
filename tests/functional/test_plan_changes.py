"""`runner plan`: which nodes changed between two commits, why, and in what order they run.

Every test starts from the MINIMAL ops repo (one project `pay`; environments `dev` and `prod`,
prod depending on dev; assets dev/api, prod/api and prod/db, all on template `web`; prod/api
depends on prod/db), commits one small edit and reads the JSON plan between the two commits.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from tests.support.opsrepo import MINIMAL, OpsRepoBuilder, Result

DEV = "/projects/pay/environments/dev"
PROD = "/projects/pay/environments/prod"
DEV_API = f"{DEV}/assets/api"
PROD_API = f"{PROD}/assets/api"
PROD_DB = f"{PROD}/assets/db"
ALL_ASSETS = {DEV_API, PROD_API, PROD_DB}

WEB = "templates/web/template.yaml"
REPO_PROPERTIES = "properties.yaml"
PROJECT = "projects/pay/project.yaml"
DEV_ENV = "projects/pay/environments/dev/environment.yaml"
PROD_ENV = "projects/pay/environments/prod/environment.yaml"
DEV_API_FILE = "projects/pay/environments/dev/assets/api.yaml"
PROD_API_FILE = "projects/pay/environments/prod/assets/api.yaml"
PROD_DB_FILE = "projects/pay/environments/prod/assets/db.yaml"

# MINIMAL's web template, plus an on_delete action with two steps.
WEB_WITH_DESTROY = """\
    name: Web service
    properties:
      replicas: 2
      image: {repository: acme/web, tag: "1.0.0"}
    on_change: deploy
    on_delete: destroy
    actions:
      deploy:
        steps:
          - {name: build, run: echo build}
          - {name: roll, run: echo roll}
      destroy:
        steps:
          - {name: drain, run: echo drain}
          - {name: teardown, run: echo teardown}
    """


# --- helpers ------------------------------------------------------------------------------------


def minimal(path: str) -> str:
    """A MINIMAL file's text, dedented, ready to edit with ``str.replace``."""
    return textwrap.dedent(MINIMAL[path])


def edit(ops: OpsRepoBuilder, path: str, old: str, new: str) -> None:
    """Replace ``old`` (which must occur exactly once) in a file of the work tree."""
    text = (ops.root / path).read_text("utf-8")
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {path}"
    ops.write(path, text.replace(old, new))


def head_of(ops: OpsRepoBuilder) -> str:
    return ops.git("rev-parse", "HEAD")


def run_plan(
    ops: OpsRepoBuilder, base: str, head: str, *extra: str, env: dict[str, str] | None = None
) -> Result:
    return ops.runner("plan", "--base", base, "--head", head, *extra, env=env)


def plan_json(
    ops: OpsRepoBuilder, base: str, head: str, *extra: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    result = run_plan(ops, base, head, "--format", "json", *extra, env=env)
    assert result.exit_code == 0, result.stderr
    plan: dict[str, Any] = json.loads(result.stdout)
    return plan


def by_node(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {change["node"]: change for change in plan["changes"]}


def kinds(plan: dict[str, Any]) -> dict[str, str]:
    return {change["node"]: change["change"] for change in plan["changes"]}


def reasons(plan: dict[str, Any]) -> dict[str, list[str]]:
    return {change["node"]: change["reasons"] for change in plan["changes"]}


def step_ids(plan: dict[str, Any]) -> list[str]:
    return [step["id"] for step in plan["steps"]]


def needs(plan: dict[str, Any]) -> dict[str, list[str]]:
    return {step["id"]: step["needs"] for step in plan["steps"]}


def diff_entry(
    key: str, change: str, old: Any, new: Any, layer: str, file: str, line: int
) -> dict[str, Any]:
    return {
        "key": key,
        "change": change,
        "old": old,
        "new": new,
        "layer": layer,
        "file": file,
        "line": line,
    }


def every_asset(reason: str) -> dict[str, list[str]]:
    """The same one reason for each of the three assets."""
    return {node: [reason] for node in ALL_ASSETS}


def by_key(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(entries, key=lambda e: str(e["key"]))


def deploy_steps(node: str) -> list[str]:
    return [f"{node}:deploy/build", f"{node}:deploy/roll"]


def destroy_steps(node: str) -> list[str]:
    return [f"{node}:destroy/drain", f"{node}:destroy/teardown"]


def web_with_version(rev: str) -> str:
    """MINIMAL's web template with a version ``v1`` pinned to ``rev``."""
    return minimal(WEB).replace(
        "name: Web service\n", f"name: Web service\nversions:\n  v1: {{rev: {rev}}}\n"
    )


def pin_prod_api(ops: OpsRepoBuilder, rev: str) -> None:
    """prod/api on ``web@v1``, v1 pinned to ``rev``."""
    ops.write(WEB, web_with_version(rev))
    edit(ops, PROD_API_FILE, "template: web\n", "template: web@v1\n")


# --- each kind of change ------------------------------------------------------------------------


def test_asset_property_edit_modifies_only_that_asset(ops: OpsRepoBuilder) -> None:
    base = head_of(ops)
    edit(ops, PROD_API_FILE, 'tag: "1.0.9"', 'tag: "1.0.10"')
    head = ops.commit("bump the prod api image")

    plan = plan_json(ops, base, head)

    assert plan["version"] == 1
    assert plan["base"] == base
    assert plan["head"] == head
    assert plan["changes"] == [
        {
            "node": PROD_API,
            "change": "modified",
            "action": "deploy",
            "runs": True,
            "note": None,
            "template": "web",
            "reasons": [f"properties changed in asset {PROD_API_FILE}"],
            "properties_diff": [
                diff_entry("image.tag", "changed", "1.0.9", "1.0.10", "asset", PROD_API_FILE, 4)
            ],
            "steps": deploy_steps(PROD_API),
        }
    ]
    assert plan["summary"] == {
        "text": "1 node to change in 1 project: 0 created, 1 modified, 0 deleted; 2 steps",
        "nodes": 1,
        "created": 0,
        "modified": 1,
        "deleted": 0,
        "steps": 2,
    }


def test_environment_property_edit_modifies_that_environments_assets_that_inherit_it(
    ops: OpsRepoBuilder,
) -> None:
    ops.write(PROD_DB_FILE, "template: web\nproperties:\n  replicas: 3\n")
    base = ops.commit("prod db sets its own replicas")
    edit(ops, PROD_ENV, "replicas: 4", "replicas: 5")
    head = ops.commit("more prod replicas")

    plan = plan_json(ops, base, head)

    # prod/db overrides replicas itself and dev/api is in another environment: neither moves.
    assert kinds(plan) == {PROD_API: "modified"}
    assert reasons(plan) == {PROD_API: [f"properties changed in environment {PROD_ENV}"]}
    assert by_node(plan)[PROD_API]["properties_diff"] == [
        diff_entry("replicas", "changed", 4, 5, "environment", PROD_ENV, 4)
    ]


def test_project_property_edit_modifies_every_asset_of_the_project(ops: OpsRepoBuilder) -> None:
    base = head_of(ops)
    edit(ops, PROJECT, "owner: team-pay", "owner: team-payments")
    head = ops.commit("new owner")

    plan = plan_json(ops, base, head)

    assert kinds(plan) == dict.fromkeys(ALL_ASSETS, "modified")
    assert reasons(plan) == every_asset(f"properties changed in project {PROJECT}")
    for change in plan["changes"]:
        assert change["properties_diff"] == [
            diff_entry("owner", "changed", "team-pay", "team-payments", "project", PROJECT, 2)
        ]


def test_repo_properties_edit_modifies_every_asset(ops: OpsRepoBuilder) -> None:
    base = head_of(ops)
    edit(ops, REPO_PROPERTIES, "regions: [eu-west-1]", "regions: [eu-west-1, eu-central-1]")
    head = ops.commit("second region")

    plan = plan_json(ops, base, head)

    assert kinds(plan) == dict.fromkeys(ALL_ASSETS, "modified")
    assert reasons(plan) == every_asset(f"properties changed in repo {REPO_PROPERTIES}")
    for change in plan["changes"]:
        assert change["properties_diff"] == [
            diff_entry(
                "regions",
                "changed",
                ["eu-west-1"],
                ["eu-west-1", "eu-central-1"],
                "repo",
                REPO_PROPERTIES,
                2,
            )
        ]


def test_added_and_removed_properties_name_where_they_were_set(ops: OpsRepoBuilder) -> None:
    base = head_of(ops)
    ops.write(PROJECT, "name: Payments\n")
    edit(ops, DEV_API_FILE, 'image: {tag: "1.1.0"}\n', 'image: {tag: "1.1.0"}\n  extra: {a: 1}\n')
    head = ops.commit("no owner; an extra on dev api")

    plan = plan_json(ops, base, head)

    owner_removed = diff_entry("owner", "removed", "team-pay", None, "project", PROJECT, 2)
    assert kinds(plan) == dict.fromkeys(ALL_ASSETS, "modified")
    assert reasons(plan) == {
        DEV_API: [
            f"properties changed in asset {DEV_API_FILE}",
            f"properties changed in project {PROJECT}",
        ],
        PROD_API: [f"properties changed in project {PROJECT}"],
        PROD_DB: [f"properties changed in project {PROJECT}"],
    }
    assert by_node(plan)[DEV_API]["properties_diff"] == [
        diff_entry("extra.a", "added", None, 1, "asset", DEV_API_FILE, 4),
        owner_removed,
    ]
    assert by_node(plan)[PROD_API]["properties_diff"] == [owner_removed]
    assert by_node(plan)[PROD_DB]["properties_diff"] == [owner_removed]


def test_setting_an_inherited_value_again_in_another_layer_changes_nothing(
    ops: OpsRepoBuilder,
) -> None:
    base = head_of(ops)
    # The same values, now set by the assets themselves: provenance moves, values do not.
    ops.write(PROD_DB_FILE, 'template: web\nproperties:\n  image: {tag: "1.0.0"}\n')
    edit(ops, PROD_API_FILE, "properties:\n", "properties:\n  replicas: 4\n  owner: team-pay\n")
    head = ops.commit("restate inherited values")

    assert plan_json(ops, base, head)["changes"] == []


def test_template_default_edit_modifies_only_assets_that_do_not_override_it(
    ops: OpsRepoBuilder,
) -> None:
    base = head_of(ops)
    # replicas is set by both environments and image.tag by both api assets: only prod/db
    # takes its tag from the template, and nobody takes replicas from it.
    edit(ops, WEB, "replicas: 2", "replicas: 3")
    edit(ops, WEB, 'tag: "1.0.0"', 'tag: "1.0.1"')
    head = ops.commit("new template defaults")

    plan = plan_json(ops, base, head)

    assert kinds(plan) == {PROD_DB: "modified"}
    assert reasons(plan) == {PROD_DB: [f"properties changed in template {WEB}"]}
    assert by_node(plan)[PROD_DB]["properties_diff"] == [
        diff_entry("image.tag", "changed", "1.0.0", "1.0.1", "template", WEB, 4)
    ]


def test_template_action_step_edit_modifies_every_asset_using_the_template(
    ops: OpsRepoBuilder,
) -> None:
    ops.write(
        "templates/worker/template.yaml",
        """\
        name: Worker
        properties:
          image: {repository: acme/worker, tag: "1.0.0"}
        on_change: deploy
        actions:
          deploy:
            steps:
              - {name: roll, run: echo roll}
        """,
    )
    ops.write("projects/pay/environments/prod/assets/queue.yaml", "template: worker\n")
    base = ops.commit("a worker")
    edit(ops, WEB, "run: echo roll\n", "run: echo roll --wait\n")
    head = ops.commit("wait for the rollout")

    plan = plan_json(ops, base, head)

    # prod/queue runs the worker template's own deploy, which did not move.
    assert kinds(plan) == dict.fromkeys(ALL_ASSETS, "modified")
    assert reasons(plan) == every_asset("action deploy changed")
    for change in plan["changes"]:
        assert change["properties_diff"] == []
        assert change["action"] == "deploy"
    rolls = {s["id"]: s["run"] for s in plan["steps"] if s["name"] == "roll"}
    assert rolls == {f"{node}:deploy/roll": "echo roll --wait" for node in ALL_ASSETS}


def test_child_action_edit_modifies_the_nodes_that_reach_it(ops: OpsRepoBuilder) -> None:
    edit(
        ops,
        WEB,
        "        run: echo roll\n",
        "        run: echo roll\n"
        "      - name: smoke\n"
        "        action: healthcheck\n"
        "  healthcheck:\n"
        "    steps:\n"
        "      - {name: probe, run: echo probe}\n",
    )
    base = ops.commit("smoke test after deploy")
    edit(ops, WEB, "run: echo probe}", "run: echo probe --retry 3}")
    head = ops.commit("probe harder")

    plan = plan_json(ops, base, head)

    assert kinds(plan) == dict.fromkeys(ALL_ASSETS, "modified")
    assert reasons(plan) == every_asset("action healthcheck changed")
    assert by_node(plan)[DEV_API]["steps"] == [
        *deploy_steps(DEV_API),
        f"{DEV_API}:deploy/smoke/probe",
    ]


def test_editing_an_action_no_node_runs_changes_nothing(ops: OpsRepoBuilder) -> None:
    edit(
        ops,
        WEB,
        "        run: echo roll\n",
        "        run: echo roll\n  unused:\n    steps:\n      - {name: x, run: echo x}\n",
    )
    base = ops.commit("an action nothing calls")
    edit(ops, WEB, "run: echo x}", "run: echo y}")
    head = ops.commit("edit it")

    plan = plan_json(ops, base, head)

    assert plan["changes"] == []
    assert plan["steps"] == []
    assert plan["summary"]["text"] == "No changes: nothing to do."


def test_adding_a_version_to_a_template_changes_nothing(ops: OpsRepoBuilder) -> None:
    base = head_of(ops)
    ops.write(WEB, web_with_version(base))
    head = ops.commit("version v1")

    assert plan_json(ops, base, head)["changes"] == []


def test_switching_an_asset_to_a_pinned_template_version(ops: OpsRepoBuilder) -> None:
    pinned = head_of(ops)
    ops.write(WEB, web_with_version(pinned))
    base = ops.commit("version v1")
    edit(ops, PROD_API_FILE, "template: web\n", "template: web@v1\n")
    head = ops.commit("prod api on web@v1")

    plan = plan_json(ops, base, head)

    # The template at the pinned commit is the same as at head: only its source moved.
    assert kinds(plan) == {PROD_API: "modified"}
    assert reasons(plan) == {PROD_API: [f"template web@v1 pinned to commit {pinned[:12]}"]}
    assert by_node(plan)[PROD_API]["properties_diff"] == []
    assert by_node(plan)[PROD_API]["template"] == "web@v1"
    assert by_node(plan)[PROD_API]["steps"] == deploy_steps(PROD_API)


def test_pinned_revision_moving_to_another_commit(ops: OpsRepoBuilder) -> None:
    first = head_of(ops)
    pin_prod_api(ops, first)
    base = ops.commit("prod api on web@v1")
    second = ops.commit("an empty commit to pin to")
    ops.write(WEB, web_with_version(second))
    head = ops.commit("move v1")

    plan = plan_json(ops, base, head)

    assert kinds(plan) == {PROD_API: "modified"}
    assert reasons(plan) == {
        PROD_API: [f"template web@v1 now at commit {second[:12]} (was {first[:12]})"]
    }
    assert by_node(plan)[PROD_API]["properties_diff"] == []


def test_template_edit_at_head_does_not_touch_assets_on_a_pinned_version(
    ops: OpsRepoBuilder,
) -> None:
    pin_prod_api(ops, head_of(ops))
    base = ops.commit("prod api on web@v1")
    edit(ops, WEB, "run: echo roll\n", "run: echo roll --wait\n")
    head = ops.commit("wait for the rollout")

    plan = plan_json(ops, base, head)

    assert kinds(plan) == {DEV_API: "modified", PROD_DB: "modified"}
    assert reasons(plan) == {DEV_API: ["action deploy changed"], PROD_DB: ["action deploy changed"]}


def test_a_script_added_under_the_template_folder_modifies_its_assets(ops: OpsRepoBuilder) -> None:
    base = head_of(ops)
    ops.write("templates/web/scripts/build.sh", "#!/bin/sh\necho building\n")
    head = ops.commit("a build script")

    plan = plan_json(ops, base, head)

    assert kinds(plan) == dict.fromkeys(ALL_ASSETS, "modified")
    assert reasons(plan) == every_asset("template web files changed")
    for change in plan["changes"]:
        assert change["properties_diff"] == []


def test_a_workflow_only_edit_changes_nothing(ops: OpsRepoBuilder) -> None:
    ops.write(
        "projects/pay/workflows/release.yaml",
        """\
        name: Release
        steps:
          - {name: dev, change: {target: /projects/pay/environments/dev, action: deploy}}
        """,
    )
    base = ops.commit("a release workflow")
    ops.write(
        "projects/pay/workflows/release.yaml",
        """\
        name: Release to dev
        steps:
          - {name: dev, change: {target: /projects/pay/environments/dev, action: deploy}}
          - {name: notify, needs: [dev], run: echo released}
        """,
    )
    head = ops.commit("notify after release")

    plan = plan_json(ops, base, head)

    assert plan["changes"] == []
    assert plan["steps"] == []


def test_comment_only_edits_change_nothing(ops: OpsRepoBuilder) -> None:
    base = head_of(ops)
    ops.write(DEV_API_FILE, "# the dev API\n" + minimal(DEV_API_FILE) + "# end\n")
    edit(ops, DEV_API_FILE, "properties:\n", "properties:   # newest build\n")
    ops.write(WEB, "# Web services\n\n" + minimal(WEB))
    edit(ops, WEB, "  deploy:\n", "  # roll out\n  deploy:   # the usual\n")
    edit(ops, DEV_ENV, "name: Development\n", "name: Development  # the sandbox\n")
    head = ops.commit("comments")

    plan = plan_json(ops, base, head)

    assert plan["changes"] == []


def test_reordered_keys_and_restyled_yaml_change_nothing(ops: OpsRepoBuilder) -> None:
    base = head_of(ops)
    ops.write(
        DEV_API_FILE,
        """\
        properties:
          image:
            tag: '1.1.0'
        template: web
        """,
    )
    ops.write(
        WEB,
        """\
        actions:
          deploy:
            steps:
              - run: echo build
                name: build
              - {run: echo roll, name: roll}
        on_change: deploy
        schema:
          properties:
            replicas: {minimum: 1, type: integer}
          required: [image]
          type: object
        properties:
          image:
            tag: "1.0.0"
            repository: acme/web
          replicas: 2
        name: Web service
        """,
    )
    head = ops.commit("reordered")

    plan = plan_json(ops, base, head)

    assert plan["changes"] == []


def test_renaming_an_asset_file_deletes_one_node_and_creates_another(
    ops: OpsRepoBuilder,
) -> None:
    base = head_of(ops)
    ops.write("projects/pay/environments/dev/assets/web.yaml", minimal(DEV_API_FILE))
    ops.remove(DEV_API_FILE)
    head = ops.commit("rename dev api to web")
    dev_web = f"{DEV}/assets/web"
    dev_web_file = "projects/pay/environments/dev/assets/web.yaml"

    plan = plan_json(ops, base, head)

    assert kinds(plan) == {DEV_API: "deleted", dev_web: "created"}
    deleted, created = by_node(plan)[DEV_API], by_node(plan)[dev_web]
    assert deleted["reasons"] == [f"{DEV_API_FILE} was removed"]
    assert deleted["action"] is None
    assert deleted["runs"] is False
    assert deleted["note"] == "nothing to run: template web has no on_delete"
    assert deleted["steps"] == []
    assert by_key(deleted["properties_diff"]) == [
        diff_entry("image.repository", "removed", "acme/web", None, "template", WEB, 4),
        diff_entry("image.tag", "removed", "1.1.0", None, "asset", DEV_API_FILE, 3),
        diff_entry("org", "removed", "acme", None, "repo", REPO_PROPERTIES, 1),
        diff_entry("owner", "removed", "team-pay", None, "project", PROJECT, 2),
        diff_entry("regions", "removed", ["eu-west-1"], None, "repo", REPO_PROPERTIES, 2),
        diff_entry("replicas", "removed", 1, None, "environment", DEV_ENV, 2),
    ]
    assert created["reasons"] == [f"new node ({dev_web_file})"]
    assert created["action"] == "deploy"
    assert created["runs"] is True
    assert created["note"] is None
    assert created["steps"] == deploy_steps(dev_web)
    assert by_key(created["properties_diff"]) == [
        diff_entry("image.repository", "added", None, "acme/web", "template", WEB, 4),
        diff_entry("image.tag", "added", None, "1.1.0", "asset", dev_web_file, 3),
        diff_entry("org", "added", None, "acme", "repo", REPO_PROPERTIES, 1),
        diff_entry("owner", "added", None, "team-pay", "project", PROJECT, 2),
        diff_entry("regions", "added", None, ["eu-west-1"], "repo", REPO_PROPERTIES, 2),
        diff_entry("replicas", "added", None, 1, "environment", DEV_ENV, 2),
    ]
    assert step_ids(plan) == deploy_steps(dev_web)


def test_deleting_an_asset_plans_on_delete_only_with_allow_destroy(ops: OpsRepoBuilder) -> None:
    ops.write(WEB, WEB_WITH_DESTROY)
    base = ops.commit("web can be destroyed")
    ops.remove(DEV_API_FILE)
    head = ops.commit("no dev api")

    without = plan_json(ops, base, head)
    with_flag = plan_json(ops, base, head, "--allow-destroy")

    assert kinds(without) == {DEV_API: "deleted"}
    deleted = by_node(without)[DEV_API]
    assert deleted["reasons"] == [f"{DEV_API_FILE} was removed"]
    assert deleted["action"] == "destroy"
    assert deleted["runs"] is False
    assert "--allow-destroy" in deleted["note"]
    assert deleted["steps"] == []
    assert without["steps"] == []
    assert without["allow_destroy"] is False

    assert kinds(with_flag) == {DEV_API: "deleted"}
    destroyed = by_node(with_flag)[DEV_API]
    assert destroyed["action"] == "destroy"
    assert destroyed["runs"] is True
    assert destroyed["note"] is None
    assert destroyed["steps"] == destroy_steps(DEV_API)
    assert step_ids(with_flag) == destroy_steps(DEV_API)
    assert with_flag["allow_destroy"] is True


def test_a_new_environment_creates_all_its_assets(ops: OpsRepoBuilder) -> None:
    base = head_of(ops)
    ops.write(
        "projects/pay/environments/staging/environment.yaml",
        "name: Staging\ndepends_on: [dev]\nproperties: {replicas: 2}\n",
    )
    ops.write("projects/pay/environments/staging/assets/api.yaml", "template: web\n")
    ops.write("projects/pay/environments/staging/assets/db.yaml", "template: web\n")
    head = ops.commit("staging")
    staging_api = "/projects/pay/environments/staging/assets/api"
    staging_db = "/projects/pay/environments/staging/assets/db"

    plan = plan_json(ops, base, head)

    assert kinds(plan) == {staging_api: "created", staging_db: "created"}
    assert reasons(plan) == {
        staging_api: ["new node (projects/pay/environments/staging/assets/api.yaml)"],
        staging_db: ["new node (projects/pay/environments/staging/assets/db.yaml)"],
    }
    for change in plan["changes"]:
        assert change["action"] == "deploy"
        assert change["runs"] is True
    assert plan["summary"]["created"] == 2
    assert sorted(step_ids(plan)) == sorted(deploy_steps(staging_api) + deploy_steps(staging_db))


def test_secret_reference_change_is_masked_and_no_secret_value_is_printed(
    ops: OpsRepoBuilder,
) -> None:
    edit(
        ops,
        PROD_API_FILE,
        '  image: {tag: "1.0.9"}\n',
        '  image: {tag: "1.0.9"}\n  db: {password: !secret A}\n',
    )
    base = ops.commit("prod api db password")
    edit(ops, PROD_API_FILE, "!secret A}", "!secret B}")
    head = ops.commit("another secret")
    env = {"RUNNER_SECRET_A": "supersecret", "RUNNER_SECRET_B": "hypersecret"}

    outputs = [
        run_plan(ops, base, head, "--format", fmt, env=env) for fmt in ("json", "text", "markdown")
    ]
    outputs.append(ops.runner("plan", "--format", "json", env=env))  # everything created

    for result in outputs:
        assert result.exit_code == 0, result.stderr
        for value in ("supersecret", "hypersecret"):
            assert value not in result.stdout
            assert value not in result.stderr
    plan = json.loads(outputs[0].stdout)
    assert kinds(plan) == {PROD_API: "modified"}
    assert reasons(plan) == {PROD_API: [f"properties changed in asset {PROD_API_FILE}"]}
    assert by_node(plan)[PROD_API]["properties_diff"] == [
        diff_entry("db.password", "changed", "***", "***", "asset", PROD_API_FILE, 5)
    ]
    # The values behind the references are no input: other values, the same plan.
    other = run_plan(
        ops, base, head, "--format", "json", env={"RUNNER_SECRET_A": "x", "RUNNER_SECRET_B": "y"}
    )
    assert other.stdout == outputs[0].stdout


def test_a_secret_written_either_way_is_the_same_input(ops: OpsRepoBuilder) -> None:
    edit(
        ops,
        PROD_API_FILE,
        '  image: {tag: "1.0.9"}\n',
        '  image: {tag: "1.0.9"}\n  db: !secret A\n',
    )
    base = ops.commit("!secret A")
    edit(ops, PROD_API_FILE, "db: !secret A\n", "db: {secret: A}\n")
    head = ops.commit("{secret: A}")

    assert plan_json(ops, base, head)["changes"] == []


# --- exit codes, targets --------------------------------------------------------------------


def test_detailed_exitcode_is_2_with_changes_and_0_without(ops: OpsRepoBuilder) -> None:
    base = head_of(ops)
    edit(ops, PROJECT, "owner: team-pay", "owner: team-payments")
    changed = ops.commit("new owner")
    unchanged = ops.commit("nothing")

    with_changes = run_plan(ops, base, changed, "--detailed-exitcode", "--format", "json")
    without_changes = run_plan(ops, changed, unchanged, "--detailed-exitcode", "--format", "json")

    assert with_changes.exit_code == 2, with_changes.stderr
    assert set(kinds(json.loads(with_changes.stdout))) == ALL_ASSETS
    assert without_changes.exit_code == 0, without_changes.stderr
    assert json.loads(without_changes.stdout)["changes"] == []


def commit_org_rename(ops: OpsRepoBuilder) -> tuple[str, str]:
    base = head_of(ops)
    edit(ops, REPO_PROPERTIES, "org: acme", "org: globex")
    return base, ops.commit("renamed org")


def test_target_an_environment(ops: OpsRepoBuilder) -> None:
    base, head = commit_org_rename(ops)

    plan = plan_json(ops, base, head, "--target", PROD)

    assert kinds(plan) == {PROD_API: "modified", PROD_DB: "modified"}
    assert step_ids(plan) == deploy_steps(PROD_DB) + deploy_steps(PROD_API)
    assert needs(plan)[f"{PROD_DB}:deploy/build"] == []


def test_target_by_prefix(ops: OpsRepoBuilder) -> None:
    base, head = commit_org_rename(ops)

    plan = plan_json(ops, base, head, "--target", "/projects/pay/environments/d%")

    assert kinds(plan) == {DEV_API: "modified"}
    assert step_ids(plan) == deploy_steps(DEV_API)


def test_exclude_an_environment_and_a_prefix(ops: OpsRepoBuilder) -> None:
    base, head = commit_org_rename(ops)

    no_prod = plan_json(ops, base, head, "--exclude", PROD)
    no_d = plan_json(ops, base, head, "--exclude", f"{PROD}/assets/d%")

    assert kinds(no_prod) == {DEV_API: "modified"}
    assert kinds(no_d) == {DEV_API: "modified", PROD_API: "modified"}


# --- order ----------------------------------------------------------------------------------


def test_prod_steps_wait_for_dev_steps(ops: OpsRepoBuilder) -> None:
    base, head = commit_org_rename(ops)

    plan = plan_json(ops, base, head)

    assert kinds(plan) == dict.fromkeys(ALL_ASSETS, "modified")
    assert reasons(plan) == every_asset(f"properties changed in repo {REPO_PROPERTIES}")
    order = step_ids(plan)
    assert order == deploy_steps(DEV_API) + deploy_steps(PROD_DB) + deploy_steps(PROD_API)
    dev_positions = [i for i, s in enumerate(plan["steps"]) if s["node"].startswith(DEV + "/")]
    prod_positions = [i for i, s in enumerate(plan["steps"]) if s["node"].startswith(PROD + "/")]
    assert max(dev_positions) < min(prod_positions)
    assert needs(plan) == {
        f"{DEV_API}:deploy/build": [],
        f"{DEV_API}:deploy/roll": [f"{DEV_API}:deploy/build"],
        f"{PROD_DB}:deploy/build": [f"{DEV_API}:deploy/roll"],
        f"{PROD_DB}:deploy/roll": [f"{PROD_DB}:deploy/build"],
        f"{PROD_API}:deploy/build": [f"{DEV_API}:deploy/roll", f"{PROD_DB}:deploy/roll"],
        f"{PROD_API}:deploy/roll": [f"{PROD_API}:deploy/build"],
    }
    assert plan["node_edges"] == [[DEV_API, PROD_API], [DEV_API, PROD_DB], [PROD_DB, PROD_API]]


def test_prod_waits_for_dev_through_an_unchanged_staging(ops: OpsRepoBuilder) -> None:
    ops.write(
        "projects/pay/environments/staging/environment.yaml",
        "name: Staging\ndepends_on: [dev]\n",
    )
    edit(ops, PROD_ENV, "depends_on: [dev]", "depends_on: [staging]")
    base = ops.commit("dev → staging → prod")
    edit(ops, REPO_PROPERTIES, "org: acme", "org: globex")
    head = ops.commit("renamed org")

    plan = plan_json(ops, base, head)

    assert needs(plan)[f"{PROD_DB}:deploy/build"] == [f"{DEV_API}:deploy/roll"]
    assert step_ids(plan) == deploy_steps(DEV_API) + deploy_steps(PROD_DB) + deploy_steps(PROD_API)


def test_an_asset_waits_for_the_assets_it_depends_on(ops: OpsRepoBuilder) -> None:
    base = head_of(ops)
    edit(ops, PROD_ENV, "replicas: 4", "replicas: 5")
    head = ops.commit("more prod replicas")

    plan = plan_json(ops, base, head)

    # api sorts before db, but depends on it.
    assert kinds(plan) == {PROD_API: "modified", PROD_DB: "modified"}
    assert step_ids(plan) == deploy_steps(PROD_DB) + deploy_steps(PROD_API)
    assert needs(plan)[f"{PROD_API}:deploy/build"] == [f"{PROD_DB}:deploy/roll"]
    assert plan["node_edges"] == [[PROD_DB, PROD_API]]


def test_deleted_assets_are_destroyed_dependants_first(ops: OpsRepoBuilder) -> None:
    ops.write(WEB, WEB_WITH_DESTROY)
    base = ops.commit("web can be destroyed")
    ops.remove(PROD_API_FILE)
    ops.remove(PROD_DB_FILE)
    head = ops.commit("no prod assets")

    plan = plan_json(ops, base, head, "--allow-destroy")

    assert kinds(plan) == {PROD_API: "deleted", PROD_DB: "deleted"}
    assert step_ids(plan) == destroy_steps(PROD_API) + destroy_steps(PROD_DB)
    assert needs(plan)[f"{PROD_DB}:destroy/drain"] == [f"{PROD_API}:destroy/teardown"]
    assert plan["node_edges"] == [[PROD_API, PROD_DB]]


def test_deleted_assets_of_a_dependent_environment_are_destroyed_first(
    ops: OpsRepoBuilder,
) -> None:
    ops.write(WEB, WEB_WITH_DESTROY)
    base = ops.commit("web can be destroyed")
    ops.remove(DEV_API_FILE)
    ops.remove(PROD_API_FILE)
    head = ops.commit("no api anywhere")

    plan = plan_json(ops, base, head, "--allow-destroy")

    # prod depends on dev: prod goes first, although dev sorts first.
    assert kinds(plan) == {DEV_API: "deleted", PROD_API: "deleted"}
    assert step_ids(plan) == destroy_steps(PROD_API) + destroy_steps(DEV_API)
    assert needs(plan)[f"{DEV_API}:destroy/drain"] == [f"{PROD_API}:destroy/teardown"]


# --- no base, determinism, purity, --output -----------------------------------------------


def test_without_base_or_state_branch_everything_is_created(ops: OpsRepoBuilder) -> None:
    result = ops.runner("plan", "--format", "json")
    text = ops.runner("plan")

    assert result.exit_code == 0, result.stderr
    assert text.exit_code == 0, text.stderr
    assert "nothing applied yet" in text.stdout
    assert ops.git("for-each-ref", "--format=%(refname)") == "refs/heads/main"
    plan = json.loads(result.stdout)
    assert plan["base"] is None
    assert plan["head"] == head_of(ops)
    assert kinds(plan) == dict.fromkeys(ALL_ASSETS, "created")
    assert reasons(plan) == {
        DEV_API: [f"new node ({DEV_API_FILE})"],
        PROD_API: [f"new node ({PROD_API_FILE})"],
        PROD_DB: [f"new node ({PROD_DB_FILE})"],
    }
    assert step_ids(plan) == deploy_steps(DEV_API) + deploy_steps(PROD_DB) + deploy_steps(PROD_API)


def test_the_same_plan_twice_is_byte_identical(ops: OpsRepoBuilder) -> None:
    base = head_of(ops)
    edit(ops, REPO_PROPERTIES, "org: acme", "org: globex")
    ops.remove(DEV_API_FILE)
    ops.write("projects/pay/environments/dev/assets/web.yaml", "template: web\n")
    head = ops.commit("several changes")

    first = run_plan(ops, base, head, "--format", "json", "--allow-destroy")
    second = run_plan(ops, base, head, "--format", "json", "--allow-destroy")

    assert first.exit_code == 0, first.stderr
    assert first.stdout == second.stdout
    assert len(json.loads(first.stdout)["changes"]) == 4


def test_plan_runs_nothing_and_writes_nothing(ops: OpsRepoBuilder, tmp_path: Path) -> None:
    marker = tmp_path / "touched-by-a-step"
    base = head_of(ops)
    edit(ops, WEB, "run: echo build\n", f"run: touch {marker}\n")
    head = ops.commit("a step with a visible effect")
    before = ops.snapshot_state()

    results = [run_plan(ops, base, head, "--format", fmt) for fmt in ("text", "json", "markdown")]
    results.append(ops.runner("plan", "--format", "json"))

    for result in results:
        assert result.exit_code == 0, result.stderr
    builds = [s["run"] for s in json.loads(results[1].stdout)["steps"] if s["name"] == "build"]
    assert builds == [f"touch {marker}"] * 3
    assert not marker.exists()
    assert ops.snapshot_state() == before


def test_output_writes_the_json_plan(ops: OpsRepoBuilder, tmp_path: Path) -> None:
    base, head = commit_org_rename(ops)
    json_file = tmp_path / "plan.json"
    text_file = tmp_path / "plan-from-text.json"

    as_json = run_plan(ops, base, head, "--format", "json", "--output", str(json_file))
    as_text = run_plan(ops, base, head, "--output", str(text_file))

    assert as_json.exit_code == 0, as_json.stderr
    assert as_text.exit_code == 0, as_text.stderr
    assert json_file.read_text("utf-8") == as_json.stdout
    assert text_file.read_text("utf-8") == as_json.stdout
