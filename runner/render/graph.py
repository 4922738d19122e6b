"""DAGs for ``runner graph`` and the plan's PR comment: built from a snapshot, drawn as text.

An edge ``[a, b]`` reads "a runs before b", the way ``runner plan`` orders its work: an asset comes
after what it ``depends_on``, an environment after the environments it ``depends_on``, and (with
``--steps``) a step after the steps it waits for, inside an action and across nodes.

Building is pure (snapshot in, ``Dag`` out); drawing is a pure string builder. Mermaid ids are
sanitised (``n1``, ``s12``) and labels quoted and escaped, so no name or value can break the
diagram or the markdown fence around it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import networkx as nx

from runner.loading.checks import resolve_dependency
from runner.loading.snapshot import Snapshot
from runner.model import Asset
from runner.planning.dag import (
    Fragment,
    PlannedStep,
    build_graph,
    check_acyclic,
    expand_action,
    nearest,
    ordered,
)
from runner.planning.plan import asset_order

PROJECT, ENVIRONMENT, ASSET, STEP = "project", "environment", "asset", "step"


@dataclass(frozen=True)
class Vertex:
    id: str  # a node path, or a step id ("<node path>:<action>/<step>")
    label: str
    kind: str  # project | environment | asset | step
    group: str | None = None  # steps: the node path they belong to


@dataclass(frozen=True)
class Dag:
    vertices: tuple[Vertex, ...]  # nodes sorted by path; steps in execution order
    edges: tuple[tuple[str, str], ...]  # "runs before", sorted

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(v.id for v in self.vertices)

    def reduced(self) -> Dag:
        """The same order with fewer arrows: an edge implied by a longer path is left out."""
        graph = nx.DiGraph()
        graph.add_nodes_from(self.ids)
        graph.add_edges_from(self.edges)
        return Dag(self.vertices, tuple(sorted(nx.transitive_reduction(graph).edges)))


# --- building -----------------------------------------------------------------------------------


def kind_of(path: str) -> str:
    parts = path.strip("/").split("/")
    if len(parts) <= 2:
        return PROJECT
    if parts[-2] == "assets":
        return ASSET
    return ENVIRONMENT


def nodes_dag(paths: Iterable[str], edges: Iterable[tuple[str, str]]) -> Dag:
    """Node paths and "runs before" edges between them, sorted."""
    vertices = tuple(Vertex(p, p, kind_of(p)) for p in sorted(set(paths)))
    return Dag(vertices, tuple(sorted(set(edges))))


def steps_dag(steps: Iterable[PlannedStep], edges: Iterable[tuple[str, str]]) -> Dag:
    """Steps (in the order given: execution order reads best) grouped by their node, labelled
    by their path inside the action."""
    vertices = tuple(Vertex(s.id, step_label(s), STEP, s.node) for s in steps)
    return Dag(vertices, tuple(sorted(set(edges))))


def step_label(step: PlannedStep) -> str:
    label = f"{step.action}/{step.name}"
    return label if step.condition == "success()" else f"{label} (if {step.condition})"


def node_graph(snap: Snapshot) -> Dag:
    """Every project, environment and asset; edges from asset and environment ``depends_on``."""
    edges: list[tuple[str, str]] = []
    for path, asset in sorted(snap.assets.items()):
        edges += [(resolve_dependency(snap, asset, dep.value), path) for dep in asset.depends_on]
    for path, env in sorted(snap.environments.items()):
        edges += [
            (f"/projects/{env.project}/environments/{dep.value}", path) for dep in env.depends_on
        ]
    graph = nx.DiGraph(edges)
    check_acyclic(graph, "node")
    return nodes_dag(snap.node_paths(), edges)


def step_graph(snap: Snapshot) -> Dag:
    """The steps of every asset's ``on_change`` action, linked across assets in plan order.

    An asset whose template has no ``on_change`` has no steps; the assets around it still keep
    their order through it.
    """
    fragments = {
        path: fragment
        for path, asset in sorted(snap.assets.items())
        if (fragment := _change_fragment(snap, asset)) is not None
    }
    order = asset_order(snap)
    links = [
        (sink, source)
        for after in sorted(fragments)
        for before in nearest(order, after, fragments, upstream=True)
        for sink in fragments[before].sinks
        for source in fragments[after].sources
    ]
    graph = build_graph(fragments.values(), links)
    steps = [graph.nodes[step_id]["step"] for step_id in ordered(graph)]
    return steps_dag(steps, graph.edges)


def _change_fragment(snap: Snapshot, asset: Asset) -> Fragment | None:
    template = snap.template_of(asset)
    ref = template.action_for("change") if template is not None else None
    if ref is None:
        return None
    actions = snap.actions_of(asset)
    if ref.value not in actions:
        return None
    return expand_action(asset.path, ref.value, actions)


# --- drawing ------------------------------------------------------------------------------------


def mermaid_label(text: str) -> str:
    """A quoted mermaid label: entity codes for what mermaid, HTML or the fence would read."""
    out = text.replace("\r", " ").replace("\n", " ").replace("#", "#35;")
    for char, code in (('"', "#quot;"), ("<", "#lt;"), (">", "#gt;"), ("`", "#96;")):
        out = out.replace(char, code)
    return f'"{out}"'


_SHAPES = {PROJECT: ('(["', '"])'), ENVIRONMENT: ('("', '")'), ASSET: ('["', '"]')}


def mermaid(dag: Dag, direction: str = "LR") -> str:
    """A ``flowchart``; steps are grouped in one subgraph per node."""
    lines = [f"flowchart {direction}"]
    ids: dict[str, str] = {}
    steps = [v for v in dag.vertices if v.kind == STEP]
    others = [v for v in dag.vertices if v.kind != STEP]
    for i, vertex in enumerate(others, 1):
        ids[vertex.id] = f"n{i}"
        opening, closing = _SHAPES[vertex.kind]
        label = mermaid_label(vertex.label)[1:-1]
        lines.append(f"  n{i}{opening}{label}{closing}")
    groups: dict[str, list[Vertex]] = {}
    for vertex in steps:
        groups.setdefault(vertex.group or "", []).append(vertex)
    number = 0
    for g, (group, members) in enumerate(sorted(groups.items()), 1):
        lines.append(f"  subgraph g{g}[{mermaid_label(group)}]")
        for vertex in members:
            number += 1
            ids[vertex.id] = f"s{number}"
            lines.append(f"    s{number}[{mermaid_label(vertex.label)}]")
        lines.append("  end")
    position = {vertex_id: i for i, vertex_id in enumerate(ids)}
    edges = sorted(
        (position[a], position[b], ids[a], ids[b]) for a, b in dag.edges if a in ids and b in ids
    )
    lines.extend(f"  {a} --> {b}" for _, _, a, b in edges)
    return "\n".join(lines) + "\n"


def _dot_id(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


_DOT_SHAPES = {PROJECT: "tab", ENVIRONMENT: "folder", ASSET: "box", STEP: "box"}


def dot(dag: Dag, direction: str = "LR") -> str:
    """Graphviz: node paths and step ids as ids; steps in one cluster per node."""
    lines = ["digraph runner {", f"  rankdir={direction};", "  node [shape=box];"]
    groups: dict[str, list[Vertex]] = {}
    for vertex in dag.vertices:
        if vertex.kind == STEP:
            groups.setdefault(vertex.group or "", []).append(vertex)
        else:
            lines.append(f"  {_dot_id(vertex.id)} [shape={_DOT_SHAPES[vertex.kind]}];")
    for g, (group, members) in enumerate(sorted(groups.items()), 1):
        lines.append(f"  subgraph cluster_{g} {{")
        lines.append(f"    label={_dot_id(group)};")
        lines.extend(
            f"    {_dot_id(vertex.id)} [label={_dot_id(vertex.label)}];" for vertex in members
        )
        lines.append("  }")
    lines.extend(f"  {_dot_id(a)} -> {_dot_id(b)};" for a, b in dag.edges)
    lines.append("}")
    return "\n".join(lines) + "\n"


def as_json(dag: Dag) -> str:
    body = {"nodes": sorted(dag.ids), "edges": [list(edge) for edge in dag.edges]}
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"


def render(dag: Dag, fmt: str) -> str:
    if fmt == "json":
        return as_json(dag)
    if fmt == "dot":
        return dot(dag)
    return mermaid(dag)
