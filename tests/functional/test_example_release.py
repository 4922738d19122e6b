"""The example repo's release, end to end (the operations issue's "done when"): after a first
apply, whose production changes wait for a release manager, the release workflow runs dev,
waits at approve-prod, and finishes prod after `runner approve` and `runner reconcile`. The
example's own scripts run for real, writing under a temporary demo.out_dir."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from tests.support.opsrepo import OpsRepoBuilder, run_cli

SECRETS = {
    "RUNNER_SECRET_DB_PASSWORD": "example-db-password-123",
    "RUNNER_SECRET_PAY_GATEWAY_TOKEN": "example-gateway-token-456",
}
PROD = "/projects/pay/environments/prod/assets"


def test_the_example_release_waits_for_a_release_manager_and_finishes_after_reconcile(
    tmp_path: Path,
) -> None:
    root = tmp_path / "ops"
    assert run_cli("init", str(root), cwd=tmp_path).exit_code == 0
    repo = OpsRepoBuilder.existing(root)
    out = tmp_path / "out"
    text = (root / "properties.yaml").read_text()
    (root / "properties.yaml").write_text(text.replace("/tmp/gitops-runner-demo", str(out)))
    shutil.rmtree(root / "projects/shop")  # the release is the payments project's
    repo.commit("demo output under the test's folder; payments only")

    first = repo.runner("apply", env=SECRETS)
    assert first.exit_code == 0, first.stdout + first.stderr
    held = re.findall(r"change (\S+) on (\S+) waits for approval", first.stdout)
    assert sorted(node for _, node in held) == [f"{PROD}/api", f"{PROD}/db", f"{PROD}/worker"]
    assert not (out / PROD.strip("/") / "api").exists()
    for change, _ in held:
        assert repo.runner("approve", change, "--by", "alice", env=SECRETS).exit_code == 0
    rolled = repo.runner("reconcile", "--no-drift", env=SECRETS)
    assert rolled.exit_code == 0, rolled.stdout + rolled.stderr
    assert (out / PROD.strip("/") / "db" / "data" / "db.sqlite").exists()

    started = repo.runner("workflow", "run", "release", "--format", "json", env=SECRETS)
    assert started.exit_code == 0, started.stdout + started.stderr
    run = json.loads(started.stdout)
    assert run["status"] == "waiting"
    assert [(s["name"], s["status"]) for s in run["steps"]] == [
        ("dev", "success"),
        ("approve-prod", "waiting"),
        ("prod", "pending"),
        ("notify", "pending"),
    ]
    refused = repo.runner("approve", run["id"], "approve-prod", "--by", "mallory", env=SECRETS)
    assert refused.exit_code == 4
    approved = repo.runner("approve", run["id"], "approve-prod", "--by", "bob", env=SECRETS)
    assert approved.exit_code == 0, approved.stderr

    done = repo.runner("reconcile", "--no-drift", env=SECRETS)
    assert done.exit_code == 0, done.stdout + done.stderr
    shown = json.loads(repo.runner("runs", "show", run["id"], "--format", "json").stdout)
    assert shown["status"] == "success"
    assert [(s["name"], s["status"]) for s in shown["steps"]] == [
        ("dev", "success"),
        ("approve-prod", "success"),
        ("prod", "success"),
        ("notify", "success"),
    ]
    deployments = (out / PROD.strip("/") / "api" / "deployments.log").read_text().splitlines()
    assert len(deployments) == 2  # the first rollout, then the release
    for secret in SECRETS.values():
        assert secret not in done.stdout + done.stderr
