"""Every command module, imported for its registration on the ``cli`` group."""

from __future__ import annotations

from runner.cli import (
    cmd_apply,
    cmd_changes,
    cmd_graph,
    cmd_init,
    cmd_plan,
    cmd_properties,
    cmd_validate,
)

__all__ = [
    "cmd_apply",
    "cmd_changes",
    "cmd_graph",
    "cmd_init",
    "cmd_plan",
    "cmd_properties",
    "cmd_validate",
]
