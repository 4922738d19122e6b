from __future__ import annotations

from tests.support.opsrepo import OpsRepoBuilder


def test_minimal_repo_is_valid(ops: OpsRepoBuilder) -> None:
    result = ops.runner("validate")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "valid (working tree): 1 projects, 2 environments, 3 assets, 1 templates, "
        "0 workflows, 0 schedules\n"
    )
