"""``runner unlock PATH --force``: break a stale lease, and say so in the audit events."""

from __future__ import annotations

import os

from runner.identity import current_user
from runner.loading.snapshot import read_settings
from runner.loading.source import OpsRepo
from runner.state import leases as leases
from runner.state.events import record_event
from runner.state.records import iso
from runner.state.store import StateStore


def unlock(ops: OpsRepo, node: str) -> leases.Lease | None:
    settings = read_settings(ops)
    git = ops.require_git()
    store = StateStore.for_settings(git, settings)
    if settings.state_remote:
        store.sync()
    removed = leases.force_unlock(store, node)
    if removed is not None:
        record_event(
            store,
            "unlock",
            f"lease on {node} broken by force",
            by=current_user(os.environ, git),
            node=node,
            removed={
                "holder": removed.holder,
                "change": removed.change,
                "expires": iso(removed.expires),
            },
        )
        if settings.state_remote:
            store.push()
    return removed
