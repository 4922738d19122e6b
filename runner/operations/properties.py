"""``runner properties PATH``: a node's converged properties with provenance."""

from __future__ import annotations

from runner.loading.source import OpsRepo
from runner.operations.validate import load_valid
from runner.properties.merge import Converged


def node_properties(ops: OpsRepo, path: str, rev: str | None) -> Converged:
    valid = load_valid(ops, rev)
    return valid.converger.converge(normalise_path(path))


def normalise_path(path: str) -> str:
    """Node paths as users type them: a missing leading slash or a trailing one is fine."""
    return "/" + path.strip().strip("/")
