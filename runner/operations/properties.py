"""``runner properties PATH``: a node's converged properties with provenance.

Outputs recorded by earlier runs (``outputs/<node>.yaml`` on the state branch) appear under the
reserved ``outputs`` key, with the state branch as their provenance.
"""

from __future__ import annotations

from runner.loading.source import OpsRepo
from runner.model import Settings
from runner.operations.validate import load_valid
from runner.properties.merge import Converged
from runner.state.records import node_file, read_yaml
from runner.state.store import StateStore


def node_properties(ops: OpsRepo, path: str, rev: str | None) -> Converged:
    valid = load_valid(ops, rev)
    node = normalise_path(path)
    outputs = recorded_outputs(ops, valid.snapshot.settings, node)
    return valid.converger.converge(node, outputs or None)


def recorded_outputs(ops: OpsRepo, settings: Settings, node: str) -> dict[str, object]:
    if ops.git is None:
        return {}
    return read_yaml(StateStore.for_settings(ops.git, settings).read(node_file("outputs", node)))


def normalise_path(path: str) -> str:
    """Node paths as users type them: a missing leading slash or a trailing one is fine."""
    return "/" + path.strip().strip("/")
