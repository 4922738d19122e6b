"""``runner unlock PATH --force``: break a stale lease, and say so in the audit events."""

from __future__ import annotations

import os

from runner.loading.snapshot import read_settings
from runner.loading.source import OpsRepo
from runner.state import leases as leases
from runner.state.records import dump, iso, new_id, now
from runner.state.store import StateStore


def unlock(ops: OpsRepo, node: str) -> leases.Lease | None:
    settings = read_settings(ops)
    git = ops.require_git()
    store = StateStore.for_settings(git, settings)
    if settings.state_remote:
        store.sync()
    removed = leases.force_unlock(store, node)
    if removed is not None:
        event_id = new_id()
        sig = git.signature()
        body = {
            "id": event_id,
            "kind": "unlock",
            "node": node,
            "by": os.environ.get("GITHUB_ACTOR") or f"{sig.name} <{sig.email}>",
            "time": iso(now()),
            "removed": {
                "holder": removed.holder,
                "change": removed.change,
                "expires": iso(removed.expires),
            },
        }
        path = f"events/{event_id[:8]}/{event_id}.yaml"
        store.update(lambda view: {path: dump(body)}, f"runner: unlock {node}")
        if settings.state_remote:
            store.push()
    return removed
