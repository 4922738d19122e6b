"""``runner approve|reject|continue ID [STEP]`` and ``runner cancel ID`` (SPEC 2.5).

A decision is one state commit: the decision file, the record it concerns and an audit event,
so the three never disagree. Deciding does not run anything: the next ``runner reconcile``
carries the run on (or, for a change held by ``requires_approval_from``, runs it).

Who may decide is checked against ``groups:`` of runner.yaml at the commit the run or change
was made from, and the user is ``--by``, else ``GITHUB_ACTOR``, else the git identity. That is
as trustworthy as write access to the state branch: whoever can push there can write any name
into a decision file, so protect the branch as you protect the ops repo's main branch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from runner.errors import Blocked, InvalidArgument
from runner.identity import current_user, member_of
from runner.loading.snapshot import read_settings
from runner.loading.source import OpsRepo
from runner.operations.pause import settings_at
from runner.operations.validate import load_valid
from runner.state import leases
from runner.state.events import new_event
from runner.state.records import (
    ChangeRecord,
    change_from_yaml,
    change_to_yaml,
    dump,
    iso,
    now,
    read_yaml,
)
from runner.state.store import StateStore, StateView
from runner.workflows.engine import cancel_changes
from runner.workflows.plan import build_plan
from runner.workflows.records import (
    ACTIVE,
    DECISIONS,
    RunRecord,
    approval_path,
    change_approval_path,
    decision_text,
    find_run,
    matching_runs,
    read_decision,
    read_run,
    run_to_yaml,
)

PAST = {"approve": "approved", "reject": "rejected", "continue": "continued", "cancel": "cancelled"}


@dataclass(frozen=True)
class Decided:
    """What a decision or a cancel recorded."""

    kind: str  # run | change
    id: str
    decision: str  # approve | reject | continue | cancel
    user: str
    time: str
    message: str = ""
    step: str | None = None
    node: str | None = None  # a change's node

    @property
    def past(self) -> str:
        return PAST[self.decision]


# --- approve, reject, continue -------------------------------------------------------------------


def decide(
    ops: OpsRepo,
    decision: str,
    target: str,
    step: str | None = None,
    *,
    environ: Mapping[str, str],
    message: str | None = None,
    by: str | None = None,
) -> Decided:
    """Record ``decision`` on step ``step`` of run ``target``, or on change ``target`` (held by
    ``requires_approval_from``). Ids may be shortened to a unique prefix."""
    if decision not in DECISIONS:
        raise InvalidArgument(f"unknown decision {decision!r} (one of {', '.join(DECISIONS)})")
    store = _store(ops)
    _, found = _resolve(store, target, step)
    if isinstance(found, RunRecord):
        assert step is not None
        result = _decide_step(ops, store, found, step, decision, environ, message or "", by)
    else:
        result = _decide_change(ops, store, found, decision, environ, message or "", by)
    store.push()
    return result


def _decide_step(
    ops: OpsRepo,
    store: StateStore,
    run: RunRecord,
    name: str,
    decision: str,
    environ: Mapping[str, str],
    message: str,
    by: str | None,
) -> Decided:
    step = run.step(name)
    if step is None:
        steps = ", ".join(s.name for s in run.steps if s.kind == "wait") or "none"
        raise InvalidArgument(f"run {run.id} has no step {name!r} (wait steps: {steps})")
    if step.kind != "wait":
        hint = ""
        if step.kind == "change" and step.status == "waiting":
            hint = "; its changes wait for approval: " + ", ".join(
                f"runner {decision} {c}" for c in step.changes
            )
        raise InvalidArgument(f"step {name} of run {run.id} is a {step.kind} step{hint}")
    existing = read_decision(store, run.id, name)
    if existing is not None:
        raise InvalidArgument(f"step {name} of run {run.id} was already {decision_text(existing)}")
    if step.status != "waiting":
        raise InvalidArgument(f"step {name} of run {run.id} is {step.status}, not waiting")
    snap = load_valid(ops, run.commit).snapshot
    groups = tuple(r.value for r in build_plan(snap, run.workflow).steps[name].step.approval_from)
    user = current_user(environ, ops.require_git(), by)
    _check_member(user, groups, snap.settings.groups, f"{decision} step {name} of run {run.id}")
    body = _body(decision, user, message)
    event_path, event = new_event(
        decision,
        f"{PAST[decision]} step {name} of run {run.id} ({run.workflow})",
        by=user,
        node=run.node,
        run=run.id,
        step=name,
        note=message or None,
    )
    file = approval_path(run.id, name)
    refused: list[str] = []

    def mutate(view: StateView) -> dict[str, bytes | None]:
        refused.clear()
        current = read_run(view, run.id)
        found = current.step(name) if current is not None else None
        if current is None or found is None:
            refused.append("it is gone from the state branch")
            return {}
        decided = read_yaml(view.read(file)) if view.exists(file) else None
        if decided:
            refused.append(f"it was already {decision_text(decided)}")
            return {}
        if found.status != "waiting":
            refused.append(f"it is {found.status} now")
            return {}
        updated = current.with_step(replace(found, decision=body))
        return {file: dump(body), current.path: run_to_yaml(updated), event_path: event}

    store.update(mutate, f"runner: {decision} {run.id} {name} by {user}")
    if refused:
        raise InvalidArgument(f"step {name} of run {run.id} not decided: {refused[0]}")
    return Decided("run", run.id, decision, user, body["time"], message, step=name, node=run.node)


def _decide_change(
    ops: OpsRepo,
    store: StateStore,
    change: ChangeRecord,
    decision: str,
    environ: Mapping[str, str],
    message: str,
    by: str | None,
) -> Decided:
    if decision == "continue":
        raise InvalidArgument(
            f"{change.id} is a change; `runner continue` is for wait steps of a workflow run "
            f"(approve or reject the change)"
        )
    file = change_approval_path(change.id)
    existing = read_yaml(store.read(file))
    if existing:
        raise InvalidArgument(f"change {change.id} was already {decision_text(existing)}")
    if change.status != "waiting":
        raise InvalidArgument(
            f"change {change.id} is {change.status}; only a change waiting for approval can be "
            f"{PAST[decision]}"
        )
    git = ops.require_git()
    settings = settings_at(ops, git, change.commit)
    user = current_user(environ, git, by)
    _check_member(user, change.waiting_for, settings.groups, f"{decision} change {change.id}")
    body = _body(decision, user, message)
    event_path, event = new_event(
        decision,
        f"{PAST[decision]} change {change.id} ({change.action} on {change.node})",
        by=user,
        node=change.node,
        change=change.id,
        run=change.run,
        note=message or None,
    )
    refused: list[str] = []

    def mutate(view: StateView) -> dict[str, bytes | None]:
        refused.clear()
        data = view.read(change.path)
        current = change_from_yaml(data) if data is not None else None
        if current is None or current.status != "waiting" or view.exists(file):
            refused.append(current.status if current is not None else "gone")
            return {}
        if decision == "approve":
            updated = replace(current, approval=body)
        else:
            updated = replace(
                current,
                status="cancelled",
                finished=body["time"],
                approval=body,
                reasons=(*current.reasons, f"rejected by {user}"),
            )
        return {file: dump(body), current.path: change_to_yaml(updated), event_path: event}

    store.update(mutate, f"runner: {decision} change {change.id} by {user}")
    if refused:
        raise InvalidArgument(f"change {change.id} not decided: it is {refused[0]} now")
    return Decided("change", change.id, decision, user, body["time"], message, node=change.node)


def _check_member(
    user: str, groups: tuple[str, ...], members: Mapping[str, tuple[str, ...]], what: str
) -> None:
    """Anyone may decide where no group is named; else only a member of one of them."""
    if not groups or member_of(user, groups, members):
        return
    names = sorted({m for g in groups for m in members.get(g, ())})
    raise Blocked(
        f"{user} is not in {' or '.join(groups)}; only "
        f"{', '.join(names) if names else 'its members'} may {what} "
        "(the user is --by, else GITHUB_ACTOR, else the git identity)"
    )


def _body(decision: str, user: str, message: str) -> dict[str, Any]:
    return {"decision": decision, "user": user, "message": message, "time": iso(now())}


# --- cancel -------------------------------------------------------------------------------------


def cancel(
    ops: OpsRepo,
    target: str,
    *,
    environ: Mapping[str, str],
    message: str | None = None,
    by: str | None = None,
) -> Decided:
    """``runner cancel ID``: a pending or waiting run (its waiting steps and changes too), or a
    pending or waiting change. A run or change that is running belongs to its runner: exit 4,
    interrupt that runner instead (it records ``cancelled``)."""
    store = _store(ops)
    _, found = _resolve(store, target, None, want_step=False)
    user = current_user(environ, ops.require_git(), by)
    if isinstance(found, RunRecord):
        result = _cancel_run(store, found, user, message or "")
    else:
        result = _cancel_change(store, found, user, message or "")
    store.push()
    return result


def _cancel_run(store: StateStore, run: RunRecord, user: str, message: str) -> Decided:
    _check_cancellable("run", run.id, run.status, _live_lease(store, run.node))
    moment = iso(now())
    said = f": {message}" if message else ""
    event_path, event = new_event(
        "cancel",
        f"cancelled run {run.id} ({run.workflow}){said}",
        by=user,
        node=run.node,
        run=run.id,
    )
    refused: list[str] = []

    def mutate(view: StateView) -> dict[str, bytes | None]:
        refused.clear()
        current = read_run(view, run.id)
        if current is None or current.status not in ("pending", "waiting"):
            refused.append(current.status if current is not None else "gone")
            return {}
        if _live_lease(view, run.node) is not None:
            refused.append("being carried on")
            return {}
        out: dict[str, bytes | None] = {}
        steps = []
        for step in current.steps:
            if step.status in ("pending", "waiting", "queued"):
                out.update(cancel_changes(view, step.changes, f"run {run.id} cancelled by {user}"))
                step = replace(
                    step, status="cancelled", finished=moment, message=f"cancelled by {user}"
                )
            steps.append(step)
        updated = replace(current, status="cancelled", finished=moment, steps=tuple(steps))
        out[current.path] = run_to_yaml(updated)
        out[event_path] = event
        return out

    store.update(mutate, f"runner: cancel run {run.id} by {user}")
    if refused:
        raise Blocked(f"run {run.id} not cancelled: it is {refused[0]} now")
    return Decided("run", run.id, "cancel", user, str(moment), message)


def _cancel_change(store: StateStore, change: ChangeRecord, user: str, message: str) -> Decided:
    lease = _live_lease(store, change.node)
    ours = lease if lease is not None and lease.change == change.id else None
    _check_cancellable("change", change.id, change.status, ours)
    moment = iso(now())
    said = f": {message}" if message else ""
    event_path, event = new_event(
        "cancel",
        f"cancelled change {change.id} ({change.action} on {change.node}){said}",
        by=user,
        node=change.node,
        change=change.id,
        run=change.run,
    )
    refused: list[str] = []

    def mutate(view: StateView) -> dict[str, bytes | None]:
        refused.clear()
        data = view.read(change.path)
        current = change_from_yaml(data) if data is not None else None
        if current is None or current.status not in ("pending", "waiting"):
            refused.append(current.status if current is not None else "gone")
            return {}
        updated = replace(
            current,
            status="cancelled",
            finished=moment,
            reasons=(*current.reasons, f"cancelled by {user}{said}"),
        )
        return {current.path: change_to_yaml(updated), event_path: event}

    store.update(mutate, f"runner: cancel change {change.id} by {user}")
    if refused:
        raise Blocked(f"change {change.id} not cancelled: it is {refused[0]} now")
    return Decided("change", change.id, "cancel", user, str(moment), message, node=change.node)


def _check_cancellable(kind: str, ident: str, status: str, lease: leases.Lease | None) -> None:
    if status not in ACTIVE:
        raise InvalidArgument(f"{kind} {ident} already ended: {status}")
    if status == "running" or lease is not None:
        holder = f" by {lease.holder}" if lease is not None else ""
        raise Blocked(
            f"{kind} {ident} is being run{holder}: interrupt that runner (Ctrl-C or SIGTERM) "
            "and it records the steps it stops as cancelled"
        )


def _live_lease(view: StateStore | StateView, node: str) -> leases.Lease | None:
    data = view.read(leases.lease_path(node))
    if data is None:
        return None
    lease = leases.lease_from_yaml(data, leases.lease_path(node))
    return None if lease.expired(now()) else lease


# --- finding what an id names --------------------------------------------------------------------


def _store(ops: OpsRepo) -> StateStore:
    store = StateStore.for_settings(ops.require_git(), read_settings(ops))
    store.sync()
    return store


def _resolve(
    store: StateStore, target: str, step: str | None, *, want_step: bool = True
) -> tuple[str, RunRecord | ChangeRecord]:
    """The run or change ``target`` names (a unique id prefix)."""
    target = target.strip()
    if not target:
        raise InvalidArgument("give a run or change id")
    runs = matching_runs(store, target)
    changes = _matching_changes(store, target)
    if runs and changes and target not in runs and target not in {c.id for c in changes}:
        raise InvalidArgument(f"{target!r} matches runs and changes; give more of the id")
    if runs and (target in runs or not changes):
        run = find_run(store, target)
        if want_step and step is None:
            waiting = [s.name for s in run.steps if s.kind == "wait" and s.status == "waiting"]
            hint = f" (waiting: {', '.join(waiting)})" if waiting else ""
            raise InvalidArgument(f"{run.id} is a workflow run: name its wait step{hint}")
        return "run", run
    if not changes:
        raise InvalidArgument(f"no run or change {target!r} on the state branch")
    if len(changes) > 1 and target not in {c.id for c in changes}:
        raise InvalidArgument(f"{target!r} matches {len(changes)} changes; give more of the id")
    change = next((c for c in changes if c.id == target), changes[0])
    if step is not None:
        raise InvalidArgument(f"{change.id} is a change, not a workflow run: leave out {step!r}")
    return "change", change


def _matching_changes(store: StateStore, prefix: str) -> list[ChangeRecord]:
    folder = f"changes/{prefix[:8]}" if len(prefix) >= 8 else "changes"
    found = []
    for path in store.list(folder):
        name = path.rsplit("/", 1)[-1]
        if path.endswith(".yaml") and name.startswith(prefix):
            data = store.read(path)
            if data is not None:
                found.append(change_from_yaml(data))
    return sorted(found, key=lambda c: c.id)
