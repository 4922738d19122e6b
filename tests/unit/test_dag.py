"""The step DAG: expanding actions into leaf steps, ordering them, and refusing cycles.

"Runs before" means a path in the graph (what the executor honours), hence also an earlier place
in ``ordered``: the checks below ask for both.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import replace

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.model import Action, Pos, Ref, Retries, Step
from runner.planning.dag import (
    CycleError,
    Fragment,
    build_graph,
    check_acyclic,
    expand_action,
    ordered,
)

NODE = "/projects/pay/environments/dev/assets/api"
POS = Pos("templates/web/template.yaml", 1)
TOP = "deploy"  # the action every generated node runs
CHILD = "probe"  # the action its child-action steps run


def ref(name: str) -> Ref:
    return Ref(name, POS)


def run(name: str, *needs: str) -> Step:
    return Step(name=name, pos=POS, run=f"echo {name}", needs=tuple(ref(n) for n in needs))


def group(name: str, run_as: str, *steps: Step, needs: Sequence[str] = ()) -> Step:
    return Step(name=name, pos=POS, steps=steps, run_as=run_as, needs=tuple(ref(n) for n in needs))


def call(name: str, action: str, *needs: str) -> Step:
    return Step(name=name, pos=POS, action=ref(action), needs=tuple(ref(n) for n in needs))


def action(name: str, *steps: Step, run_as: str = "sequential") -> Action:
    return Action(name=name, pos=POS, steps=steps, run_as=run_as)


def sid(path: str) -> str:
    """The id of the leaf step at ``path`` of the top action on the test node."""
    return f"{NODE}:{TOP}/{path}"


def expand(*actions: Action) -> tuple[Fragment, nx.DiGraph, list[str]]:
    """The first action expanded on the test node, its graph and its order."""
    fragment = expand_action(NODE, actions[0].name, {a.name: a for a in actions})
    graph = build_graph([fragment])
    return fragment, graph, ordered(graph)


def runs_before(
    graph: nx.DiGraph, order: list[str], earlier: Sequence[str], later: Sequence[str]
) -> bool:
    """Every step of ``earlier`` comes before every step of ``later``: by a path in the graph,
    and so also in the order."""
    place = {step: i for i, step in enumerate(order)}
    return all(
        b in nx.descendants(graph, a) and place[a] < place[b] for a in earlier for b in later
    )


def unordered(graph: nx.DiGraph, these: Sequence[str], those: Sequence[str]) -> bool:
    """No step of ``these`` is bound to run before or after any step of ``those``."""
    return not any(
        nx.has_path(graph, a, b) or nx.has_path(graph, b, a) for a in these for b in those
    )


# --- expand_action, by example ----------------------------------------------------------------


def test_a_sequential_action_runs_its_steps_as_written() -> None:
    fragment, graph, order = expand(action(TOP, run("render"), run("rollout"), run("record")))
    assert order == [sid("render"), sid("rollout"), sid("record")]
    assert sorted(graph.edges) == [
        (sid("render"), sid("rollout")),
        (sid("rollout"), sid("record")),
    ]
    assert (fragment.sources, fragment.sinks) == ([sid("render")], [sid("record")])


def test_a_parallel_action_leaves_its_steps_free_and_breaks_ties_by_name() -> None:
    fragment, graph, order = expand(
        action(TOP, run("probe-b"), run("probe-c"), run("probe-a"), run_as="parallel")
    )
    assert list(graph.edges) == []
    assert order == [sid("probe-a"), sid("probe-b"), sid("probe-c")]
    assert fragment.sources == fragment.sinks == [sid("probe-b"), sid("probe-c"), sid("probe-a")]


def test_needs_orders_steps_of_a_parallel_action() -> None:
    _, graph, order = expand(action(TOP, run("b", "a"), run("a"), run_as="parallel"))
    assert sorted(graph.edges) == [(sid("a"), sid("b"))]
    assert order == [sid("a"), sid("b")]


def test_needs_wins_over_sequential() -> None:
    """``publish`` names what it waits for: ``build`` only, not ``test`` written before it."""
    fragment, graph, _ = expand(action(TOP, run("build"), run("test"), run("publish", "build")))
    assert sorted(graph.edges) == [
        (sid("build"), sid("publish")),
        (sid("build"), sid("test")),
    ]
    assert unordered(graph, [sid("test")], [sid("publish")])
    assert fragment.sinks == [sid("test"), sid("publish")]


def test_a_step_without_needs_in_a_sequential_action_waits_for_every_step_written_before_it() -> (
    None
):
    """``announce`` has no ``needs``, so ``run_as: sequential`` orders it as written: after
    ``test`` too, even though ``publish`` in between chose to wait for ``build`` only."""
    _, graph, order = expand(
        action(TOP, run("build"), run("test"), run("publish", "build"), run("announce"))
    )
    assert runs_before(graph, order, [sid("publish")], [sid("announce")])
    assert runs_before(graph, order, [sid("test")], [sid("announce")])


def test_a_child_action_expands_in_place_under_the_step_that_calls_it() -> None:
    deploy = action(TOP, run("render"), call("smoke", "smoke-test"), run("notify"))
    smoke_test = action("smoke-test", run("probe"), run("report"))
    fragment, graph, order = expand(deploy, smoke_test)
    assert order == [sid("render"), sid("smoke/probe"), sid("smoke/report"), sid("notify")]
    assert sid("smoke/probe") == f"{NODE}:deploy/smoke/probe"
    probe = graph.nodes[sid("smoke/probe")]["step"]
    assert (probe.node, probe.action, probe.name, probe.run) == (
        NODE,
        "deploy",
        "smoke/probe",
        "echo probe",
    )
    assert (fragment.sources, fragment.sinks) == ([sid("render")], [sid("notify")])


def test_a_parallel_group_fans_out_and_joins_inside_a_sequential_action() -> None:
    fragment, graph, order = expand(
        action(
            TOP,
            run("prepare"),
            group("rollout", "parallel", run("us"), run("eu")),
            run("verify"),
        )
    )
    assert sorted(graph.edges) == [
        (sid("prepare"), sid("rollout/eu")),
        (sid("prepare"), sid("rollout/us")),
        (sid("rollout/eu"), sid("verify")),
        (sid("rollout/us"), sid("verify")),
    ]
    assert order == [sid("prepare"), sid("rollout/eu"), sid("rollout/us"), sid("verify")]
    assert (fragment.sources, fragment.sinks) == ([sid("prepare")], [sid("verify")])


def test_a_group_that_needs_a_sibling_waits_for_all_of_it() -> None:
    _, graph, order = expand(
        action(
            TOP,
            group("build", "parallel", run("amd64"), run("arm64")),
            group("ship", "sequential", run("push"), run("tag"), needs=["build"]),
            run_as="parallel",
        )
    )
    assert runs_before(
        graph,
        order,
        [sid("build/amd64"), sid("build/arm64")],
        [sid("ship/push"), sid("ship/tag")],
    )
    assert unordered(graph, [sid("build/amd64")], [sid("build/arm64")])


def test_planned_steps_keep_what_their_step_says_about_running() -> None:
    step = Step(
        name="rollout",
        pos=POS,
        run="kubectl apply",
        condition="always()",
        timeout=300.0,
        retries=Retries(attempts=3, backoff=1.0),
        env=(("REGION", "eu"),),
    )
    fragment, _, _ = expand(action(TOP, step))
    [planned] = fragment.steps
    assert (planned.condition, planned.timeout, planned.retries, planned.env) == (
        "always()",
        300.0,
        Retries(attempts=3, backoff=1.0),
        (("REGION", "eu"),),
    )


def test_a_child_action_that_calls_its_caller_is_a_cycle() -> None:
    deploy = action(TOP, run("render"), call("verify", "healthcheck"))
    healthcheck = action("healthcheck", run("probe"), call("again", TOP))
    with pytest.raises(CycleError) as caught:
        expand(deploy, healthcheck)
    assert caught.value.cycle == ["deploy", "healthcheck"]
    assert str(caught.value) == f"{NODE}: child action cycle: deploy → healthcheck → deploy"


def test_an_action_that_calls_itself_from_inside_a_group_is_a_cycle() -> None:
    deploy = action(TOP, group("inner", "parallel", run("a"), call("loop", TOP)))
    with pytest.raises(CycleError) as caught:
        expand(deploy)
    assert caught.value.cycle == ["deploy"]


def test_an_action_may_call_the_same_child_twice() -> None:
    deploy = action(TOP, call("before", CHILD), run("rollout"), call("after", CHILD))
    _, _, order = expand(deploy, action(CHILD, run("check")))
    assert order == [sid("before/check"), sid("rollout"), sid("after/check")]


# --- ordered and check_acyclic, by example -------------------------------------------------------


def test_a_cycle_names_its_members_in_order() -> None:
    graph = nx.DiGraph([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])
    with pytest.raises(CycleError) as caught:
        check_acyclic(graph, "step")
    cycle = caught.value.cycle
    assert sorted(cycle) == ["a", "b", "c"]
    assert str(caught.value) == f"step cycle: {' → '.join([*cycle, cycle[0]])}"


def test_ordered_refuses_a_cyclic_graph() -> None:
    with pytest.raises(CycleError):
        ordered(nx.DiGraph([("a", "b"), ("b", "a")]))


# --- random graphs ------------------------------------------------------------------------------

LABELS = [f"{NODE}:deploy/step-{i}" for i in range(30)]


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[str], list[tuple[str, str]]]:
    """Up to 30 nodes with labels in random order, edges only from lower to higher index."""
    n = draw(st.integers(1, 30))
    labels = draw(st.permutations(LABELS))[:n]
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=60)) if pairs else []
    return labels, [(labels[i], labels[j]) for i, j in chosen]


@st.composite
def cyclic_graphs(draw: st.DrawFn) -> nx.DiGraph:
    """A random DAG plus a path of new forward edges closed by one back edge (a self-loop when
    the path has one node)."""
    labels, edges = draw(dags())
    indexes = draw(st.lists(st.integers(0, len(labels) - 1), min_size=1, unique=True))
    path = [labels[i] for i in sorted(indexes)]
    graph = nx.DiGraph(edges)
    graph.add_nodes_from(labels)
    graph.add_edges_from(itertools.pairwise(path))
    graph.add_edge(path[-1], path[0])
    return graph


def dag(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from(edges)
    return graph


@settings(max_examples=300, deadline=None)
@given(dags())
def test_ordered_lists_every_node_once_and_respects_every_edge(
    drawn: tuple[list[str], list[tuple[str, str]]],
) -> None:
    labels, edges = drawn
    order = ordered(dag(labels, edges))
    assert sorted(order) == sorted(labels)
    place = {node: i for i, node in enumerate(order)}
    assert all(place[a] < place[b] for a, b in edges)


@settings(max_examples=300, deadline=None)
@given(cyclic_graphs())
def test_a_cycle_found_is_a_real_cycle_of_the_graph(graph: nx.DiGraph) -> None:
    with pytest.raises(CycleError) as caught:
        check_acyclic(graph, "step")
    cycle = caught.value.cycle
    assert cycle
    assert len(set(cycle)) == len(cycle)
    assert all(graph.has_edge(a, b) for a, b in zip(cycle, [*cycle[1:], cycle[0]], strict=True))


@settings(max_examples=200, deadline=None)
@given(dags(), st.data())
def test_ordered_is_the_same_whatever_order_the_graph_was_built_in(
    drawn: tuple[list[str], list[tuple[str, str]]], data: st.DataObject
) -> None:
    labels, edges = drawn
    other = dag(data.draw(st.permutations(labels)), data.draw(st.permutations(edges)))
    assert ordered(other) == ordered(dag(labels, edges))


# --- random actions -----------------------------------------------------------------------------

RUN_AS = st.sampled_from(["sequential", "parallel"])


@st.composite
def step_lists(
    draw: st.DrawFn, names: Iterator[str], depth: int, child: str | None
) -> tuple[Step, ...]:
    """1-4 sibling steps named from ``names``: runs, groups (down to depth 2) and, when ``child``
    is given, steps calling that action; each may need some of its earlier siblings."""
    steps: list[Step] = []
    for _ in range(draw(st.integers(1, 4))):
        name = next(names)
        earlier = [s.name for s in steps]
        needs = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=2)) if earlier else []
        kinds = ["run", *(["group"] if depth < 2 else []), *(["call"] if child else [])]
        kind = draw(st.sampled_from(kinds))
        if kind == "run":
            step = run(name, *needs)
        elif kind == "call":
            assert child is not None
            step = call(name, child, *needs)
        else:
            children = draw(step_lists(names, depth + 1, child))
            step = group(name, draw(RUN_AS), *children, needs=needs)
        steps.append(step)
    return tuple(steps)


def fresh_names() -> Iterator[str]:
    return (f"s{i}" for i in itertools.count())


@st.composite
def action_sets(draw: st.DrawFn) -> dict[str, Action]:
    """``deploy`` (steps s0..sN, some calling ``probe``) and ``probe`` (its own s0..sM)."""
    probe = action(CHILD, *draw(step_lists(fresh_names(), 0, None)), run_as=draw(RUN_AS))
    deploy = action(TOP, *draw(step_lists(fresh_names(), 0, CHILD)), run_as=draw(RUN_AS))
    return {TOP: deploy, CHILD: probe}


def leaves(step: Step, prefix: str, actions: dict[str, Action]) -> list[str]:
    """The ids of the leaf steps ``step`` expands to, its path inside ``deploy`` at ``prefix``."""
    path = f"{prefix}{step.name}"
    if step.run is not None:
        return [sid(path)]
    children = actions[step.action.value].steps if step.action is not None else step.steps
    return [leaf for child in children for leaf in leaves(child, f"{path}/", actions)]


def sibling_lists(
    actions: dict[str, Action],
    steps: tuple[Step, ...] | None = None,
    run_as: str = "",
    prefix: str = "",
) -> Iterator[tuple[tuple[Step, ...], str, str]]:
    """Every step list expanded for ``deploy`` (its own, its groups', the child actions'), with
    its ``run_as`` and the path prefix of its steps."""
    if steps is None:
        steps, run_as = actions[TOP].steps, actions[TOP].run_as
    yield steps, run_as, prefix
    for step in steps:
        inner = f"{prefix}{step.name}/"
        if step.action is not None:
            target = actions[step.action.value]
            yield from sibling_lists(actions, target.steps, target.run_as, inner)
        elif step.steps:
            yield from sibling_lists(actions, step.steps, step.run_as, inner)


def expanded(actions: dict[str, Action]) -> tuple[Fragment, nx.DiGraph, list[str]]:
    fragment = expand_action(NODE, TOP, actions)
    graph = build_graph([fragment])
    return fragment, graph, ordered(graph)


@settings(max_examples=300, deadline=None)
@given(action_sets())
def test_an_expanded_action_is_acyclic_with_each_leaf_step_once(
    actions: dict[str, Action],
) -> None:
    fragment, graph, order = expanded(actions)
    check_acyclic(graph, "step")
    expected = [leaf for step in actions[TOP].steps for leaf in leaves(step, "", actions)]
    assert [s.id for s in fragment.steps] == expected
    assert sorted(order) == sorted(expected)


@settings(max_examples=300, deadline=None)
@given(action_sets())
def test_first_and_last_steps_are_those_nothing_comes_before_or_after(
    actions: dict[str, Action],
) -> None:
    fragment, graph, _ = expanded(actions)
    assert sorted(fragment.sources) == sorted(n for n in graph if graph.in_degree(n) == 0)
    assert sorted(fragment.sinks) == sorted(n for n in graph if graph.out_degree(n) == 0)


@settings(max_examples=300, deadline=None)
@given(action_sets())
def test_every_step_runs_after_all_of_each_sibling_it_needs(actions: dict[str, Action]) -> None:
    _, graph, order = expanded(actions)
    for steps, _, prefix in sibling_lists(actions):
        by_name = {s.name: s for s in steps}
        for step in steps:
            for need in step.needs:
                before = leaves(by_name[need.value], prefix, actions)
                assert runs_before(graph, order, before, leaves(step, prefix, actions)), (
                    f"{prefix}{step.name} needs {need.value}"
                )


@settings(max_examples=300, deadline=None)
@given(action_sets())
def test_sequential_siblings_without_needs_run_as_written(actions: dict[str, Action]) -> None:
    _, graph, order = expanded(actions)
    for steps, run_as, prefix in sibling_lists(actions):
        if run_as != "sequential":
            continue
        free = [s for s in steps if not s.needs]
        for earlier, later in itertools.combinations(free, 2):
            assert runs_before(
                graph, order, leaves(earlier, prefix, actions), leaves(later, prefix, actions)
            ), f"{prefix}{earlier.name} before {prefix}{later.name}"


@settings(max_examples=300, deadline=None)
@given(action_sets())
def test_parallel_siblings_are_free_unless_needs_links_them(actions: dict[str, Action]) -> None:
    _, graph, _ = expanded(actions)
    for steps, run_as, prefix in sibling_lists(actions):
        if run_as != "parallel":
            continue
        needs = nx.DiGraph()
        needs.add_nodes_from(s.name for s in steps)
        needs.add_edges_from((n.value, s.name) for s in steps for n in s.needs)
        for one, other in itertools.combinations(steps, 2):
            if nx.has_path(needs, one.name, other.name):
                continue
            assert unordered(graph, leaves(one, prefix, actions), leaves(other, prefix, actions)), (
                f"{prefix}{one.name} and {prefix}{other.name}"
            )


@settings(max_examples=200, deadline=None)
@given(action_sets(), st.data())
def test_a_child_action_calling_its_caller_is_a_cycle_of_real_calls(
    actions: dict[str, Action], data: st.DataObject
) -> None:
    deploy, probe = actions[TOP], actions[CHILD]
    at = data.draw(st.integers(0, len(deploy.steps)))
    calls_probe = (*deploy.steps[:at], call("call-probe", CHILD), *deploy.steps[at:])
    at = data.draw(st.integers(0, len(probe.steps)))
    calls_deploy = (*probe.steps[:at], call("call-deploy", TOP), *probe.steps[at:])
    looped = {TOP: replace(deploy, steps=calls_probe), CHILD: replace(probe, steps=calls_deploy)}
    with pytest.raises(CycleError) as caught:
        expand_action(NODE, TOP, looped)
    calls = nx.DiGraph(
        (a.name, s.action.value)
        for a in looped.values()
        for s in a.all_steps()
        if s.action is not None
    )
    cycle = caught.value.cycle
    assert cycle == [TOP, CHILD]
    assert all(calls.has_edge(a, b) for a, b in zip(cycle, [*cycle[1:], cycle[0]], strict=True))
