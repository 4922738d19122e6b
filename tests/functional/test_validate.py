from __future__ import annotations

from tests.support.opsrepo import OpsRepoBuilder


def test_minimal_repo_is_valid(ops: OpsRepoBuilder) -> None:
    result = ops.runner("validate")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "valid (working tree): 1 projects, 2 environments, 3 assets, 1 templates, "
        "0 workflows, 0 schedules\n"
    )


def test_a_commit_found_valid_is_checked_again_when_a_pinned_tag_moves(
    ops: OpsRepoBuilder,
) -> None:
    """Validity is remembered per content (the ops tree and the commits pinned versions resolve
    to), so a moved tag is never hidden by a commit that passed before."""
    template = (ops.root / "templates/web/template.yaml").read_text()
    ops.git("tag", "web-v1")
    pinned = template + "versions:\n  v1: {rev: web-v1}\n"
    ops.write("templates/web/template.yaml", pinned)
    ops.write(
        "projects/pay/environments/prod/assets/api.yaml",
        "template: web@v1\ndepends_on: [db]\nproperties:\n  image: {tag: '1.0.9'}\n",
    )
    head = ops.commit("prod api on web@v1")
    for _ in range(2):  # the second answer comes from the remembered result
        again = ops.runner("validate", "--rev", head)
        assert again.exit_code == 0, again.stderr

    ops.write(
        "templates/web/template.yaml", template.replace("on_change: deploy", "on_change: nope")
    )
    broken = ops.commit("a template with an unknown action")
    ops.git("tag", "-f", "web-v1", broken)
    ops.git("checkout", "-q", head)
    moved = ops.runner("validate", "--rev", head)
    assert moved.exit_code == 3, moved.stdout
    assert "version v1: unknown action 'nope'" in moved.stderr
