"""Merging property layers, with the provenance of every leaf.

Pure functions over immutable values: nothing passed in is ever mutated, and results share
unchanged subtrees with their inputs. Rules (SPEC 2.3):

* mappings merge key by key (deepmerge does the walking, with the strategies below);
* lists and scalars replace; ``null`` is a value, not a delete;
* ``!append`` / ``!prepend`` extend the lower layers' list, ``!replace`` replaces a mapping
  instead of merging into it, ``!delete`` removes the key from the lower layers;
* ``!secret NAME`` and ``{secret: NAME}`` stay references (``SecretRef``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from deepmerge import Merger

from runner.loading.yamlfile import DELETE, Append, Mapping, Prepend, Replace, SecretRef
from runner.model import Layer


@dataclass(frozen=True)
class Provenance:
    """Where a converged leaf came from."""

    layer: str
    file: str
    line: int

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{self.layer} {where}"


class Leaf:
    """A scalar, list, tag marker or secret reference, with where it was set."""

    __slots__ = ("prov", "value")

    def __init__(self, value: Any, prov: Provenance) -> None:
        self.value = value
        self.prov = prov


class Branch(dict[str, "Branch | Leaf"]):
    """A mapping of wrapped values; ``prov`` is the layer that last set it. Never mutated once
    built. ``marked``: some value below is a tag marker that a fresh insertion must resolve."""

    __slots__ = ("marked", "prov")

    def __init__(self, prov: Provenance, marked: bool = False) -> None:
        super().__init__()
        self.prov = prov
        self.marked = marked


class ReplaceBranch(Branch):
    __slots__ = ()


@dataclass(frozen=True)
class Converged:
    """A node's converged properties: plain values (secrets as ``SecretRef``) and the provenance
    of every leaf, keyed by its key path (an empty mapping counts as a leaf)."""

    values: dict[str, Any]
    provenance: dict[tuple[str, ...], Provenance]


# --- wrapping a layer ---------------------------------------------------------------------------


def wrap(layer: Layer) -> Branch:
    """A layer's values as a Branch tree carrying provenance."""
    values = layer.values
    line = values.line if isinstance(values, Mapping) else 0
    return _wrap_mapping(values, layer.name, layer.file, line)


def _wrap_mapping(values: dict[str, Any], layer: str, file: str, line: int) -> Branch:
    key_lines = values.key_lines if isinstance(values, Mapping) else {}
    cls = ReplaceBranch if isinstance(values, Replace) else Branch
    out = cls(Provenance(layer, file, line))
    marked = False
    for key, value in values.items():
        key_line = key_lines.get(key, line)
        wrapped = _wrap_value(value, layer, file, key_line)
        if isinstance(wrapped, Branch):
            marked = marked or wrapped.marked or isinstance(wrapped, ReplaceBranch)
        elif wrapped.value is DELETE or isinstance(wrapped.value, Append | Prepend):
            marked = True
        out[key] = wrapped
    out.marked = marked
    return out


def _wrap_value(value: Any, layer: str, file: str, line: int) -> Branch | Leaf:
    if isinstance(value, dict):
        secret = _secret_form(value)
        if secret is not None:
            return Leaf(secret, Provenance(layer, file, line))
        return _wrap_mapping(value, layer, file, line)
    if isinstance(value, list) and not isinstance(value, Append | Prepend):
        return Leaf(_plain(value), Provenance(layer, file, line))
    return Leaf(value, Provenance(layer, file, line))


def _secret_form(value: dict[str, Any]) -> SecretRef | None:
    if len(value) == 1 and isinstance(value.get("secret"), str):
        return SecretRef(value["secret"])
    return None


def _plain(value: Any) -> Any:
    """Values inside lists: plain dicts and lists, secret forms as references."""
    if isinstance(value, dict):
        secret = _secret_form(value)
        if secret is not None:
            return secret
        return {k: _plain(v) for k, v in value.items() if v is not DELETE}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --- merging ------------------------------------------------------------------------------------


def _settle(value: Branch | Leaf) -> Branch | Leaf:
    """A value inserted where the lower layers had nothing: tags resolve against nothing."""
    if isinstance(value, Leaf):
        if isinstance(value.value, Append | Prepend):
            return Leaf(_plain(list(value.value)), value.prov)
        return value
    return _settle_branch(value)


def _settle_branch(value: Branch) -> Branch:
    if not value.marked and not isinstance(value, ReplaceBranch):
        return value
    out = Branch(value.prov)
    for key, child in value.items():
        if isinstance(child, Leaf) and child.value is DELETE:
            continue
        out[key] = _settle(child)
    return out


def _merge_branches(config: Merger, path: list[str], base: Branch, nxt: Branch) -> Branch:
    if isinstance(nxt, ReplaceBranch):
        return _settle_branch(nxt)
    out = Branch(nxt.prov)
    out.update(base)
    for key, value in nxt.items():
        if isinstance(value, Leaf) and value.value is DELETE:
            out.pop(key, None)
        elif key not in out:
            out[key] = _settle(value)
        else:
            out[key] = config.value_strategy([*path, key], out[key], value)
    return out


def _merge_other(config: Merger, path: list[str], base: Branch | Leaf, nxt: Branch | Leaf) -> Any:
    if isinstance(nxt, Leaf) and isinstance(nxt.value, Append | Prepend):
        lower = base.value if isinstance(base, Leaf) and isinstance(base.value, list) else []
        extra = _plain(list(nxt.value))
        merged = [*lower, *extra] if isinstance(nxt.value, Append) else [*extra, *lower]
        return Leaf(merged, nxt.prov)
    return _settle(nxt)


MERGER = Merger([(Branch, _merge_branches)], [_merge_other], [_merge_other])


def merge(layers: Iterable[Branch]) -> Branch:
    """Merge wrapped layers, lowest first. Inputs are never mutated."""
    result: Branch | None = None
    for layer in layers:
        result = _settle_branch(layer) if result is None else MERGER.merge(result, layer)
    return result if result is not None else Branch(Provenance("none", "", 0))


def under_key(key: str, branch: Branch) -> Branch:
    """``branch`` placed under one top-level key (how recorded outputs join the properties)."""
    out = Branch(branch.prov, branch.marked)
    out[key] = branch
    return out


# --- unwrapping ---------------------------------------------------------------------------------


def unwrap(branch: Branch) -> Converged:
    provenance: dict[tuple[str, ...], Provenance] = {}
    values = _unwrap(branch, (), provenance)
    return Converged(values, provenance)


def _unwrap(
    branch: Branch, path: tuple[str, ...], provenance: dict[tuple[str, ...], Provenance]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, child in branch.items():
        here = (*path, key)
        if isinstance(child, Branch):
            out[key] = _unwrap(child, here, provenance)
            if not child:
                provenance[here] = child.prov
        else:
            out[key] = child.value
            provenance[here] = child.prov
    return out


def values_only(branch: Branch) -> dict[str, Any]:
    """The plain values, without provenance (the fast path for schema checks)."""
    return {
        key: values_only(child) if isinstance(child, Branch) else child.value
        for key, child in branch.items()
    }


def leaves(values: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every leaf of a plain value tree (an empty mapping is a leaf), in key order."""
    if isinstance(values, dict) and values:
        for key in sorted(values):
            yield from leaves(values[key], (*path, key))
    else:
        yield path, values


# --- values only --------------------------------------------------------------------------------
# The same rules on plain values, without provenance: the hot path of validation and planning
# (10,000 assets). A property test keeps it equal to ``unwrap(merge(...)).values``.


def merge_values(base: dict[str, Any] | None, layer: dict[str, Any]) -> dict[str, Any]:
    """``layer`` (a loaded mapping, tags included) merged over plain ``base``; no mutation."""
    if base is None or isinstance(layer, Replace):
        return settle_values(layer)
    out = dict(base)
    for key, value in layer.items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, dict):
            secret = _secret_form(value)
            if secret is not None:
                out[key] = secret
            else:
                current = out.get(key)
                out[key] = (
                    merge_values(current, value)
                    if isinstance(current, dict) and not isinstance(value, Replace)
                    else settle_values(value)
                )
        elif isinstance(value, Append | Prepend):
            current = out.get(key)
            lower = current if isinstance(current, list) else []
            extra = _plain(list(value))
            out[key] = [*lower, *extra] if isinstance(value, Append) else [*extra, *lower]
        elif isinstance(value, list):
            out[key] = _plain(value)
        else:
            out[key] = value
    return out


def settle_values(layer: dict[str, Any]) -> dict[str, Any]:
    """A loaded mapping as plain values, tags resolved against nothing below."""
    return merge_values({}, dict(layer))
