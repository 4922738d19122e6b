"""``runner apply``, ``runner run``, ``resume``/``retry`` and ``run_nodes``: what to run, and
from which commit; ``runner.operations.change_run.ChangeRun`` runs it and records it.

``apply`` fetches the state branch when a remote is configured (a CI clone has none locally),
refuses to go on when the repository is paused, plans from the last applied commit (or
``--base``) to ``--head``, and runs the changed nodes' actions.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import networkx as nx

from runner.errors import Blocked, InvalidArgument
from runner.loading.snapshot import Snapshot, read_settings
from runner.loading.source import OpsRepo
from runner.loading.yamlfile import Mapping as YamlMapping
from runner.model import Layer
from runner.operations.change_run import ApplyOptions, ApplyResult, ChangeRun, state_store
from runner.operations.history import show_change
from runner.operations.pause import Paused, ensure_not_paused, head_pause_message
from runner.operations.plan import Planned, PlanRequest, plan
from runner.operations.validate import load_valid
from runner.planning.dag import expand_action
from runner.planning.plan import NodePlan, Plan, asset_order, link_fragments
from runner.process import ProcessRunner, SubprocessRunner
from runner.secrets import SecretStore
from runner.state.read import APPLIED_MARKER, last_applied_commit
from runner.state.records import (
    ChangeRecord,
    dump,
    iso,
    now,
    read_yaml,
)


def apply(
    ops: OpsRepo,
    options: ApplyOptions,
    environ: Mapping[str, str],
    cancel: threading.Event,
    runner: ProcessRunner | None = None,
) -> ApplyResult:
    request = PlanRequest(
        base=options.base,
        head=options.head,
        targets=options.targets,
        excludes=options.excludes,
        allow_destroy=options.allow_destroy,
    )
    saved: dict[str, Any] | None = None
    if options.plan_file is not None:
        saved = _read_saved_plan(options.plan_file)
        request = replace(request, base=saved.get("base"), head=str(saved.get("head")))
    planned = plan(ops, request, before_base=lambda snap: _sync(ops, snap))
    check_push(options, planned.head)
    if saved is not None:
        _check_saved_plan(saved, planned)
    work = [c for c in planned.plan.changes if c.runs]
    result = ApplyResult(planned.plan)
    if not work:
        if not planned.plan.changes and not options.targets and not options.excludes:
            _mark_applied(ops, planned)
        return result
    secrets = SecretStore(environ, options.secrets_file)
    run = ChangeRun(ops, planned, options, secrets, environ, cancel, runner or SubprocessRunner())
    return run.execute(work, kind="apply")


def check_push(options: ApplyOptions, head: Snapshot) -> None:
    """``--push`` with no remote to push to would leave every CI job starting from an empty
    state branch and running everything again: refuse it before anything runs."""
    if options.push and not head.settings.state_remote:
        where = head.settings.file or "runner.yaml"
        raise InvalidArgument(
            f"--push: {where} sets no state.remote (set `state: {{remote: origin}}`)"
        )


def _sync(ops: OpsRepo, head: Snapshot) -> None:
    """Bring the state branch in from the remote, then refuse to go on when paused."""
    store = state_store(ops, head)
    if head.settings.state_remote:
        store.sync()
    ensure_not_paused(ops, head, store)


def _read_saved_plan(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidArgument(
            f"{path}: not a plan written by `runner plan --output` ({exc})"
        ) from None
    if not isinstance(doc, dict) or doc.get("version") != 1 or "head" not in doc:
        raise InvalidArgument(f"{path}: not a version 1 plan")
    return doc


def _check_saved_plan(saved: dict[str, Any], planned: Planned) -> None:
    current = last_applied_commit(planned.ops, planned.head.settings)
    if current != saved.get("base"):
        raise Blocked(
            f"the saved plan starts at {str(saved.get('base'))[:12]} but the state branch says "
            f"{str(current)[:12] if current else 'nothing'} was applied since; plan again"
        )


def _mark_applied(ops: OpsRepo, planned: Planned) -> None:
    store = state_store(ops, planned.head)
    head = planned.head.commit

    def mutate(view: Any) -> dict[str, bytes | None]:
        current = read_yaml(view.read(APPLIED_MARKER)).get("commit")
        if current == head:
            return {}
        return {APPLIED_MARKER: dump({"commit": head, "time": iso(now())})}

    store.update(mutate, f"runner: applied {str(head)[:12]}")


def run_action(
    ops: OpsRepo,
    node: str,
    action: str,
    overrides: dict[str, Any],
    options: ApplyOptions,
    environ: Mapping[str, str],
    cancel: threading.Event,
    runner: ProcessRunner | None = None,
) -> ApplyResult:
    """``runner run PATH ACTION --set k=v``: an ad-hoc change of one node at ``--head``."""
    head = load_valid(ops, ops.require_git().resolve(options.head)).snapshot
    check_push(options, head)
    _sync(ops, head)
    if node not in head.assets:
        raise InvalidArgument(f"{node}: no such asset")
    return run_nodes(
        ops, head, [node], action, overrides, options, environ, cancel, runner, kind="run"
    )


def run_nodes(
    ops: OpsRepo,
    head: Snapshot,
    targets: Sequence[str],
    action: str,
    overrides: Mapping[str, Any] | None,
    options: ApplyOptions,
    environ: Mapping[str, str],
    cancel: threading.Event,
    runner: ProcessRunner | None = None,
    *,
    kind: str = "run",
    parallel_targets: bool = False,
    run_id: str | None = None,
    run_step: str | None = None,
    reason: str | None = None,
    on_recorded: Callable[[list[ChangeRecord]], None] | None = None,
    prior: ChangeRecord | None = None,
) -> ApplyResult:
    """Run ``action`` on ``targets`` at ``head`` (a validated snapshot): an asset, or every asset
    below an environment or project that has the action. Assets go in ``depends_on`` order, and
    one after another unless ``parallel_targets``. Used by ``runner run``, workflow change steps,
    schedules and drift checks (the caller syncs the state branch first), and by ``resume`` and
    ``retry`` of a ``prior`` change."""
    reason = reason or f"runner {kind} {' '.join(targets)} {action}"
    nodes = target_assets(head, targets, action)
    node_graph = asset_order(head, set(nodes))
    if not parallel_targets and len(nodes) > 1:
        index = {node: f"{i:08d}" for i, node in enumerate(nodes)}
        chain = list(nx.lexicographical_topological_sort(node_graph, key=index.__getitem__))
        node_graph.add_edges_from(itertools.pairwise(chain))
    fragments = {
        node: expand_action(node, action, head.actions_of(head.assets[node])) for node in nodes
    }
    graph, order = link_fragments(node_graph, fragments)
    changes = []
    for node in nodes:
        template = head.template_of(head.assets[node])
        mine = {s.id for s in fragments[node].steps}
        changes.append(
            NodePlan(
                node=node,
                change="run",
                action=action,
                runs=True,
                note=None,
                reasons=(reason,),
                properties_diff=(),
                steps=tuple(s for s in order if s in mine),
                template=template.label if template else None,
            )
        )
    plan_ = Plan(
        base=None,
        head=head.commit,
        changes=tuple(changes),
        steps=tuple(graph.nodes[s]["step"] for s in order),
        edges=tuple(sorted(graph.edges)),
        node_edges=tuple(sorted(node_graph.edges)),
    )
    planned = Planned(ops, plan_, head, None, "ad-hoc run")
    layer = None
    if overrides:
        values = YamlMapping(0)
        values.update(overrides)  # no lines: provenance says where they came from
        layer = Layer("overrides", "--set", values)
    secrets = SecretStore(environ, options.secrets_file)
    run = ChangeRun(
        ops,
        planned,
        options,
        secrets,
        environ,
        cancel,
        runner or SubprocessRunner(),
        overrides=layer,
        run_id=run_id,
        run_step=run_step,
    )
    run.on_recorded = on_recorded
    return run.execute(changes, kind, prior)


def target_assets(head: Snapshot, targets: Sequence[str], action: str) -> list[str]:
    """The assets ``targets`` name that can run ``action``, in the order given (an environment
    or project target: the assets below it that have the action, by path)."""
    nodes: list[str] = []
    for target in targets:
        if target in head.assets:
            available = head.actions_of(head.assets[target])
            if action not in available:
                known = ", ".join(sorted(available)) or "none"
                raise InvalidArgument(f"{target} has no action {action!r} (actions: {known})")
            nodes.append(target)
        elif head.has_node(target):
            prefix = target.rstrip("/") + "/"
            below = [
                path
                for path in sorted(head.assets)
                if path.startswith(prefix) and action in head.actions_of(head.assets[path])
            ]
            if not below:
                raise InvalidArgument(f"no asset under {target} has an action {action!r}")
            nodes += below
        else:
            raise InvalidArgument(f"{target}: no such node")
    return list(dict.fromkeys(nodes))


def resume_or_retry(
    ops: OpsRepo,
    change_id: str,
    kind: str,
    options: ApplyOptions,
    environ: Mapping[str, str],
    cancel: threading.Event,
    runner: ProcessRunner | None = None,
) -> ApplyResult:
    """``runner resume CHANGE`` (same record, only the steps that did not succeed) and
    ``runner retry CHANGE`` (a new record with ``retry_of``)."""
    prior = show_change(ops, read_settings(ops), change_id)
    if prior.status in ("pending", "running", "waiting") and kind == "retry":
        raise InvalidArgument(f"change {prior.id} is {prior.status}; retry a finished change")
    if prior.status == "success":
        raise InvalidArgument(f"change {prior.id} succeeded; nothing to {kind}")
    git = ops.require_git()
    head = load_valid(ops, git.resolve(prior.commit)).snapshot
    _sync(ops, head)
    _not_paused_now(ops)
    if prior.node not in head.assets:
        raise InvalidArgument(f"{prior.node}: no such asset at {prior.commit[:12]}")
    return run_nodes(
        ops,
        head,
        [prior.node],
        prior.action,
        prior.overrides,
        options,
        environ,
        cancel,
        runner,
        kind=kind,
        run_id=prior.run,
        run_step=prior.run_step,
        reason=f"runner {kind} {prior.id}",
        prior=prior,
    )


def _not_paused_now(ops: OpsRepo) -> None:
    """A pause committed after a change still stops its resume or retry: runner.yaml is read
    at HEAD, not at the change's own commit."""
    message = head_pause_message(ops, ops.require_git())
    if message is not None:
        raise Paused(message)


__all__ = [
    "ApplyOptions",
    "ApplyResult",
    "apply",
    "check_push",
    "resume_or_retry",
    "run_action",
    "run_nodes",
    "state_store",
    "target_assets",
]
