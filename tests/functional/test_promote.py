"""`runner promote SOURCE_ENV TARGET_ENV`: one commit on a new branch, the target asset files
edited as text (comments and other overrides kept), HEAD and the work tree untouched, and the
plan of HEAD → that commit. Real repos, real CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.support.opsrepo import MINIMAL, OpsRepoBuilder, Result

STAGING = "/projects/pay/environments/staging"
PROD = "/projects/pay/environments/prod"
PROD_API = f"{PROD}/assets/api"
PROD_API_FILE = "projects/pay/environments/prod/assets/api.yaml"

FILES: dict[str, str] = {
    "runner.yaml": MINIMAL["runner.yaml"],
    "properties.yaml": MINIMAL["properties.yaml"],
    "templates/web/template.yaml": MINIMAL["templates/web/template.yaml"],
    "projects/pay/project.yaml": MINIMAL["projects/pay/project.yaml"],
    "projects/pay/environments/staging/environment.yaml": """\
        name: Staging
        properties: {replicas: 2}
        """,
    "projects/pay/environments/prod/environment.yaml": """\
        name: Production
        type: production
        depends_on: [staging]
        properties: {replicas: 4}
        """,
    "projects/pay/environments/staging/assets/api.yaml": """\
        template: web
        properties:
          image: {tag: "1.1.0"}
          replicas: 3
          feature:
            checkout_v2: true
        """,
    "projects/pay/environments/staging/assets/worker.yaml": "template: web\n",
    PROD_API_FILE: """\
        # The public API.
        template: web
        depends_on: [db]
        properties:
          image:
            tag: "1.0.9"   # last reviewed release
          replicas: 6      # prod runs more
        """,
    "projects/pay/environments/prod/assets/db.yaml": "template: web\n",
}

PROD_API_TEXT = """\
# The public API.
template: web
depends_on: [db]
properties:
  image:
    tag: "1.0.9"   # last reviewed release
  replicas: 6      # prod runs more
"""


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, result.stderr
    return result


def _repo(root: Path, files: dict[str, str] | None = None) -> OpsRepoBuilder:
    repo = OpsRepoBuilder(root, files or FILES)
    repo.commit("initial")
    return repo


def _plan(repo: OpsRepoBuilder, head: str, *prefix: str) -> list[tuple[str, str, list[Any]]]:
    out = _ok(repo.runner(*prefix, "plan", "--base", "HEAD", "--head", head, "--format", "json"))
    return [
        (c["node"], c["change"], [(p["key"], p["old"], p["new"]) for p in c["properties_diff"]])
        for c in json.loads(out.stdout)["changes"]
    ]


def test_promote_selected_keys_keeps_other_overrides_and_comments(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "ops")
    head = repo.git("rev-parse", "HEAD")
    refs, status = repo.snapshot_state()

    result = _ok(repo.runner("promote", STAGING, PROD, "--keys", "image.tag", "--branch", "promo"))
    commit = repo.git("rev-parse", "promo")
    lines = result.stdout.splitlines()
    assert lines[:5] == [
        f"Promote {STAGING} → {PROD}",
        f'  api: image.tag: "1.0.9" → "1.1.0"  [{PROD_API_FILE}]',
        f"  note: worker: only in {STAGING}, not promoted",
        f"  note: db: only in {PROD}, left as it is",
        f"Branch promo: commit {commit[:12]} on HEAD {head[:12]} "
        "(work tree and current branch untouched)",
    ]
    assert f"~ {PROD_API}  modified, action deploy" in lines
    assert f'    image.tag: "1.0.9" → "1.1.0"  [asset {PROD_API_FILE}:6]' in lines
    assert lines[-1] == "Open a pull request: git push origin promo"

    assert repo.git("show", f"promo:{PROD_API_FILE}") + "\n" == PROD_API_TEXT.replace(
        '"1.0.9"', '"1.1.0"'
    )
    assert repo.git("rev-parse", "promo^") == head
    assert repo.git("diff", "--name-only", "HEAD", "promo") == PROD_API_FILE
    assert repo.git("rev-parse", "HEAD") == head
    assert repo.git("symbolic-ref", "HEAD") == "refs/heads/main"
    after_refs, after_status = repo.snapshot_state()
    assert after_status == status
    assert sorted(after_refs.splitlines()) == sorted(
        [*refs.splitlines(), f"refs/heads/promo {commit}"]
    )
    assert (repo.root / PROD_API_FILE).read_text() == PROD_API_TEXT

    assert _plan(repo, "promo") == [(PROD_API, "modified", [("image.tag", "1.0.9", "1.1.0")])]
    props = json.loads(
        _ok(repo.runner("properties", PROD_API, "--rev", "promo", "--format", "json")).stdout
    )
    assert (props["image"]["tag"], props["replicas"]) == ("1.1.0", 6)


def test_promote_without_keys_copies_what_the_source_files_set(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "ops")
    result = _ok(repo.runner("promote", STAGING, PROD))
    found = re.search(r"^Branch (promote/pay-staging-to-prod-\d{12}): ", result.stdout, re.M)
    assert found is not None, result.stdout
    branch = found.group(1)
    assert result.stdout.splitlines()[1:4] == [
        f'  api: image.tag: "1.0.9" → "1.1.0"  [{PROD_API_FILE}]',
        f"  api: replicas: 6 → 3  [{PROD_API_FILE}]",
        f"  api: feature.checkout_v2: (none) → true  [{PROD_API_FILE}]",
    ]
    assert repo.git("show", f"{branch}:{PROD_API_FILE}") + "\n" == (
        "# The public API.\n"
        "template: web\n"
        "depends_on: [db]\n"
        "properties:\n"
        "  image:\n"
        '    tag: "1.1.0"   # last reviewed release\n'
        "  replicas: 3      # prod runs more\n"
        "  feature:\n"
        "    checkout_v2: true\n"
    )
    assert _plan(repo, branch) == [
        (
            PROD_API,
            "modified",
            [
                ("feature.checkout_v2", None, True),
                ("image.tag", "1.0.9", "1.1.0"),
                ("replicas", 6, 3),
            ],
        )
    ]
    # Promoting again onto the same HEAD finds the same work to do, on another branch only.
    again = repo.runner("promote", STAGING, PROD, "--branch", branch)
    assert (again.exit_code, again.stdout) == (3, "")
    assert again.stderr == f"error: branch {branch} exists already; pass another --branch\n"


def test_nothing_to_copy_makes_no_commit_and_bad_arguments_exit_3(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "ops")
    refs, _ = repo.snapshot_state()
    same = _ok(repo.runner("promote", STAGING, PROD, "--keys", "org,missing.key"))
    assert same.stdout == (
        f"Promote {STAGING} → {PROD}\n"
        f"  note: worker: only in {STAGING}, not promoted\n"
        f"  note: db: only in {PROD}, left as it is\n"
        f"  note: api: missing.key is not set in {STAGING}\n"
        '  note: api: org is "acme" already\n'
        "Nothing to promote: no commit made.\n"
    )
    assert repo.snapshot_state()[0] == refs

    unknown = repo.runner("promote", STAGING, "/projects/pay/environments/qa")
    assert unknown.exit_code == 3
    assert unknown.stderr.startswith(
        "error: /projects/pay/environments/qa: no such environment at HEAD"
    )
    itself = repo.runner("promote", PROD, PROD)
    assert (itself.exit_code, itself.stderr) == (
        3,
        f"error: {PROD}: source and target are the same environment\n",
    )
    bad_key = repo.runner("promote", STAGING, PROD, "--keys", "image..tag")
    assert bad_key.exit_code == 3
    assert "'image..tag' is not a dotted key" in bad_key.stderr
    assert repo.snapshot_state()[0] == refs


def test_promote_in_a_monorepo_folder_with_a_secret_as_json(tmp_path: Path) -> None:
    files = {f"ops/{path}": text for path, text in FILES.items()}
    files["ops/projects/pay/environments/staging/assets/api.yaml"] = """\
        template: web
        properties:
          image: {tag: "1.1.0"}
          token: !secret STAGING_TOKEN
        """
    files["README.md"] = "a monorepo\n"
    repo = _repo(tmp_path / "mono", files)
    head = repo.git("rev-parse", "HEAD")
    out = _ok(
        repo.runner(
            "--repo", "ops", "promote", STAGING, PROD,
            "--keys", "token,image", "--branch", "promo", "--format", "json",
        )
    ).stdout  # fmt: skip
    assert "STAGING_TOKEN" not in out
    found = json.loads(out)
    assert (found["base"], found["branch"], found["commit"]) == (
        head,
        "promo",
        repo.git("rev-parse", "promo"),
    )
    assert found["copied"] == [
        {"asset": "api", "file": PROD_API_FILE, "key": "token", "old": None, "new": "***"},
        {
            "asset": "api",
            "file": PROD_API_FILE,
            "key": "image.tag",
            "old": "1.0.9",
            "new": "1.1.0",
        },
    ]
    assert found["push"] == "git push origin promo"
    assert [(c["node"], c["change"]) for c in found["plan"]["changes"]] == [(PROD_API, "modified")]
    assert repo.git("diff", "--name-only", "HEAD", "promo") == f"ops/{PROD_API_FILE}"
    promoted = yaml.safe_load(repo.git("show", f"promo:ops/{PROD_API_FILE}").replace("!secret", ""))
    assert promoted["properties"]["token"] == "STAGING_TOKEN"
    assert "  token: !secret STAGING_TOKEN" in repo.git("show", f"promo:ops/{PROD_API_FILE}")

    markdown = _ok(
        repo.runner(
            "--repo", "ops", "promote", STAGING, PROD, "--keys", "image.tag",
            "--branch", "promo-md", "--format", "markdown",
        )
    ).stdout  # fmt: skip
    assert markdown.startswith(f"### Promote `{STAGING}` → `{PROD}`\n\n| asset | key | from | to |")
    assert '| `api` | `image.tag` | `"1.0.9"` | `"1.1.0"` |' in markdown
    assert "<!-- gitops-runner:plan -->" in markdown
