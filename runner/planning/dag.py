"""The step DAG: actions expanded into leaf steps, ordered inside an action and across nodes.

Only steps that run something (``run``) become graph nodes; groups and child-action steps are
expanded in place, so "B after A" means every last step of A comes before every first step of B.
Inside a step list, ``needs`` always wins; without it, ``run_as: sequential`` orders siblings as
written and ``parallel`` leaves them free. Ties break lexicographically, so the same inputs give
the same order, byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import networkx as nx

from runner.errors import InvalidInput
from runner.model import Action, Retries, Step


@dataclass(frozen=True)
class PlannedStep:
    id: str  # "<node path>:<action>/<step>[/<child step>...]"
    node: str
    action: str  # the action the node runs (child-action steps keep the top action)
    name: str  # the step's path inside that action, "smoke/probe"
    run: str
    condition: str = "success()"
    timeout: float | None = None
    retries: Retries = field(default_factory=Retries)
    env: tuple[tuple[str, str], ...] = ()


@dataclass
class Fragment:
    """Expanded steps of one action, step or group: its first and last steps."""

    steps: list[PlannedStep] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    sinks: list[str] = field(default_factory=list)


class CycleError(InvalidInput):
    def __init__(self, cycle: Sequence[str], what: str) -> None:
        text = " → ".join([*cycle, cycle[0]])
        super().__init__(f"{what} cycle: {text}")
        self.cycle = list(cycle)


def expand_action(node: str, action: str, actions: dict[str, Action]) -> Fragment:
    """All leaf steps of ``action`` on ``node``, with their edges."""
    top = actions[action]
    return _expand_list(node, action, "", top.steps, top.run_as, actions, (action,))


def _expand_list(
    node: str,
    action: str,
    prefix: str,
    steps: Sequence[Step],
    run_as: str,
    actions: dict[str, Action],
    calling: tuple[str, ...],
) -> Fragment:
    out = Fragment()
    parts: dict[str, Fragment] = {}
    for step in steps:
        part = parts[step.name] = _expand_step(
            node, action, f"{prefix}{step.name}", step, actions, calling
        )
        out.steps += part.steps
        out.edges += part.edges
    links: list[tuple[str, str]] = []  # (earlier, later) between siblings
    frontier: list[str] = []  # earlier siblings nothing later waits for yet
    for step in steps:
        if step.needs:
            before = [need.value for need in step.needs if need.value in parts]
        elif run_as == "sequential":
            before = list(frontier)  # as written: after everything above it
        else:
            before = []
        links += [(earlier, step.name) for earlier in before]
        frontier = [name for name in frontier if name not in before] + [step.name]
    for earlier, later in links:
        out.edges += [(a, b) for a in parts[earlier].sinks for b in parts[later].sources]
    waiting = {later for _, later in links}
    waited_for = {earlier for earlier, _ in links}
    for step in steps:
        if step.name not in waiting:
            out.sources += parts[step.name].sources
        if step.name not in waited_for:
            out.sinks += parts[step.name].sinks
    return out


def _expand_step(
    node: str,
    action: str,
    path: str,
    step: Step,
    actions: dict[str, Action],
    calling: tuple[str, ...],
) -> Fragment:
    if step.run is not None:
        planned = PlannedStep(
            id=f"{node}:{action}/{path}",
            node=node,
            action=action,
            name=path,
            run=step.run,
            condition=step.condition,
            timeout=step.timeout,
            retries=step.retries,
            env=step.env,
        )
        return Fragment([planned], [], [planned.id], [planned.id])
    if step.action is not None:
        child = step.action.value
        if child in calling:
            raise CycleError([*calling[calling.index(child) :]], f"{node}: child action")
        target = actions[child]
        return _expand_list(
            node, action, f"{path}/", target.steps, target.run_as, actions, (*calling, child)
        )
    return _expand_list(node, action, f"{path}/", step.steps, step.run_as, actions, calling)


# --- graphs -------------------------------------------------------------------------------------


def build_graph(fragments: Iterable[Fragment], links: Iterable[tuple[str, str]] = ()) -> nx.DiGraph:
    """Steps as nodes (attribute ``step``), "runs before" as edges."""
    graph = nx.DiGraph()
    for fragment in fragments:
        for step in fragment.steps:
            graph.add_node(step.id, step=step)
        graph.add_edges_from(fragment.edges)
    graph.add_edges_from(links)
    return graph


def check_acyclic(graph: nx.DiGraph, what: str) -> None:
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return
    raise CycleError([edge[0] for edge in cycle], what)


def nearest(
    graph: nx.DiGraph, start: str, wanted: Iterable[str] | dict[str, object], *, upstream: bool
) -> list[str]:
    """The closest nodes in ``wanted`` before (``upstream``) or after ``start``, looking through
    the others: ``top`` waits for ``db`` through a ``mid`` that has nothing to run, and prod
    waits for dev through an unchanged staging."""
    targets = set(wanted)
    step = graph.predecessors if upstream else graph.successors
    found: set[str] = set()
    seen: set[str] = set()
    stack = list(step(start)) if start in graph else []
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        if current in targets:
            found.add(current)
        else:
            stack.extend(step(current))
    return sorted(found)


def ordered(graph: nx.DiGraph) -> list[str]:
    """A topological order, ties broken lexicographically (deterministic)."""
    check_acyclic(graph, "step")
    return list(nx.lexicographical_topological_sort(graph))
