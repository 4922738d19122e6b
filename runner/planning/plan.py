"""A plan: the nodes that changed between two commits, the action each gets, and the step DAG.

``build_plan`` is pure: snapshots in, a Plan out. Nothing from the repository runs.
Cross-node order: an asset waits for the assets it ``depends_on``; assets of an environment wait
for the assets of the environments it ``depends_on`` (transitively, within the plan). Deleted
nodes are destroyed the other way round: dependants first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import networkx as nx

from runner.changes import CREATED, DELETED, Inputs, NodeDiff, PropertyChange, changed_nodes
from runner.loading.checks import resolve_dependency
from runner.loading.snapshot import Snapshot
from runner.planning.dag import (
    Fragment,
    PlannedStep,
    build_graph,
    check_acyclic,
    expand_action,
    nearest,
)

PLAN_FORMAT_VERSION = 1


@dataclass(frozen=True)
class NodePlan:
    node: str
    change: str  # created | modified | deleted
    action: str | None
    runs: bool
    note: str | None  # why nothing runs, when nothing does
    reasons: tuple[str, ...]
    properties_diff: tuple[PropertyChange, ...]
    steps: tuple[str, ...]  # step ids, in plan order
    template: str | None

    @property
    def project(self) -> str:
        return self.node.split("/")[2]


@dataclass(frozen=True)
class Plan:
    base: str | None
    head: str | None
    changes: tuple[NodePlan, ...]
    steps: tuple[PlannedStep, ...]  # in execution order (lexicographic topological)
    edges: tuple[tuple[str, str], ...]  # step "runs before" edges, sorted
    node_edges: tuple[tuple[str, str], ...]  # node "runs before" edges, sorted
    allow_destroy: bool = False

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def count(self, change: str) -> int:
        return sum(1 for c in self.changes if c.change == change)

    def summary(self) -> str:
        projects = {c.project for c in self.changes}
        nodes = len(self.changes)
        if not nodes:
            return "No changes: nothing to do."
        return (
            f"{nodes} node{'s' if nodes != 1 else ''} to change in {len(projects)} "
            f"project{'s' if len(projects) != 1 else ''}: {self.count('created')} created, "
            f"{self.count('modified')} modified, {self.count('deleted')} deleted; "
            f"{len(self.steps)} step{'s' if len(self.steps) != 1 else ''}"
        )


def matches(path: str, patterns: Iterable[str]) -> bool:
    """``PATH%`` matches by prefix (OpsChain's trailing ``%``); a plain path matches itself and
    every node below it."""
    for pattern in patterns:
        if pattern.endswith("%"):
            if path.startswith(pattern[:-1]):
                return True
        elif path == pattern.rstrip("/") or path.startswith(pattern.rstrip("/") + "/"):
            return True
    return False


def build_plan(
    base: Snapshot | None,
    head: Snapshot,
    *,
    allow_destroy: bool = False,
    targets: tuple[str, ...] = (),
    excludes: tuple[str, ...] = (),
    base_inputs: Inputs | None = None,
    head_inputs: Inputs | None = None,
) -> Plan:
    head_inputs = head_inputs or Inputs(head)
    if base is not None:
        base_inputs = base_inputs or Inputs(base)
    diffs = [
        d
        for d in changed_nodes(base_inputs if base is not None else None, head_inputs)
        if (not targets or matches(d.node, targets)) and not matches(d.node, excludes)
    ]
    fragments: dict[str, Fragment] = {}
    plans: list[NodePlan] = []
    for diff in diffs:
        snap = base if diff.change == DELETED else head
        assert snap is not None
        node_plan, fragment = _plan_node(snap, diff, allow_destroy)
        plans.append(node_plan)
        if fragment is not None:
            fragments[diff.node] = fragment

    node_graph = _node_graph(base, head, diffs)
    graph, order = link_fragments(node_graph, fragments)
    position = {step_id: i for i, step_id in enumerate(order)}
    steps = tuple(graph.nodes[step_id]["step"] for step_id in order)
    final = tuple(
        _with_steps(p, fragments.get(p.node), position) for p in sorted(plans, key=lambda p: p.node)
    )
    return Plan(
        base=base.commit if base is not None else None,
        head=head.commit,
        changes=final,
        steps=steps,
        edges=tuple(sorted(graph.edges)),
        node_edges=tuple(sorted(node_graph.edges)),
        allow_destroy=allow_destroy,
    )


def link_fragments(
    node_graph: nx.DiGraph, fragments: dict[str, Fragment]
) -> tuple[nx.DiGraph, list[str]]:
    """The step DAG of several nodes' actions: a node's first steps wait for the last steps of
    the nearest nodes before it that run something. Returns it with its execution order."""
    check_acyclic(node_graph, "node")
    links = [
        (sink, source)
        for after in sorted(fragments)
        for before in nearest(node_graph, after, fragments, upstream=True)
        for sink in fragments[before].sinks
        for source in fragments[after].sources
    ]
    graph = build_graph(fragments.values(), links)
    check_acyclic(graph, "step")
    return graph, list(nx.lexicographical_topological_sort(graph))


def _with_steps(plan: NodePlan, fragment: Fragment | None, position: dict[str, int]) -> NodePlan:
    if fragment is None:
        return plan
    ids = tuple(sorted((s.id for s in fragment.steps), key=position.__getitem__))
    return NodePlan(
        node=plan.node,
        change=plan.change,
        action=plan.action,
        runs=plan.runs,
        note=plan.note,
        reasons=plan.reasons,
        properties_diff=plan.properties_diff,
        steps=ids,
        template=plan.template,
    )


def _plan_node(
    snap: Snapshot, diff: NodeDiff, allow_destroy: bool
) -> tuple[NodePlan, Fragment | None]:
    asset = snap.assets[diff.node]
    template = snap.template_of(asset)
    event = {"created": "create", "modified": "change", "deleted": "delete"}[diff.change]
    action_ref = template.action_for(event) if template is not None else None
    action = action_ref.value if action_ref is not None else None
    note: str | None = None
    fragment: Fragment | None = None
    if action is None:
        key = {"create": "on_create or on_change", "change": "on_change", "delete": "on_delete"}[
            event
        ]
        note = f"nothing to run: template {template.label if template else '?'} has no {key}"
    elif diff.change == DELETED and not allow_destroy:
        note = f"{action} runs only with --allow-destroy"
    else:
        fragment = expand_action(diff.node, action, snap.actions_of(asset))
    plan = NodePlan(
        node=diff.node,
        change=diff.change,
        action=action,
        runs=fragment is not None,
        note=note,
        reasons=diff.reasons,
        properties_diff=diff.properties,
        steps=(),
        template=template.label if template is not None else None,
    )
    return plan, fragment


def asset_order(snap: Snapshot, nodes: set[str] | None = None) -> nx.DiGraph:
    """Assets (all, or ``nodes``) with "runs before" edges as a plan orders them."""
    graph = nx.DiGraph()
    chosen = set(snap.assets) if nodes is None else nodes
    graph.add_nodes_from(sorted(chosen))
    _order_edges(graph, snap, chosen, reverse=False)
    return graph


def _node_graph(base: Snapshot | None, head: Snapshot, diffs: list[NodeDiff]) -> nx.DiGraph:
    """Edges "before → after" between the plan's nodes."""
    graph = nx.DiGraph()
    live = {d.node for d in diffs if d.change != DELETED}
    dead = {d.node for d in diffs if d.change == DELETED}
    graph.add_nodes_from(sorted(live | dead))
    _order_edges(graph, head, live, reverse=False)
    if base is not None and dead:
        _order_edges(graph, base, dead, reverse=True)
    return graph


def _order_edges(graph: nx.DiGraph, snap: Snapshot, nodes: set[str], reverse: bool) -> None:
    def add(before: str, after: str) -> None:
        if reverse:
            before, after = after, before
        graph.add_edge(before, after)

    for path in sorted(nodes):
        asset = snap.assets[path]
        for dep in asset.depends_on:
            target = resolve_dependency(snap, asset, dep.value)
            if target in nodes:
                add(target, path)
            elif target.rstrip("/").split("/")[-2:-1] != ["assets"]:
                # an environment or project: every changed asset below it
                for other in sorted(n for n in nodes if n.startswith(target.rstrip("/") + "/")):
                    if other != path:
                        add(other, path)
    env_graph = nx.DiGraph()
    for env in snap.environments.values():
        env_graph.add_node(env.path)
        for dep in env.depends_on:
            env_graph.add_edge(env.path, f"/projects/{env.project}/environments/{dep.value}")
    by_env: dict[str, list[str]] = {}
    for path in sorted(nodes):
        parent = snap.assets[path].parent_path
        by_env.setdefault(parent, []).append(path)
    for env_path, members in sorted(by_env.items()):
        for upstream in nearest(env_graph, env_path, by_env, upstream=False):
            for before in by_env[upstream]:
                for after in members:
                    add(before, after)


__all__ = [
    "CREATED",
    "PLAN_FORMAT_VERSION",
    "NodePlan",
    "Plan",
    "asset_order",
    "build_plan",
    "link_fragments",
    "matches",
]
