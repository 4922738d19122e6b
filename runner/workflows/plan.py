"""A workflow as a DAG of steps, the way ``planning.dag`` orders the steps of an action.

Only steps that do something (``change``, ``wait``, ``run``) become graph nodes. Groups and
nested ``workflow:`` steps are expanded in place, their steps named ``<group>/<child>``: "B after
A" means every last step of A comes before every first step of B. In a step list, ``needs``
always wins; without it, ``run_as: sequential`` (the default) puts a step after the steps above
it and ``parallel`` leaves it free.

Conditions (``if:``) have GitHub's meaning over the steps a step transitively comes after:
``success()`` runs when none of them failed (an error, an abort, a rejection), ``failure()`` when
one did, ``always()`` whatever happened. A group or nested workflow is a scope: its own ``if:``
decides over what comes before the group, and the conditions of the steps inside look only at
the steps inside — so an ``if: always()`` clean-up group runs its steps in order even after a
failure elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import networkx as nx

from runner.errors import InvalidArgument
from runner.loading.checks import find_workflow
from runner.loading.snapshot import Snapshot
from runner.model import Layer, Workflow, WorkflowStep
from runner.planning.dag import check_acyclic

LEAF_KINDS = frozenset({"change", "wait", "run"})


@dataclass(frozen=True)
class PlanStep:
    name: str  # the step's path
    kind: str  # change | wait | run | group | workflow
    step: WorkflowStep
    needs: tuple[str, ...]  # the steps of the same list it comes after (paths)
    parent: str | None  # the group or nested-workflow step holding it
    workflow: str  # the workflow (project/code) whose file it is written in
    layers: tuple[Layer, ...] = ()  # workflow property_overrides, lowest first
    leaves: tuple[str, ...] = ()  # groups and nested workflows: the steps below that do work
    checks: tuple[tuple[str, frozenset[str]], ...] = ()  # leaves: (condition, steps it judges)

    @property
    def is_leaf(self) -> bool:
        return self.kind in LEAF_KINDS


@dataclass
class RunPlan:
    steps: dict[str, PlanStep]  # every step, groups included, in file order
    order: list[str]  # the leaves in a deterministic topological order
    graph: nx.DiGraph  # leaves; an edge A → B: B comes after A

    def leaves(self) -> list[PlanStep]:
        return [self.steps[name] for name in self.order]

    def preds(self, name: str) -> list[str]:
        return sorted(self.graph.predecessors(name), key=self.order.index)


@dataclass
class _Fragment:
    leaves: list[str] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    sinks: list[str] = field(default_factory=list)


def resolve_workflow(snap: Snapshot, name: str) -> str:
    """The qualified name of ``release`` or ``pay/release``; exit 3 naming the candidates."""
    found = find_workflow(snap, name)
    if len(found) == 1:
        return found[0]
    if not found:
        known = ", ".join(sorted(snap.workflows)) or "none"
        raise InvalidArgument(f"unknown workflow {name!r} (workflows: {known})")
    raise InvalidArgument(f"workflow {name!r} is ambiguous: write one of {', '.join(found)}")


def build_plan(snap: Snapshot, qualified: str) -> RunPlan:
    """The DAG of workflow ``qualified`` (validated: nested workflows resolve, no cycles)."""
    builder = _Builder(snap)
    workflow = snap.workflows[qualified]
    layers = (workflow.property_overrides,) if workflow.property_overrides else ()
    top = builder.expand(workflow, "", workflow.steps, workflow.run_as, None, layers)
    graph = nx.DiGraph()
    graph.add_nodes_from(top.leaves)
    graph.add_edges_from(top.edges)
    check_acyclic(graph, "workflow step")
    position = {name: i for i, name in enumerate(builder.steps)}
    order = list(nx.lexicographical_topological_sort(graph, key=lambda n: f"{position[n]:08d}"))
    steps = builder.steps
    for name in order:
        steps[name] = _with_checks(steps, graph, name, set(top.leaves))
    return RunPlan(steps, order, graph)


class _Builder:
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.steps: dict[str, PlanStep] = {}

    def expand(
        self,
        owner: Workflow,
        prefix: str,
        steps: Sequence[WorkflowStep],
        run_as: str,
        parent: str | None,
        layers: tuple[Layer, ...],
    ) -> _Fragment:
        out = _Fragment()
        parts: dict[str, _Fragment] = {}
        before_of: dict[str, list[str]] = {}
        frontier: list[str] = []  # earlier siblings nothing later waits for yet
        for step in steps:
            if step.needs:
                before = [n.value for n in step.needs]
            elif run_as == "sequential":
                before = list(frontier)
            else:
                before = []
            before_of[step.name] = before
            frontier = [n for n in frontier if n not in before] + [step.name]
        for step in steps:
            path = f"{prefix}{step.name}"
            needs = tuple(f"{prefix}{n}" for n in before_of[step.name])
            part = parts[step.name] = self._step(owner, path, step, needs, parent, layers)
            out.leaves += part.leaves
            out.edges += part.edges
        waiting = {s.name for s in steps if before_of[s.name]}
        waited_for = {n for names in before_of.values() for n in names}
        for step in steps:
            for earlier in before_of[step.name]:
                out.edges += [
                    (a, b) for a in parts[earlier].sinks for b in parts[step.name].sources
                ]
            if step.name not in waiting:
                out.sources += parts[step.name].sources
            if step.name not in waited_for:
                out.sinks += parts[step.name].sinks
        return out

    def _step(
        self,
        owner: Workflow,
        path: str,
        step: WorkflowStep,
        needs: tuple[str, ...],
        parent: str | None,
        layers: tuple[Layer, ...],
    ) -> _Fragment:
        entry = PlanStep(path, step.kind, step, needs, parent, owner.qualified_name, layers)
        self.steps[path] = entry
        if step.kind in LEAF_KINDS:
            return _Fragment([path], [], [path], [path])
        if step.kind == "group":
            inner = self.expand(owner, f"{path}/", step.steps, step.run_as, path, layers)
        else:
            assert step.workflow is not None
            found = find_workflow(self.snap, step.workflow.value, owner.project)
            nested = self.snap.workflows[found[0]]
            own = (nested.property_overrides,) if nested.property_overrides else ()
            inner = self.expand(nested, f"{path}/", nested.steps, nested.run_as, path, own + layers)
        self.steps[path] = PlanStep(
            path, step.kind, step, needs, parent, owner.qualified_name, layers, tuple(inner.leaves)
        )
        return inner


def _with_checks(
    steps: dict[str, PlanStep], graph: nx.DiGraph, name: str, everything: set[str]
) -> PlanStep:
    """A leaf with the conditions it must pass: its own and those of the groups around it, each
    judged over the steps before it in its own scope."""
    chain = [name]
    while (parent := steps[chain[-1]].parent) is not None:
        chain.append(parent)
    chain.reverse()  # outermost first
    ancestors = nx.ancestors(graph, name)
    checks = []
    enclosing = everything
    for entry in chain:
        inside = set(steps[entry].leaves) if entry != name else {name}
        checks.append((steps[entry].step.condition, frozenset((ancestors & enclosing) - inside)))
        enclosing = inside
    leaf = steps[name]
    return PlanStep(
        leaf.name,
        leaf.kind,
        leaf.step,
        leaf.needs,
        leaf.parent,
        leaf.workflow,
        leaf.layers,
        (),
        tuple(checks),
    )
