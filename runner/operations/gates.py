"""Change approvals (SPEC 2.5, OpsChain's change approvals): a node whose environment or project
sets ``requires_approval_from`` never runs unapproved, whoever starts the change (a push, a
cron reconcile, ``runner run`` or a workflow).

Such a change is recorded with status ``waiting`` and ``waiting_for`` the groups, and listed in
``waiting/<node>.yaml`` under a *key* saying what exactly waits: for ``apply`` the node's
effective-input digest, for other changes the kind, run, step, action and commit. Asking again
with the same key finds the same record instead of making another, so a push every few minutes
leaves one waiting change per node, not one per push. ``runner approve CHANGE`` writes
``approvals/<change-id>.yaml``; the next asker with that key runs the approved record. An
apply whose node moved on to new inputs supersedes (cancels) the older waiting change: an
approval covers the inputs that were shown, never later ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from runner.loading.snapshot import Snapshot
from runner.state.records import (
    ChangeRecord,
    change_from_yaml,
    change_to_yaml,
    dump,
    iso,
    node_file,
    now,
    read_yaml,
)
from runner.state.store import StateStore, StateView


def groups_for(node: str, *snapshots: Snapshot | None) -> tuple[str, ...]:
    """The groups that must approve changes of ``node`` (its environment's and project's
    ``requires_approval_from``), from the first snapshot that has the node."""
    for snap in snapshots:
        if snap is None or node not in snap.assets:
            continue
        asset = snap.assets[node]
        found: list[str] = []
        env = snap.environments.get(asset.parent_path)
        if env is not None:
            found += [r.value for r in env.settings.requires_approval_from]
        project = snap.projects.get(asset.project)
        if project is not None:
            found += [r.value for r in project.settings.requires_approval_from]
        return tuple(dict.fromkeys(found))
    return ()


def index_path(node: str) -> str:
    return node_file("waiting", node)


def approval_path(change_id: str) -> str:
    return f"approvals/{change_id}.yaml"


@dataclass(frozen=True)
class Request:
    """A change that must wait: the record to write when none waits under ``key`` yet."""

    key: str
    record: ChangeRecord
    supersedes: str | None = None  # a key prefix: older entries under it are cancelled


@dataclass(frozen=True)
class Held:
    record: ChangeRecord  # the waiting (or decided) record under the request's key
    decision: dict[str, Any] | None  # approvals/<id>.yaml, once someone decided


def hold(store: StateStore, requests: Mapping[str, Request]) -> dict[str, Held]:
    """Record every request (node → Request) as waiting unless one waits under its key already;
    one compare-and-swap commit. Returns what now stands for each node."""

    def mutate(view: StateView) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = {}
        for node, request in sorted(requests.items()):
            path = index_path(node)
            entries = list(read_yaml(view.read(path)).get("entries") or ())
            if any(e.get("key") == request.key for e in entries):
                continue
            kept = []
            for entry in entries:
                old = str(entry.get("key"))
                if request.supersedes and old.startswith(request.supersedes):
                    out.update(_cancel(view, str(entry.get("change")), request.record.id))
                else:
                    kept.append(entry)
            kept.append({"key": request.key, "change": request.record.id})
            out[path] = dump({"node": node, "entries": kept})
            out[request.record.path] = change_to_yaml(request.record)
        return out

    nodes = ", ".join(sorted(requests))
    store.update(mutate, f"runner: changes waiting for approval ({nodes})")
    held: dict[str, Held] = {}
    for node, request in requests.items():
        entries = read_yaml(store.read(index_path(node))).get("entries") or ()
        change_id = next(str(e["change"]) for e in entries if e.get("key") == request.key)
        data = store.read(f"changes/{change_id[:8]}/{change_id}.yaml")
        record = change_from_yaml(data) if data is not None else request.record
        decision = read_yaml(store.read(approval_path(change_id))) or None
        held[node] = Held(record, decision)
    return held


def _cancel(
    view: StateView, change_id: str, by: str, reason: str | None = None
) -> dict[str, bytes | None]:
    path = f"changes/{change_id[:8]}/{change_id}.yaml"
    data = view.read(path)
    if data is None:
        return {}
    record = change_from_yaml(data)
    if record.status != "waiting":
        return {}
    reason = reason or f"superseded by change {by}: the node's inputs moved on"
    cancelled = replace(
        record, status="cancelled", finished=iso(now()), reasons=(*record.reasons, reason)
    )
    return {path: change_to_yaml(cancelled)}


def release(store: StateStore, node: str, change_id: str) -> None:
    """Take a change that ran (or ended) off its node's waiting list."""

    def mutate(view: StateView) -> dict[str, bytes | None]:
        path = index_path(node)
        entries = list(read_yaml(view.read(path)).get("entries") or ())
        kept = [e for e in entries if e.get("change") != change_id]
        if len(kept) == len(entries):
            return {}
        return {path: dump({"node": node, "entries": kept}) if kept else None}

    store.update(mutate, f"runner: change {change_id} off the waiting list of {node}")


def settle(store: StateStore, node: str, key: str, change_id: str) -> None:
    """The node reached the inputs a waiting change under ``key`` asked for by another way (a
    workflow or an ad-hoc run deployed them): that change has nothing left to do."""

    def mutate(view: StateView) -> dict[str, bytes | None]:
        path = index_path(node)
        entries = list(read_yaml(view.read(path)).get("entries") or ())
        done = [e for e in entries if e.get("key") == key]
        if not done:
            return {}
        reason = f"not needed: change {change_id} brought the node to these inputs"
        out: dict[str, bytes | None] = {}
        for entry in done:
            out.update(_cancel(view, str(entry.get("change")), change_id, reason))
        kept = [e for e in entries if e.get("key") != key]
        out[path] = dump({"node": node, "entries": kept}) if kept else None
        return out

    store.update(mutate, f"runner: waiting change of {node} settled by change {change_id}")
