"""`runner apply` and friends end to end: real repos, real processes, the real state branch."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.opsrepo import MINIMAL, OpsRepoBuilder


def _repo(tmp_path: Path, template: str) -> OpsRepoBuilder:
    files = dict(MINIMAL)
    files["templates/web/template.yaml"] = template
    repo = OpsRepoBuilder(tmp_path / "ops", files)
    repo.commit("initial")
    return repo


WRITER = """\
    properties:
      replicas: 2
      image: {repository: acme/web, tag: "1.0.0"}
      out: "@OUT@"
    on_change: deploy
    actions:
      deploy:
        steps:
          - name: render
            run: >-
              echo "$RUNNER_NODE ${{ properties.image.tag }}" >> ${{ properties.out }}/log
              && echo url=http://x >> "$RUNNER_OUTPUTS"
          - name: check
            run: test -s ${{ properties.out }}/log
    """


def test_apply_runs_changes_records_them_and_a_second_apply_does_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    repo = _repo(tmp_path, WRITER.replace("@OUT@", str(out)))
    before = repo.git("status", "--porcelain")

    first = repo.runner("apply")
    assert first.exit_code == 0, first.stderr
    assert sorted((out / "log").read_text().splitlines()) == [
        "/projects/pay/environments/dev/assets/api 1.1.0",
        "/projects/pay/environments/prod/assets/api 1.0.9",
        "/projects/pay/environments/prod/assets/db 1.0.0",
    ]
    assert repo.git("status", "--porcelain") == before  # work tree and index untouched
    listed = json.loads(repo.runner("changes", "list", "--format", "json").stdout)
    assert [(c["node"], c["status"]) for c in listed] == sorted(
        [
            ("/projects/pay/environments/dev/assets/api", "success"),
            ("/projects/pay/environments/prod/assets/api", "success"),
            ("/projects/pay/environments/prod/assets/db", "success"),
        ],
        key=lambda row: [c["node"] for c in listed].index(row[0]),
    )
    outputs = repo.git("show", "runner-state:outputs/projects/pay/environments/prod/assets/db.yaml")
    assert outputs == "url: http://x"

    second = repo.runner("apply")
    assert (second.exit_code, second.stdout) == (0, "Nothing to do.\n")
    assert len((out / "log").read_text().splitlines()) == 3
    assert repo.git("fsck", "--strict") == ""


def test_recorded_outputs_show_under_the_outputs_key_and_never_move_the_digest(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    repo = _repo(tmp_path, WRITER.replace("@OUT@", str(out)))
    assert repo.runner("apply").exit_code == 0

    explained = repo.runner(
        "properties", "/projects/pay/environments/prod/assets/db", "--explain", "--format", "json"
    )
    rows = {row["key"]: row for row in json.loads(explained.stdout)}
    assert rows["outputs.url"] == {
        "key": "outputs.url",
        "value": "http://x",
        "layer": "outputs",
        "file": "state:outputs/projects/pay/environments/prod/assets/db.yaml",
        "line": 0,
    }
    plan = json.loads(repo.runner("plan", "--format", "json").stdout)
    assert plan["changes"] == []
