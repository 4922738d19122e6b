"""Checks across files: references, duplicates, cycles and converged-property schemas.

Each check takes a Snapshot and returns Problems; nothing stops at the first one. A reference
to something whose own file is broken stays quiet (that file already has its problem).
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

import networkx as nx

from runner.errors import Problem
from runner.loading.documents import ParseCache
from runner.loading.schemacheck import InvalidSchema, SchemaCheck, schema_problem
from runner.loading.snapshot import Snapshot
from runner.model import Action, Asset, Pos, Ref, Step, Template, WorkflowStep
from runner.properties.converge import Converger
from runner.scheduling import cron_problem, time_problem

if TYPE_CHECKING:
    import jsonschema


def check(
    snapshot: Snapshot, converger: Converger | None = None, cache: ParseCache | None = None
) -> list[Problem]:
    converger = converger or Converger(snapshot)
    problems = list(snapshot.problems)
    for found in (
        _templates(snapshot),
        _assets(snapshot),
        _environments(snapshot),
        _projects(snapshot),
        _workflows(snapshot),
        _schedules(snapshot),
        _settings(snapshot),
        _converged(snapshot, converger, cache or ParseCache(None)),
    ):
        problems.extend(found)
    return sorted(set(problems))


def _at(pos: Pos, message: str) -> Problem:
    return Problem(pos.file, pos.line, message)


# --- cycles -------------------------------------------------------------------------------------


def cycle_problems(graph: nx.DiGraph, what: str) -> Iterator[Problem]:
    """One problem per edge of each cycle, at the file:line where the edge is written
    (edge attribute ``pos``), each printing the whole cycle."""
    for cycle in sorted(sorted(c) for c in nx.simple_cycles(graph) if len(c) <= 50)[:20]:
        # rotate to start at the smallest member, follow the cycle in graph order
        ordered = _ordered_cycle(graph, cycle)
        text = " → ".join([*ordered, ordered[0]])
        for i, node in enumerate(ordered):
            nxt = ordered[(i + 1) % len(ordered)]
            pos = graph.edges[node, nxt].get("pos")
            if pos is not None:
                yield _at(pos, f"{what} cycle: {text}")


def _ordered_cycle(graph: nx.DiGraph, members: list[str]) -> list[str]:
    start = min(members)
    order = [start]
    allowed = set(members)
    while True:
        nxt = sorted(
            n
            for n in graph.successors(order[-1])
            if n in allowed and (n not in order or n == start)
        )
        candidate = next((n for n in nxt if n not in order), None)
        if candidate is None:
            return order
        order.append(candidate)


# --- templates and actions ----------------------------------------------------------------------


def _templates(snap: Snapshot) -> Iterator[Problem]:
    for template in [*snap.templates.values(), *snap.pinned.values()]:
        yield from _template(template)


def _template(template: Template) -> Iterator[Problem]:
    label = f"version {template.version}: " if template.version else ""
    pos_file = template.file
    for event in (template.on_create, template.on_change, template.on_delete, template.check):
        if event is not None and event.value not in template.actions:
            known = ", ".join(sorted(template.actions)) or "none"
            yield _at(event.pos, f"{label}unknown action {event.value!r} (actions: {known})")
    if template.schema is not None and template.schema_pos is not None:
        problem = schema_problem(template.schema)
        if problem is not None:
            yield _at(template.schema_pos, f"{label}schema is not a valid JSON Schema: {problem}")
    yield from (
        Problem(pos_file, p.line, f"{label}{p.message}") if label else p
        for p in actions_problems(template.actions, set(template.actions))
    )


def actions_problems(actions: dict[str, Action], known: set[str]) -> Iterator[Problem]:
    """Steps of a set of actions: duplicate names, unknown needs and child actions, cycles."""
    calls = nx.DiGraph()
    for action in actions.values():
        calls.add_node(action.name)
        seen: dict[str, Step] = {}
        for step in action.all_steps():
            if step.name in seen:
                yield _at(
                    step.pos,
                    f"action {action.name}: duplicate step name {step.name!r} "
                    f"(first at line {seen[step.name].pos.line})",
                )
            else:
                seen[step.name] = step
            if step.action is not None:
                if step.action.value not in known:
                    yield _at(
                        step.action.pos, f"step {step.name}: unknown action {step.action.value!r}"
                    )
                else:
                    calls.add_edge(action.name, step.action.value, pos=step.action.pos)
        yield from needs_problems(action.steps, f"action {action.name}: step needs")
    yield from cycle_problems(calls, "child action")


class _Stepish(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def needs(self) -> tuple[Ref, ...]: ...

    @property
    def steps(self) -> Sequence[_Stepish]: ...


def needs_problems(steps: Sequence[_Stepish], what: str) -> Iterator[Problem]:
    """``needs`` name siblings only (steps of the same list); their graph has no cycle."""
    siblings = {s.name for s in steps}
    graph = nx.DiGraph()
    for step in steps:
        graph.add_node(step.name)
        for need in step.needs:
            if need.value not in siblings:
                yield _at(
                    need.pos,
                    f"step {step.name}: needs unknown step {need.value!r} "
                    f"(steps here: {', '.join(sorted(siblings))})",
                )
            else:
                graph.add_edge(step.name, need.value, pos=need.pos)
        if step.steps:
            yield from needs_problems(step.steps, what)
    yield from cycle_problems(graph, what)


# --- nodes --------------------------------------------------------------------------------------


def resolve_dependency(snap: Snapshot, asset: Asset, ref: str) -> str:
    """The node path an asset's ``depends_on`` entry names."""
    if ref.startswith("/"):
        return ref
    return f"{asset.parent_path}/assets/{ref}"


def _assets(snap: Snapshot) -> Iterator[Problem]:
    graph = nx.DiGraph()
    for path, asset in sorted(snap.assets.items()):
        graph.add_node(path)
        template = snap.templates.get(asset.template.value)
        template_file = f"templates/{asset.template.value}/template.yaml"
        if template is None:
            if template_file not in snap.broken:
                known = ", ".join(sorted(snap.templates)) or "none"
                yield _at(
                    asset.template.pos,
                    f"unknown template {asset.template.value!r} (templates: {known})",
                )
        elif asset.version is not None and asset.version not in template.versions:
            known = ", ".join(sorted(template.versions)) or "none"
            yield _at(
                asset.template.pos,
                f"template {asset.template.value} has no version {asset.version!r} "
                f"(versions: {known})",
            )
        for dep in asset.depends_on:
            target = resolve_dependency(snap, asset, dep.value)
            if target == path:
                yield _at(dep.pos, f"depends_on: {dep.value!r} is the asset itself")
            elif snap.has_node(target):
                graph.add_edge(path, target, pos=dep.pos)
            elif not _is_broken(snap, target):
                yield _at(dep.pos, f"depends_on: unknown node {target}")
    yield from cycle_problems(graph, "depends_on")


def _is_broken(snap: Snapshot, path: str) -> bool:
    parts = path.strip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "assets":
        return f"{path.strip('/')}.yaml" in snap.broken
    return any(f.startswith(path.strip("/") + "/") for f in snap.broken)


def _environments(snap: Snapshot) -> Iterator[Problem]:
    graph = nx.DiGraph()
    for path, env in sorted(snap.environments.items()):
        graph.add_node(path)
        for dep in env.depends_on:
            target = f"/projects/{env.project}/environments/{dep.value}"
            if target == path:
                yield _at(dep.pos, f"depends_on: {dep.value!r} is the environment itself")
            elif target in snap.environments:
                graph.add_edge(path, target, pos=dep.pos)
            elif not _is_broken(snap, target):
                known = ", ".join(
                    sorted(e.code for e in snap.environments.values() if e.project == env.project)
                )
                yield _at(
                    dep.pos,
                    f"depends_on: unknown environment {dep.value!r} (environments: {known})",
                )
        yield from _groups(snap, env.settings.requires_approval_from)
    yield from cycle_problems(graph, "environment depends_on")


def _projects(snap: Snapshot) -> Iterator[Problem]:
    for project in snap.projects.values():
        yield from _groups(snap, project.settings.requires_approval_from)
        known = set(project.actions) | {a for t in snap.templates.values() for a in t.actions}
        yield from actions_problems(project.actions, known)


def _groups(snap: Snapshot, refs: Iterable[Ref]) -> Iterator[Problem]:
    for ref in refs:
        if ref.value not in snap.settings.groups:
            known = ", ".join(sorted(snap.settings.groups)) or "none in runner.yaml"
            yield _at(ref.pos, f"unknown group {ref.value!r} (groups: {known})")


# --- workflows and schedules --------------------------------------------------------------------


def find_workflow(snap: Snapshot, name: str, project: str | None = None) -> list[str]:
    """Qualified names matching ``name`` (``release`` or ``pay/release``)."""
    if "/" in name:
        return [name] if name in snap.workflows else []
    found = sorted(q for q, w in snap.workflows.items() if w.code == name)
    if project is not None and f"{project}/{name}" in found:
        return [f"{project}/{name}"]
    return found


def _workflows(snap: Snapshot) -> Iterator[Problem]:
    calls = nx.DiGraph()
    for qualified, wf in sorted(snap.workflows.items()):
        calls.add_node(qualified)
        seen: dict[str, WorkflowStep] = {}
        for step in (s for top in wf.steps for s in top.walk()):
            if step.name in seen:
                yield _at(
                    step.pos,
                    f"duplicate step name {step.name!r} (first at line {seen[step.name].pos.line})",
                )
            seen.setdefault(step.name, step)
            for target in step.targets:
                if not snap.has_node(target.value):
                    if not _is_broken(snap, target.value):
                        yield _at(target.pos, f"step {step.name}: unknown node {target.value}")
                elif step.action is not None:
                    yield from _change_action(snap, step, target.value, step.action)
            yield from _groups(snap, step.approval_from)
            if step.workflow is not None:
                found = find_workflow(snap, step.workflow.value, wf.project)
                if len(found) == 1:
                    calls.add_edge(qualified, found[0], pos=step.workflow.pos)
                else:
                    yield _at(step.workflow.pos, _workflow_message(step.workflow.value, found))
        yield from needs_problems(wf.steps, "step needs")
    yield from cycle_problems(calls, "workflow")


def _change_action(
    snap: Snapshot, step: WorkflowStep, target: str, action: Ref
) -> Iterator[Problem]:
    """A change step's action must exist on the target asset, or on at least one asset below an
    environment or project target (the assets without it are left out when the step runs)."""
    prefix = target.rstrip("/") + "/"
    below = [a for p, a in sorted(snap.assets.items()) if p == target or p.startswith(prefix)]
    if _is_broken(snap, target) or any(snap.template_of(a) is None for a in below):
        return  # a broken file under the target has its own problem
    if not below:
        yield _at(action.pos, f"step {step.name}: no assets under {target} to run {action.value!r}")
        return
    known = {name for asset in below for name in snap.actions_of(asset)}
    if action.value in known:
        return
    actions = ", ".join(sorted(known)) or "none"
    if target in snap.assets:
        yield _at(
            action.pos,
            f"step {step.name}: {target} has no action {action.value!r} (actions: {actions})",
        )
    else:
        yield _at(
            action.pos,
            f"step {step.name}: no asset under {target} has an action {action.value!r} "
            f"(actions there: {actions})",
        )


def _workflow_message(name: str, found: list[str]) -> str:
    if not found:
        return f"unknown workflow {name!r}"
    return f"workflow {name!r} is ambiguous: write one of {', '.join(found)}"


def _schedules(snap: Snapshot) -> Iterator[Problem]:
    seen: dict[str, Pos] = {}
    for schedule in snap.schedules:
        if schedule.name in seen:
            yield _at(
                schedule.pos,
                f"duplicate schedule name {schedule.name!r} (first at {seen[schedule.name]})",
            )
        seen.setdefault(schedule.name, schedule.pos)
        if schedule.target is not None and not snap.has_node(schedule.target.value):
            yield _at(schedule.target.pos, f"unknown node {schedule.target.value}")
        if schedule.workflow is not None:
            found = find_workflow(snap, schedule.workflow.value, schedule.project)
            if len(found) != 1:
                yield _at(schedule.workflow.pos, _workflow_message(schedule.workflow.value, found))
        if schedule.timezone is not None and not _valid_zone(schedule.timezone):
            yield _at(schedule.pos_of("timezone"), f"unknown time zone {schedule.timezone!r}")
        if schedule.cron is not None:
            problem = cron_problem(schedule.cron)
            if problem:
                yield _at(schedule.pos_of("cron"), f"cron {schedule.cron!r}: {problem}")
        for key, text in (("run_at", schedule.run_at), ("end_at", schedule.end_at)):
            problem = time_problem(text) if text is not None else None
            if problem:
                yield _at(schedule.pos_of(key), f"{key}: {problem}")


def _settings(snap: Snapshot) -> Iterator[Problem]:
    settings = snap.settings
    if settings.file is not None and not _valid_zone(settings.timezone):
        line = settings.key_lines.get("timezone", 0)
        yield Problem(settings.file, line, f"unknown time zone {settings.timezone!r}")


@cache
def _valid_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


# --- converged properties against template schemas ----------------------------------------------


def _converged(snap: Snapshot, converger: Converger, cache: ParseCache) -> Iterator[Problem]:
    """Each asset's converged properties against its template's schema; the answer is cached by
    the asset's input key, so only assets whose inputs moved are converged again."""
    validators: dict[int, Any] = {}
    for path, asset in sorted(snap.assets.items()):
        template = snap.template_of(asset)
        if template is None or template.schema is None or not converger.has_layers(asset):
            continue
        key = f"converged:{snap.input_key(path)}"
        known = cache.get(key)
        if known is None:
            known = [
                (p.file, p.line, p.message)
                for p in _converged_one(snap, converger, path, asset, template, validators)
            ]
            cache.put(key, known)
        yield from (Problem(*found) for found in known)


def _converged_one(
    snap: Snapshot,
    converger: Converger,
    path: str,
    asset: Asset,
    template: Template,
    validators: dict[int, Any],
) -> Iterator[Problem]:
    key = id(template)
    if key not in validators:
        try:
            validators[key] = SchemaCheck(template.schema or {})
        except InvalidSchema:
            validators[key] = None  # reported at the template
    validator = validators[key]
    if validator is None:
        return
    errors = validator.errors(converger.values(path))
    if not errors:
        return
    provenance = converger.converge(path).provenance
    for error in errors:
        keys = tuple(str(p) for p in error.absolute_path)
        where = ".".join(keys)
        origin = provenance.get(keys)
        source = f", set by {origin}" if origin is not None else ""
        yield _at(
            asset.template.pos,
            f"converged properties{' ' + where if where else ''}: {_safe_message(error)} "
            f"(schema of template {template.label}{source})",
        )


def _safe_message(error: jsonschema.ValidationError) -> str:
    """jsonschema quotes the failing value; converged values hold secret references only,
    but keep messages short and value-free where the value could be large."""
    if error.validator == "required":
        return error.message
    if error.validator in ("type", "enum", "const", "pattern", "minimum", "maximum", "format"):
        return (
            f"{error.validator} {error.validator_value!r} not satisfied by {_short(error.instance)}"
        )
    return error.message


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
