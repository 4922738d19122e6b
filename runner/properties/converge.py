"""Converged properties of the nodes of a snapshot (SPEC 2.3).

Layers, lowest first: template defaults (at the pinned version) → ``properties.yaml`` → project →
environment → asset → recorded outputs (under the reserved key ``outputs``) → run overrides.
A ``Converger`` remembers wrapped layers and merged prefixes, so converging 10,000 assets that
share templates, projects and environments merges each shared prefix once.
"""

from __future__ import annotations

from typing import Any

from runner.errors import InvalidArgument
from runner.loading.snapshot import Snapshot
from runner.model import Asset, Layer
from runner.properties.merge import (
    Branch,
    Converged,
    merge,
    merge_values,
    under_key,
    unwrap,
    wrap,
)


class Converger:
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._wrapped: dict[int, Branch] = {}
        self._prefixes: dict[tuple[int, ...], Branch] = {}
        self._value_prefixes: dict[tuple[int, ...], dict[str, Any]] = {}
        self._converged: dict[str, Converged] = {}  # layers 1–5 only; results are not mutated

    def _wrap(self, layer: Layer) -> Branch:
        key = id(layer)
        found = self._wrapped.get(key)
        if found is None:
            found = self._wrapped[key] = wrap(layer)
        return found

    def has_layers(self, asset: Asset) -> bool:
        """False when the asset's project or environment file is missing or broken (that file
        has its own problem; the asset cannot be converged meanwhile)."""
        snap = self.snapshot
        if asset.project not in snap.projects:
            return False
        return asset.environment is None or asset.parent_path in snap.environments

    def layers(self, path: str) -> list[Layer]:
        """The file layers (1–5) of a node, lowest first."""
        snap = self.snapshot
        if path in snap.assets:
            asset = snap.assets[path]
            template = snap.template_of(asset)
            found = [template.properties] if template is not None else []
            found += [snap.repo_properties, snap.projects[asset.project].properties]
            if asset.environment is not None:
                env = snap.environments[asset.parent_path]
                found.append(env.properties)
            found.append(asset.properties)
            return found
        if path in snap.environments:
            env = snap.environments[path]
            return [snap.repo_properties, snap.projects[env.project].properties, env.properties]
        parts = path.split("/")
        if len(parts) == 3 and parts[1] == "projects" and parts[2] in snap.projects:
            return [snap.repo_properties, snap.projects[parts[2]].properties]
        raise InvalidArgument(f"{path}: no such node")

    def merged(
        self,
        path: str,
        outputs: dict[str, Any] | None = None,
        overrides: Layer | None = None,
    ) -> Branch:
        layers = self.layers(path)
        prefix_key = tuple(id(layer) for layer in layers[:-1])
        prefix = self._prefixes.get(prefix_key)
        if prefix is None:
            prefix = self._prefixes[prefix_key] = merge(self._wrap(x) for x in layers[:-1])
        extra = [self._wrap(layers[-1])]
        if outputs:
            layer = Layer("outputs", f"state:outputs{path}.yaml", outputs)
            extra.append(under_key("outputs", wrap(layer)))
        if overrides is not None:
            extra.append(wrap(overrides))
        return merge([prefix, *extra])

    def converge(
        self,
        path: str,
        outputs: dict[str, Any] | None = None,
        overrides: Layer | None = None,
    ) -> Converged:
        if outputs or overrides is not None:
            return unwrap(self.merged(path, outputs, overrides))
        found = self._converged.get(path)
        if found is None:
            found = self._converged[path] = unwrap(self.merged(path))
        return found

    def values(self, path: str) -> dict[str, Any]:
        """The converged values of layers 1–5 without provenance (the fast path)."""
        layers = self.layers(path)
        key = tuple(id(layer) for layer in layers[:-1])
        prefix = self._value_prefixes.get(key)
        if prefix is None:
            prefix = {}
            for layer in layers[:-1]:
                prefix = merge_values(prefix, layer.values)
            self._value_prefixes[key] = prefix
        return merge_values(prefix, layers[-1].values)
