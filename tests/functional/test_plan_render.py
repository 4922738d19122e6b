"""Plan previews and `runner graph`, through the real CLI on real git repositories.

Golden files (tests/functional/golden/) hold the plan of the example repo for a commit that bumps
one image tag in staging, in every format; commit shas are replaced by BASE_SHA and HEAD_SHA.
Regenerate them with ``UPDATE_GOLDEN=1 pytest tests/functional/test_plan_render.py`` and read the
diff before committing it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import jsonschema
import networkx as nx
import pytest

from runner.changes import PropertyChange
from runner.planning.dag import PlannedStep
from runner.planning.plan import NodePlan, Plan
from runner.render import plan_markdown
from runner.render.graph import mermaid_label
from runner.render.plan_markdown import MARKER
from tests.support.opsrepo import MINIMAL, OpsRepoBuilder, run_cli

GOLDEN = Path(__file__).parent / "golden"
SCHEMA = Path(__file__).parents[2] / "schemas" / "plan.schema.json"
STAGING_API = "projects/pay/environments/staging/assets/api.yaml"
CUT = re.compile(
    r"^> \*\*(\d+) node sections? cut to fit GitHub's comment limit; run `runner plan` locally "
    r"or see the JSON artifact for all\.\*\* The first one cut is `([^`]+)`\.$",
    re.MULTILINE,
)


def _existing(root: Path) -> OpsRepoBuilder:
    repo = OpsRepoBuilder.__new__(OpsRepoBuilder)
    repo.root = root
    return repo


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> OpsRepoBuilder:
    """`runner init`, then a commit that bumps the image tag of staging's api."""
    root = tmp_path_factory.mktemp("example") / "ops"
    created = run_cli("init", str(root), cwd=root.parent)
    assert created.exit_code == 0, created.stderr
    repo = _existing(root)
    text = (root / STAGING_API).read_text("utf-8")
    assert 'tag: "1.43.0-rc.2"' in text
    repo.write(STAGING_API, text.replace('tag: "1.43.0-rc.2"', 'tag: "1.43.0"'))
    repo.commit("staging api: 1.43.0")
    return repo


def _normalised(repo: OpsRepoBuilder, text: str) -> str:
    for rev, name in (("HEAD~1", "BASE_SHA"), ("HEAD", "HEAD_SHA")):
        sha = repo.git("rev-parse", rev)
        text = text.replace(sha, name).replace(sha[:12], name)
    return text


def _plan(repo: OpsRepoBuilder, *args: str) -> str:
    result = repo.runner("plan", *args)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def _assert_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, "utf-8")
        return
    assert path.is_file(), f"{path} is missing: run with UPDATE_GOLDEN=1 to write it"
    assert actual == path.read_text("utf-8"), f"{name} differs: UPDATE_GOLDEN=1 rewrites it"


# --- golden files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "golden"),
    [
        ("markdown", "example-bump-staging-api.md"),
        ("json", "example-bump-staging-api.json"),
        ("text", "example-bump-staging-api.txt"),
    ],
)
def test_plan_of_an_image_tag_bump_matches_the_golden_file(
    example: OpsRepoBuilder, fmt: str, golden: str
) -> None:
    out = _plan(example, "--base", "HEAD~1", "--format", fmt)
    _assert_golden(golden, _normalised(example, out))


def test_the_bump_names_exactly_that_asset_with_its_property_diff(example: OpsRepoBuilder) -> None:
    plan = json.loads(_plan(example, "--base", "HEAD~1", "--format", "json"))
    assert [c["node"] for c in plan["changes"]] == ["/projects/pay/environments/staging/assets/api"]
    assert plan["changes"][0]["properties_diff"] == [
        {
            "key": "image.tag",
            "change": "changed",
            "old": "1.43.0-rc.2",
            "new": "1.43.0",
            "layer": "asset",
            "file": STAGING_API,
            "line": 8,
        }
    ]


def test_the_markdown_starts_with_the_marker_then_the_summary_in_bold(
    example: OpsRepoBuilder,
) -> None:
    lines = _plan(example, "--base", "HEAD~1", "--format", "markdown").splitlines()
    assert lines[0] == MARKER == "<!-- gitops-runner:plan -->"
    assert lines[1] == (
        "**1 node to change in 1 project: 0 created, 1 modified, 0 deleted; 4 steps**"
    )


# --- the JSON schema ----------------------------------------------------------------------------


def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA.read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"] == "https://gitops-runner.dev/schemas/plan.schema.json"
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize(
    "args",
    [("--base", "HEAD~1"), ("--base", "HEAD"), (), ("--base", "HEAD", "--head", "HEAD~1")],
    ids=["bump", "no-changes", "everything-created", "reverse"],
)
def test_json_output_validates_against_the_plan_schema(
    example: OpsRepoBuilder, args: tuple[str, ...]
) -> None:
    plan = json.loads(_plan(example, *args, "--format", "json"))
    _validator().validate(plan)


def test_a_plan_with_deletions_and_secrets_validates_too(ops: OpsRepoBuilder) -> None:
    ops.write(
        "projects/pay/environments/dev/assets/api.yaml",
        "template: web\nproperties:\n  token: !secret API_TOKEN\n  list: [{secret: OTHER}]\n",
    )
    ops.remove("projects/pay/environments/prod/assets/db.yaml")
    ops.write("projects/pay/environments/prod/assets/api.yaml", "template: web\n")
    ops.commit("secret, delete")
    for extra in ((), ("--allow-destroy",)):
        out = _plan(ops, "--base", "HEAD~1", "--format", "json", *extra)
        _validator().validate(json.loads(out))
        assert "API_TOKEN" not in out
        assert "OTHER" not in out


# --- markdown: escaping, secrets, the cap -------------------------------------------------------


def _outside_code(markdown: str) -> str:
    return re.sub(r"(`+)(.+?)\1", "", markdown)


def _cells(row: str) -> list[str]:
    """A table row's cells, split on the pipes GitHub splits on (not ``\\|``)."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]]


def test_markdown_escapes_a_hostile_value_and_masks_secrets(ops: OpsRepoBuilder) -> None:
    ops.write(
        "projects/pay/environments/prod/assets/db.yaml",
        """\
        template: web
        properties:
          note: "a|b<script>alert(1)</script>"
          tick: "x``y`"
          password: !secret DB_PASSWORD
        """,
    )
    ops.commit("hostile")
    out = _plan(ops, "--base", "HEAD~1", "--format", "markdown")
    db = "projects/pay/environments/prod/assets/db.yaml"
    rows = {_cells(line)[0]: line for line in out.splitlines() if line.startswith("| `")}
    assert rows["`note`"] == (
        f'| `note` | — | `"a\\|b<script>alert(1)</script>"` | asset `{db}:3` |'
    )
    assert rows["`tick`"] == f'| `tick` | — | ```"x``y`"``` | asset `{db}:4` |'
    assert rows["`password`"] == f"| `password` | — | `***` | asset `{db}:5` |"
    assert all(len(_cells(row)) == 4 for row in rows.values())
    assert "<script" not in _outside_code(out)
    assert "DB_PASSWORD" not in out


def test_markdown_text_outside_values_is_escaped() -> None:
    reasons = ("a *b* <i>c</i> [x](y) | #1", "- not a list", "1. nor this", "# nor a heading")
    change = _node("/projects/p/environments/e/assets/a", reasons=reasons)
    out = plan_markdown.render(_plan_of([change]), base_source="--base x~1 <b>")
    assert "- a \\*b\\* &lt;i&gt;c&lt;/i&gt; \\[x\\](y) \\| \\#1\n" in out
    assert "- \\- not a list\n- 1\\. nor this\n- \\# nor a heading\n" in out
    assert "Base `aaaaaaaaaaaa` (--base x\\~1 &lt;b&gt;) → head `bbbbbbbbbbbb`" in out


def test_mermaid_labels_cannot_break_out_of_quotes_or_the_fence() -> None:
    assert mermaid_label('a"b <i>#1 ```') == '"a#quot;b #lt;i#gt;#35;1 #96;#96;#96;"'


def test_no_changes_is_a_short_comment_with_the_marker(example: OpsRepoBuilder) -> None:
    out = _plan(example, "--base", "HEAD", "--format", "markdown")
    assert _normalised(example, out) == (
        f"{MARKER}\n**No changes: nothing to do.**\n\n"
        "Base `HEAD_SHA` (--base HEAD) → head `HEAD_SHA`\n"
    )


def test_a_400_asset_plan_is_cut_to_fit_a_github_comment(tmp_path: Path) -> None:
    files = dict(MINIMAL)
    for i in range(400):
        files[f"projects/pay/environments/dev/assets/a{i:03d}.yaml"] = (
            f'template: web\nproperties:\n  image: {{tag: "2.0.{i}"}}\n  index: {i}\n'
        )
    repo = OpsRepoBuilder(tmp_path / "big", files)
    repo.commit("400 assets")
    out = _plan(repo, "--format", "markdown")

    assert len(out) <= 65_000
    lines = out.splitlines()
    assert lines[0] == MARKER
    assert (
        lines[1]
        == "**403 nodes to change in 1 project: 403 created, 0 modified, 0 deleted; 806 steps**"
    )
    cut = CUT.search(out)
    assert cut is not None, out[:2000]
    shown = re.findall(r"^<details><summary>\+ <code>([^<]+)</code>", out, re.MULTILINE)
    all_nodes = sorted(f"/{path[: -len('.yaml')]}" for path in files if "/assets/" in path)
    assert shown == all_nodes[: len(shown)]  # sections are dropped from the end
    assert len(shown) + int(cut.group(1)) == 403
    assert cut.group(2) == all_nodes[len(shown)]
    assert len(shown) > 10
    assert out.count("<details>") == out.count("</details>")
    assert "```mermaid" not in out  # 403 nodes: too many to draw


def _node(
    path: str,
    change: str = "modified",
    reasons: tuple[str, ...] = ("properties changed in asset x.yaml",),
    props: int = 1,
    steps: int = 2,
) -> NodePlan:
    diff = tuple(
        PropertyChange(f"key{i:03d}", "old", "value " * 10, "asset", "x.yaml", i + 1)
        for i in range(props)
    )
    ids = tuple(f"{path}:deploy/s{i}" for i in range(steps))
    return NodePlan(path, change, "deploy", bool(ids), None, reasons, diff, ids, "web")


def _plan_of(changes: list[NodePlan]) -> Plan:
    steps = tuple(
        PlannedStep(step_id, c.node, "deploy", step_id.split("/")[-1], "echo hi")
        for c in changes
        for step_id in c.steps
    )
    edges = tuple(
        sorted((c.steps[i], c.steps[i + 1]) for c in changes for i in range(len(c.steps) - 1))
    )
    return Plan("a" * 40, "b" * 40, tuple(changes), steps, edges, ())


def test_the_graph_is_dropped_before_any_node_section() -> None:
    plan = _plan_of([_node(f"/projects/p/environments/e/assets/a{i}", props=20) for i in range(3)])
    full = plan_markdown.render(plan)
    assert "```mermaid" in full
    without_graph = plan_markdown.render(plan, limit=len(full) - 1)
    assert "```mermaid" not in without_graph
    assert "Graph left out to fit GitHub's comment limit" in without_graph
    assert CUT.search(without_graph) is None
    assert without_graph.count("<details><summary>~") == 3

    tighter = plan_markdown.render(plan, limit=len(without_graph) - 1)
    assert len(tighter) <= len(without_graph) - 1
    cut = CUT.search(tighter)
    assert cut is not None
    assert cut.group(0).startswith("> **1 node section cut")
    assert tighter.count("<details><summary>~") == 2
    assert tighter.splitlines()[1] == f"**{plan.summary()}**"


def test_big_graphs_are_collapsed_to_nodes_then_left_out() -> None:
    steps = plan_markdown.render(
        _plan_of([_node(f"/projects/p/assets/a{i:02d}") for i in range(30)])
    )
    assert "**Step graph** (60 steps" in steps
    nodes = plan_markdown.render(
        _plan_of([_node(f"/projects/p/assets/a{i:02d}") for i in range(31)])
    )
    assert "**Node graph** (31 nodes, 62 steps; an arrow means “runs before”)" in nodes
    assert '  n1["~ /projects/p/assets/a00 · deploy"]' in nodes
    many = _plan_of([_node(f"/projects/p/assets/a{i:03d}", steps=0) for i in range(151)])
    none = plan_markdown.render(many, limit=10**7)
    assert "```mermaid" not in none
    assert "_No graph: 151 nodes are more than 150 to draw" in none


def test_created_nodes_collapse_their_properties_and_the_text_counts_them(
    example: OpsRepoBuilder,
) -> None:
    markdown = _plan(example, "--base", "HEAD", "--head", "HEAD", "--format", "markdown")
    assert "nothing to do" in markdown
    everything = _plan(example, "--format", "markdown")
    assert "<details><summary>33 properties</summary>" in everything
    text = _plan(example)
    assert "\n    33 properties\n" in text
    assert "cors.allow_credentials" not in text  # a created node's leaves are not listed


def test_plans_are_byte_identical_across_runs(example: OpsRepoBuilder) -> None:
    for fmt in ("markdown", "json", "text"):
        first = example.runner("plan", "--format", fmt, env={"PYTHONHASHSEED": "1"})
        second = example.runner("plan", "--format", fmt, env={"PYTHONHASHSEED": "2"})
        assert first.exit_code == second.exit_code == 0, first.stderr
        assert first.stdout == second.stdout


# --- runner graph -------------------------------------------------------------------------------


def _graph(repo: OpsRepoBuilder, *args: str) -> str:
    result = repo.runner("graph", *args)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_graph_json_lists_every_node_and_the_dependency_edges(example: OpsRepoBuilder) -> None:
    data = json.loads(_graph(example, "--format", "json"))
    assert set(data) == {"nodes", "edges"}
    assert data["nodes"] == sorted(data["nodes"])
    assert len(data["nodes"]) == 2 + 6 + 16
    assert data["edges"] == sorted(data["edges"])
    pay = "/projects/pay/environments"
    for edge in (
        [f"{pay}/staging/assets/db", f"{pay}/staging/assets/api"],
        [f"{pay}/dev", f"{pay}/staging"],
        [f"{pay}/staging", f"{pay}/prod"],
        ["/projects/shop/environments/prod/assets/frontend", "/projects/shop/assets/cdn"],
    ):
        assert edge in data["edges"]
    assert nx.is_directed_acyclic_graph(nx.DiGraph(data["edges"]))


def test_graph_mermaid_matches_the_golden_file_and_agrees_with_json(
    example: OpsRepoBuilder,
) -> None:
    drawn = _graph(example)
    _assert_golden("example-graph.mmd", drawn)
    data = json.loads(_graph(example, "--format", "json"))
    assert drawn.startswith("flowchart LR\n")
    assert drawn.count(" --> ") == len(data["edges"])
    assert '  n1(["/projects/pay"])' in drawn
    assert '  n2("/projects/pay/environments/dev")' in drawn


def test_graph_dot_has_every_node_and_edge(example: OpsRepoBuilder) -> None:
    drawn = _graph(example, "--format", "dot")
    data = json.loads(_graph(example, "--format", "json"))
    assert drawn.startswith("digraph runner {\n")
    assert drawn.endswith("}\n")
    for node in data["nodes"]:
        assert f'"{node}" [shape=' in drawn
    for before, after in data["edges"]:
        assert f'  "{before}" -> "{after}";' in drawn


def test_graph_steps_links_actions_across_nodes(example: OpsRepoBuilder) -> None:
    data = json.loads(_graph(example, "--steps", "--format", "json"))
    staging = "/projects/pay/environments/staging/assets"
    assert f"{staging}/api:deploy/render-config" in data["nodes"]
    assert [f"{staging}/api:deploy/render-config", f"{staging}/api:deploy/migrate"] in data["edges"]
    # api depends_on db: db's last step comes before api's first
    assert [f"{staging}/db:provision/page-oncall", f"{staging}/api:deploy/render-config"] in (
        data["edges"]
    )
    graph = nx.DiGraph(data["edges"])
    assert nx.is_directed_acyclic_graph(graph)
    plan = json.loads(_plan(example, "--base", "HEAD~1", "--format", "json"))
    assert {s["id"] for s in plan["steps"]} <= set(data["nodes"])
    mermaid = _graph(example, "--steps")
    assert '  subgraph g1["/projects/pay/environments/dev/assets/api"]' in mermaid
    assert '    s1["deploy/render-config"]' in mermaid
    dot = _graph(example, "--steps", "--format", "dot")
    assert f'"{staging}/api:deploy/render-config" [label="deploy/render-config"];' in dot


def test_graph_reads_a_revision_and_refuses_an_invalid_repo(ops: OpsRepoBuilder) -> None:
    ops.write("projects/pay/environments/prod/assets/db.yaml", "template: nope\n")
    ops.commit("broken")
    broken = ops.runner("graph")
    assert broken.exit_code == 3
    assert broken.stderr.startswith(
        "projects/pay/environments/prod/assets/db.yaml:1: unknown template 'nope'"
    )
    earlier = json.loads(_graph(ops, "--rev", "HEAD~1", "--format", "json"))
    assert [
        "/projects/pay/environments/prod/assets/db",
        "/projects/pay/environments/prod/assets/api",
    ] in earlier["edges"]
