"""Which nodes changed between two snapshots, decided by each node's effective-input digest.

A node's digest hashes what it would run with: its converged properties (layers 1–5, secret
references as names, never values), the definitions of the actions it would run (without file
positions, so moving lines or editing comments moves nothing), and where its template comes from
(the pinned version's commit, or the tree of the template's other files). Outputs recorded by
earlier runs are not inputs. Two snapshots are compared node by node; reasons name what moved.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from runner.loading.snapshot import Snapshot
from runner.loading.yamlfile import SecretRef
from runner.model import Action, Asset, Template
from runner.properties.converge import Converger
from runner.properties.merge import Provenance, leaves

CREATED, MODIFIED, DELETED = "created", "modified", "deleted"
_MISSING = object()


@dataclass(frozen=True)
class PropertyChange:
    """One leaf that differs; ``old``/``new`` hold secret references, never values."""

    key: str
    old: Any
    new: Any
    layer: str | None  # where the new value (or, for a removal, the old one) was set
    file: str | None
    line: int | None

    @property
    def kind(self) -> str:
        if self.old is _MISSING:
            return "added"
        if self.new is _MISSING:
            return "removed"
        return "changed"


def is_missing(value: Any) -> bool:
    return value is _MISSING


@dataclass(frozen=True)
class NodeInputs:
    """A node's effective inputs in one snapshot, and their digest."""

    path: str
    values: dict[str, Any]
    actions: dict[str, Any]  # canonical action definitions (positions stripped)
    template_source: str  # "commit <sha>" for a pinned version, "tree <id>" otherwise
    digest: str


@dataclass(frozen=True)
class NodeDiff:
    node: str
    change: str  # created | modified | deleted
    reasons: tuple[str, ...]
    properties: tuple[PropertyChange, ...]
    base_digest: str | None
    head_digest: str | None


class Inputs:
    """Effective inputs of a snapshot's assets, computed on demand and remembered."""

    def __init__(self, snapshot: Snapshot, converger: Converger | None = None) -> None:
        self.snapshot = snapshot
        self.converger = converger or Converger(snapshot)
        self._memo: dict[str, NodeInputs] = {}
        self._actions: dict[tuple[int, int], dict[str, Any]] = {}
        self._action_digests: dict[tuple[int, int], str] = {}

    def of(self, path: str) -> NodeInputs:
        found = self._memo.get(path)
        if found is None:
            found = self._memo[path] = self._compute(path)
        return found

    def _compute(self, path: str) -> NodeInputs:
        snap = self.snapshot
        asset = snap.assets[path]
        template = snap.template_of(asset)
        values = self.converger.values(path)
        actions = self._canonical_actions(asset, template)
        source = _template_source(snap, template)
        payload = json.dumps(
            {
                "values": secret_safe(values),
                "actions": self._actions_digest(asset, template, actions),
                "template": source,
            },
            sort_keys=True,
            default=_encode,
            separators=(",", ":"),
        )
        digest = hashlib.sha256(payload.encode()).hexdigest()
        return NodeInputs(path, values, actions, source, digest)

    def _actions_digest(
        self, asset: Asset, template: Template | None, actions: dict[str, Any]
    ) -> str:
        """The hash of the canonical actions, computed once per template and project."""
        key = (id(template), id(self.snapshot.projects.get(asset.project)))
        found = self._action_digests.get(key)
        if found is None:
            text = json.dumps(actions, sort_keys=True, default=_encode, separators=(",", ":"))
            found = self._action_digests[key] = hashlib.sha256(text.encode()).hexdigest()
        return found

    def _canonical_actions(self, asset: Asset, template: Template | None) -> dict[str, Any]:
        """Shared by every asset of a template in a project: computed once per pair."""
        project = self.snapshot.projects.get(asset.project)
        key = (id(template), id(project))
        found = self._actions.get(key)
        if found is None:
            found = self._actions[key] = _canonical_actions(
                runnable_actions(self.snapshot, asset, template)
            )
        return found


def runnable_actions(snap: Snapshot, asset: Asset, template: Template | None) -> dict[str, Action]:
    """The actions a node's create/change/delete/check events can reach, child actions included:
    a node's inputs are those it would run, not every action its template defines."""
    available = snap.actions_of(asset)
    events = (
        (template.on_create, template.on_change, template.on_delete, template.check)
        if template is not None
        else ()
    )
    wanted = [event.value for event in events if event is not None]
    found: dict[str, Action] = {}
    while wanted:
        name = wanted.pop()
        if name in found or name not in available:
            continue
        action = found[name] = available[name]
        wanted.extend(s.action.value for s in action.all_steps() if s.action is not None)
    return dict(sorted(found.items()))


def _canonical_actions(actions: dict[str, Action]) -> dict[str, Any]:
    return {name: _strip_positions(action) for name, action in actions.items()}


def _strip_positions(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _strip_positions(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name != "pos"
        }
    if isinstance(value, tuple | list):
        return [_strip_positions(v) for v in value]
    if isinstance(value, dict):
        return {k: _strip_positions(v) for k, v in value.items()}
    return value


def _template_source(snap: Snapshot, template: Template | None) -> str:
    if template is None:
        return "none"
    if template.commit is not None:
        return f"commit {template.commit}"
    return f"tree {snap.template_trees.get(template.code, '')}"


def _encode(value: Any) -> Any:
    raise TypeError(f"cannot digest {type(value).__name__}")


def secret_safe(value: Any) -> Any:
    """Secret references as ``{"$secret": NAME}`` (digests and JSON records)."""
    if isinstance(value, SecretRef):
        return {"$secret": value.name}
    if isinstance(value, dict):
        return {k: secret_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [secret_safe(v) for v in value]
    return value


# --- comparing two snapshots ---------------------------------------------------------------------


def changed_nodes(base: Inputs | None, head: Inputs) -> list[NodeDiff]:
    """Every asset created, modified (digest moved) or deleted from ``base`` to ``head``."""
    head_paths = set(head.snapshot.assets)
    base_paths = set(base.snapshot.assets) if base is not None else set()
    found: list[NodeDiff] = []
    for path in sorted(head_paths | base_paths):
        if path not in base_paths:
            found.append(_created(head, path))
        elif path not in head_paths:
            assert base is not None
            found.append(_deleted(base, path))
        else:
            assert base is not None
            if base.snapshot.input_key(path) == head.snapshot.input_key(path):
                continue  # same blobs, same template source: same inputs
            before, after = base.of(path), head.of(path)
            if before.digest != after.digest:
                found.append(_modified(base, head, path, before, after))
    return found


def _created(head: Inputs, path: str) -> NodeDiff:
    after = head.of(path)
    provenance = head.converger.converge(path).provenance
    props = tuple(
        _change(key, _MISSING, value, provenance.get(key)) for key, value in leaves(after.values)
    )
    reason = f"new node ({head.snapshot.assets[path].file})"
    return NodeDiff(path, CREATED, (reason,), props, None, after.digest)


def _deleted(base: Inputs, path: str) -> NodeDiff:
    before = base.of(path)
    provenance = base.converger.converge(path).provenance
    props = tuple(
        _change(key, value, _MISSING, provenance.get(key)) for key, value in leaves(before.values)
    )
    asset_file = base.snapshot.assets[path].file
    return NodeDiff(path, DELETED, (f"{asset_file} was removed",), props, before.digest, None)


def _modified(
    base: Inputs, head: Inputs, path: str, before: NodeInputs, after: NodeInputs
) -> NodeDiff:
    props = tuple(property_diff(base, head, path, before.values, after.values))
    reasons = _property_reasons(base, head, path, props)
    for name in sorted(set(before.actions) | set(after.actions)):
        if before.actions.get(name) != after.actions.get(name):
            if name not in before.actions:
                reasons.append(f"action {name} added")
            elif name not in after.actions:
                reasons.append(f"action {name} removed")
            else:
                reasons.append(f"action {name} changed")
    if before.template_source != after.template_source:
        reasons.append(_template_reason(head, path, before.template_source, after.template_source))
    return NodeDiff(path, MODIFIED, tuple(reasons), props, before.digest, after.digest)


def _property_reasons(
    base: Inputs, head: Inputs, path: str, props: tuple[PropertyChange, ...]
) -> list[str]:
    """Which files moved the changed leaves: of the places the old and the new value were set,
    those whose content changed between the two commits (an override removed from an asset file
    names the asset file, not the template default that now shows through)."""
    if not props:
        return []
    base_prov = base.converger.converge(path).provenance
    head_prov = head.converger.converge(path).provenance
    found: set[tuple[str, str]] = set()
    for change in props:
        key = tuple(change.key.split("."))
        places = [p for p in (base_prov.get(key), head_prov.get(key)) if p is not None]
        moved = [p for p in places if _file_moved(base, head, p.file)]
        for place in moved or places[-1:]:
            found.add((place.layer, place.file))
    return [f"properties changed in {layer} {file}" for layer, file in sorted(found)]


def _file_moved(base: Inputs, head: Inputs, file: str) -> bool:
    return base.snapshot.blobs.get(file) != head.snapshot.blobs.get(file)


def _template_reason(head: Inputs, path: str, old: str, new: str) -> str:
    asset = head.snapshot.assets[path]
    label = asset.template.value + (f"@{asset.version}" if asset.version else "")
    if new.startswith("commit ") and old.startswith("commit "):
        return f"template {label} now at commit {new.split()[1][:12]} (was {old.split()[1][:12]})"
    if new.startswith("commit "):
        return f"template {label} pinned to commit {new.split()[1][:12]}"
    return f"template {label} files changed"


def property_diff(
    base: Inputs, head: Inputs, path: str, old: dict[str, Any], new: dict[str, Any]
) -> Iterator[PropertyChange]:
    old_leaves = dict(leaves(old))
    new_leaves = dict(leaves(new))
    if old_leaves == new_leaves:
        return
    head_prov = head.converger.converge(path).provenance
    base_prov: dict[tuple[str, ...], Provenance] | None = None
    for key in sorted(set(old_leaves) | set(new_leaves)):
        before = old_leaves.get(key, _MISSING)
        after = new_leaves.get(key, _MISSING)
        if before is not _MISSING and after is not _MISSING and _same(before, after):
            continue
        if after is _MISSING:
            if base_prov is None:
                base_prov = base.converger.converge(path).provenance
            yield _change(key, before, after, base_prov.get(key))
        else:
            yield _change(key, before, after, head_prov.get(key))


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same type: ``1`` is not ``true``, a secret named X is not the text X."""
    return type(a) is type(b) and a == b


def _change(key: tuple[str, ...], old: Any, new: Any, prov: Provenance | None) -> PropertyChange:
    return PropertyChange(
        key=".".join(key),
        old=old,
        new=new,
        layer=prov.layer if prov else None,
        file=prov.file if prov else None,
        line=prov.line if prov else None,
    )
