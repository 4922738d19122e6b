"""``runner properties PATH``: a node's converged properties with provenance.

Outputs recorded by earlier runs (``outputs/<node>.yaml`` on the state branch) appear under the
reserved ``outputs`` key, with the state branch as their provenance.
"""

from __future__ import annotations

from runner.loading.source import OpsRepo
from runner.operations.validate import load_valid
from runner.properties.merge import Converged
from runner.state.records import node_file, read_yaml


def node_properties(ops: OpsRepo, path: str, rev: str | None) -> Converged:
    valid = load_valid(ops, rev)
    node = normalise_path(path)
    outputs = recorded_outputs(ops, valid.snapshot.settings.state_branch, node)
    return valid.converger.converge(node, outputs or None)


def recorded_outputs(ops: OpsRepo, branch: str, node: str) -> dict[str, object]:
    git = ops.git
    tip = git.try_resolve(f"refs/heads/{branch}") if git is not None else None
    if git is None or tip is None:
        return {}
    found = git.read_path(tip, node_file("outputs", node))
    return read_yaml(found[1]) if found is not None else {}


def normalise_path(path: str) -> str:
    """Node paths as users type them: a missing leading slash or a trailing one is fine."""
    return "/" + path.strip().strip("/")
