"""Audit events on the state branch (SPEC 4): ``events/<date>/<id>.yaml``.

An event is a flat mapping ``{id, kind, time, by, node?, message, ...details}``; ``kind`` is
one of ``unlock``, ``pause``, ``resume``, ``approve``, ``reject``, ``continue``, ``cancel``,
``schedule``, ``drift``, ``heal``. Events are append-only: each is a new file, so two writers
never touch the same one.
"""

from __future__ import annotations

from typing import Any

from runner.state.records import dump, iso, new_id, now, read_yaml
from runner.state.store import StateStore, StateView

EVENTS = "events"


def event_path(event_id: str) -> str:
    return f"{EVENTS}/{event_id[:8]}/{event_id}.yaml"


def new_event(
    kind: str, message: str, *, by: str | None = None, node: str | None = None, **details: Any
) -> tuple[str, bytes]:
    """An event's path and bytes, ready to go into a ``StateStore.update`` mutation next to the
    record it explains (one commit: the record and its event never disagree)."""
    event_id = new_id()
    body: dict[str, Any] = {"id": event_id, "kind": kind, "time": iso(now())}
    if by is not None:
        body["by"] = by
    if node is not None:
        body["node"] = node
    body["message"] = message
    body.update({k: v for k, v in details.items() if v is not None})
    return event_path(event_id), dump(body)


def record_event(
    store: StateStore,
    kind: str,
    message: str,
    *,
    by: str | None = None,
    node: str | None = None,
    **details: Any,
) -> str:
    """Commit one event on its own; returns its path."""
    path, data = new_event(kind, message, by=by, node=node, **details)

    def mutate(view: StateView) -> dict[str, bytes | None]:
        return {path: data}

    store.update(mutate, f"runner: {kind} event" + (f" on {node}" if node else ""))
    return path


def list_events(store: StateStore) -> list[dict[str, Any]]:
    """Every event, oldest first."""
    found = [read_yaml(store.read(p)) for p in store.list(EVENTS) if p.endswith(".yaml")]
    return sorted(found, key=lambda e: (str(e.get("time") or ""), str(e.get("id") or "")))
