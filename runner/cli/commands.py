"""Every command module, imported for its registration on the ``cli`` group."""

from __future__ import annotations

from runner.cli import (
    cmd_apply,
    cmd_changes,
    cmd_graph,
    cmd_history,
    cmd_init,
    cmd_pause,
    cmd_plan,
    cmd_promote,
    cmd_properties,
    cmd_reconcile,
    cmd_schedules,
    cmd_validate,
    cmd_workflow,
)

__all__ = [
    "cmd_apply",
    "cmd_changes",
    "cmd_graph",
    "cmd_history",
    "cmd_init",
    "cmd_pause",
    "cmd_plan",
    "cmd_promote",
    "cmd_properties",
    "cmd_reconcile",
    "cmd_schedules",
    "cmd_validate",
    "cmd_workflow",
]
