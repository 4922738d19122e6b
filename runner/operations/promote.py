"""``runner promote SOURCE_ENV TARGET_ENV``: a commit on a new branch copying properties from
one environment's assets to another's (Talend's promotions), ready for a pull request.

For each asset code present in both environments, the selected keys of the source asset's
converged properties (layers 1–5) are written into the target asset's own file. Without
``--keys``, the keys are the leaves the source asset's own file sets. A key whose value the
target already converges to is left alone.

The target files are edited as text, so comments, order and every other override survive: a key
the file sets gets its value replaced where it stands; a missing one is added under
``properties:`` as nested block keys with a flow value. The edited files are parsed again, the
commit is validated, and each target asset must converge to exactly the promoted values with
every other leaf unchanged, or nothing is written. The commit's parent is HEAD; the work tree,
the index and the current branch are never touched: only the new branch ref is created.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml

from runner.errors import InvalidArgument, RunnerError
from runner.gitrepo import GitRepo
from runner.loading.snapshot import Snapshot
from runner.loading.source import OpsRepo
from runner.loading.yamlfile import SecretRef, YamlError, parse
from runner.model import Asset
from runner.operations.plan import Planned, PlanRequest, plan
from runner.operations.properties import normalise_path
from runner.operations.validate import load_valid
from runner.properties.converge import Converger
from runner.properties.merge import leaves
from runner.render.values import scalar
from runner.state.records import now

Key = tuple[str, ...]
_MISSING = object()


@dataclass(frozen=True)
class PromoteRequest:
    source: str  # environment node paths
    target: str
    keys: tuple[str, ...] = ()  # dotted keys; empty: what each source asset file sets
    branch: str | None = None  # default: promote/<project>-<source>-to-<target>-<yyyymmddHHMM>


@dataclass(frozen=True)
class Copied:
    asset: str  # the asset code
    file: str  # the target asset file, relative to the ops root
    key: str  # dotted
    old: Any  # the target's converged value before (None when it had none: see ``had_old``)
    new: Any
    had_old: bool


@dataclass(frozen=True)
class Promotion:
    source: str
    target: str
    base: str  # HEAD, the new commit's parent
    copied: tuple[Copied, ...]
    notes: tuple[str, ...]
    branch: str | None = None  # None: nothing to copy, no commit
    commit: str | None = None
    planned: Planned | None = None


def promote(ops: OpsRepo, request: PromoteRequest, moment: datetime | None = None) -> Promotion:
    git = ops.require_git()
    head = git.head_commit()
    if head is None:
        raise InvalidArgument("the repository has no commit to promote from")
    valid = load_valid(ops, head)
    snap = valid.snapshot
    source, target = normalise_path(request.source), normalise_path(request.target)
    for env in (source, target):
        if env not in snap.environments:
            raise InvalidArgument(f"{env}: no such environment at HEAD ({head[:12]})")
    if source == target:
        raise InvalidArgument(f"{source}: source and target are the same environment")
    branch = request.branch or default_branch(snap, source, target, moment or now())
    ref = f"refs/heads/{branch}"
    if git.read_ref(ref) is not None:
        raise InvalidArgument(f"branch {branch} exists already; pass another --branch")

    keys = tuple(_split_key(k) for k in request.keys)
    planner = _Planner(ops, git, head, valid.converger.values)
    notes = planner.pair_assets(snap, source, target, keys)
    if not planner.copied:
        return Promotion(source, target, head, (), tuple(notes))
    commit = planner.commit(source, target)
    _verify(ops, commit, snap, valid.converger, target, planner.copied)
    if not git.compare_and_swap(ref, None, commit):
        raise InvalidArgument(f"branch {branch} exists already; pass another --branch")
    planned = plan(ops, PlanRequest(base=head, head=commit))
    return Promotion(
        source, target, head, tuple(planner.copied), tuple(notes), branch, commit, planned
    )


def default_branch(snap: Snapshot, source: str, target: str, moment: datetime) -> str:
    env = snap.environments[target]
    stamp = moment.strftime("%Y%m%d%H%M")
    return f"promote/{env.project}-{source.rsplit('/', 1)[-1]}-to-{env.code}-{stamp}"


def _split_key(text: str) -> Key:
    parts = tuple(p.strip() for p in text.strip().split("."))
    if not text.strip() or any(not p for p in parts):
        raise InvalidArgument(f"--keys: {text!r} is not a dotted key like image.tag")
    if parts[0] == "outputs":
        raise InvalidArgument(f"--keys: {text!r}: recorded outputs are not promoted")
    return parts


class _Planner:
    """Works out, asset by asset, what to copy and the edited text of each target file."""

    def __init__(
        self, ops: OpsRepo, git: GitRepo, head: str, values: Callable[[str], dict[str, Any]]
    ) -> None:
        self.ops = ops
        self.git = git
        self.head = head
        self.values = values  # converged values (layers 1–5) of a node path at HEAD
        self.copied: list[Copied] = []
        self.texts: dict[str, str] = {}  # target file → edited text

    def pair_assets(
        self, snap: Snapshot, source: str, target: str, keys: tuple[Key, ...]
    ) -> list[str]:
        src = _assets_of(snap, source)
        dst = _assets_of(snap, target)
        notes = [f"{code}: only in {source}, not promoted" for code in sorted(set(src) - set(dst))]
        notes += [
            f"{code}: only in {target}, left as it is" for code in sorted(set(dst) - set(src))
        ]
        for code in sorted(set(src) & set(dst)):
            notes += self._asset(src[code], dst[code], keys)
        return notes

    def _asset(self, src: Asset, dst: Asset, keys: tuple[Key, ...]) -> list[str]:
        notes: list[str] = []
        source_values = self.values(src.path)
        target_values = self.values(dst.path)
        wanted: dict[Key, Any] = {}
        for key in keys or _own_leaves(src):
            value = _lookup(source_values, key)
            if value is _MISSING and not keys:
                key, value = _truncated(source_values, key)
            if value is _MISSING:
                notes.append(f"{src.code}: {'.'.join(key)} is not set in {src.parent_path}")
                continue
            for sub, leaf in _expand(value):
                wanted.setdefault(key + sub, leaf)
        path = f"{self.ops.prefix}/{dst.file}" if self.ops.prefix else dst.file
        original = self.git.read_file(self.head, path)
        if original is None:
            raise RunnerError(f"{dst.file}: not in HEAD although the model has it")
        text = original.decode("utf-8")
        for key, value in wanted.items():
            old = _lookup(target_values, key)
            if old is not _MISSING and _same(old, value):
                if keys:
                    notes.append(f"{dst.code}: {'.'.join(key)} is {scalar(value)} already")
                continue
            text = set_property(text, key, value)
            had_old = old is not _MISSING
            self.copied.append(
                Copied(dst.code, dst.file, ".".join(key), old if had_old else None, value, had_old)
            )
        if text.encode("utf-8") != original:
            try:
                parse(text)
            except YamlError as exc:
                raise RunnerError(
                    f"{dst.file}: the edited file does not parse (line {exc.line}: "
                    f"{exc.message}); nothing was written"
                ) from None
            self.texts[dst.file] = text
        return notes

    def commit(self, source: str, target: str) -> str:
        prefix = self.ops.prefix
        files = {
            (f"{prefix}/{file}" if prefix else file): text.encode("utf-8")
            for file, text in self.texts.items()
        }
        lines = [f"Promote {source} to {target}", ""]
        lines += [
            f"{c.asset}: {c.key} {scalar(c.old) if c.had_old else '(none)'} → {scalar(c.new)}"
            for c in self.copied
        ]
        return self.git.commit_files(self.head, files, "\n".join(lines) + "\n")


def _assets_of(snap: Snapshot, env: str) -> dict[str, Asset]:
    return {a.code: a for a in snap.assets.values() if a.parent_path == env}


def _own_leaves(asset: Asset) -> list[Key]:
    """The leaves the asset's own file sets, in file order (tags and all: ``!delete`` is a
    leaf, found missing from the converged values and noted)."""
    found: list[Key] = []

    def walk(value: Any, path: Key) -> None:
        if isinstance(value, dict) and value:
            for key, child in value.items():
                walk(child, (*path, str(key)))
        elif path:
            found.append(path)

    walk(asset.properties.values, ())
    return found


def _lookup(values: Any, key: Key) -> Any:
    node = values
    for part in key:
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _truncated(values: Any, key: Key) -> tuple[Key, Any]:
    """A key of the file that goes through a value the converged tree holds whole (``{secret:
    NAME}`` written as a mapping is a secret reference): that value and its key."""
    node = values
    for i, part in enumerate(key):
        if not isinstance(node, dict):
            return key[:i], node
        if part not in node:
            return key, _MISSING
        node = node[part]
    return key, node


def _expand(value: Any) -> Iterable[tuple[Key, Any]]:
    """A mapping as its leaves (each copied on its own); anything else as itself."""
    if isinstance(value, dict) and value:
        return list(leaves(value))
    return [((), value)]


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type, all the way down (``1`` is not ``true``, a secret named X is
    not the text X)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# --- checking the result -------------------------------------------------------------------------


def _verify(
    ops: OpsRepo,
    commit: str,
    before: Snapshot,
    old_converger: Converger,
    target: str,
    copied: Sequence[Copied],
) -> None:
    """The new commit validates, and each target asset converges to the promoted values with
    every other leaf as it was; otherwise RunnerError, before any ref is written."""
    after = load_valid(ops, commit)
    wanted: dict[str, dict[Key, Any]] = {}
    for c in copied:
        wanted.setdefault(c.asset, {})[tuple(c.key.split("."))] = c.new
    for code, keys in wanted.items():
        path = f"{target}/assets/{code}"
        old = dict(leaves(old_converger.values(path)))
        new_values = after.converger.values(path)
        problem = _mismatch(keys, old, new_values)
        if problem is not None:
            raise RunnerError(
                f"{before.assets[path].file}: the edit would not converge as intended ({problem});"
                " nothing was written"
            )


def _mismatch(keys: dict[Key, Any], old: dict[Key, Any], new_values: Any) -> str | None:
    for key, value in keys.items():
        found = _lookup(new_values, key)
        if found is _MISSING or not _same(found, value):
            return f"{'.'.join(key)} would be {scalar(found) if found is not _MISSING else 'unset'}"
    new = dict(leaves(new_values))
    for leaf in sorted(set(old) | set(new)):
        if any(_related(leaf, key) for key in keys):
            continue
        if leaf not in old or leaf not in new or not _same(old[leaf], new[leaf]):
            return f"{'.'.join(leaf)} would change too"
    return None


def _related(leaf: Key, key: Key) -> bool:
    """``leaf`` is ``key``, below it, or above it (a value that ``key`` replaces)."""
    n = min(len(leaf), len(key))
    return leaf[:n] == key[:n]


# --- editing YAML as text ------------------------------------------------------------------------


def set_property(text: str, key: Key, value: Any) -> str:
    """``text`` (an asset file) with ``properties.<key>`` set to ``value`` in flow style, the
    rest of the file as it was."""
    root = yaml.compose(text, Loader=yaml.CSafeLoader)
    if not isinstance(root, yaml.MappingNode):
        raise RunnerError("an asset file that is not a mapping cannot be edited")
    newline = "\r\n" if "\r\n" in text else "\n"
    found = _find(root, "properties")
    if found is None or not isinstance(found[1], yaml.MappingNode):
        if found is None:
            return _insert(text, root, ("properties", *key), value, 2, newline)
        return _replace(text, found[0], found[1], _flow_path(key, value))
    props = found[1]
    step = 2
    if not props.flow_style and props.value:
        step = max(1, props.value[0][0].start_mark.column - found[0].start_mark.column)
    return _set_in(text, props, key, value, step, newline)


def _set_in(
    text: str, mapping: yaml.MappingNode, key: Key, value: Any, step: int, newline: str
) -> str:
    found = _find(mapping, key[0])
    if found is None:
        return _insert(text, mapping, key, value, step, newline)
    key_node, node = found
    if len(key) == 1:
        return _replace(text, key_node, node, _flow_value(value))
    if isinstance(node, yaml.MappingNode):
        return _set_in(text, node, key[1:], value, step, newline)
    return _replace(text, key_node, node, _flow_path(key[1:], value))


def _find(mapping: yaml.MappingNode, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    for key_node, value_node in mapping.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return key_node, value_node
    return None


def _is_block(node: yaml.Node) -> bool:
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        return not node.flow_style
    return isinstance(node, yaml.ScalarNode) and node.style in ("|", ">")


def _content_end(text: str, node: yaml.Node) -> int:
    """Where the node's own text ends: a block collection's marks run on to the next key, a
    block scalar's over the blank lines after it."""
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and _is_block(node) and node.value:
        last = node.value[-1]
        return _content_end(text, last[1] if isinstance(node, yaml.MappingNode) else last)
    end = int(node.end_mark.index)
    if _is_block(node):
        while end > node.start_mark.index and text[end - 1] in " \t\r\n":
            end -= 1
    return end


def _replace(text: str, key_node: yaml.Node, node: yaml.Node, flow: str) -> str:
    """The value of ``key_node`` replaced by ``flow``; a comment after a one-line value stays."""
    end = _content_end(text, node)
    if _is_block(node):
        start = text.index(":", key_node.end_mark.index) + 1
        return f"{text[:start]} {flow}{text[end:]}"
    start = int(node.start_mark.index)
    pad = "" if start > 0 and text[start - 1] in " \t" else " "
    return f"{text[:start]}{pad}{flow}{text[end:]}"


def _insert(
    text: str, mapping: yaml.MappingNode, key: Key, value: Any, step: int, newline: str
) -> str:
    """``key`` (nested keys, the last one holding ``value``) added at the end of ``mapping``."""
    if mapping.flow_style:
        entry = f"{_flow_key(key[0])}: {_flow_path(key[1:], value)}"
        if mapping.value:
            end = _content_end(text, mapping.value[-1][1])
            return f"{text[:end]}, {entry}{text[end:]}"
        brace = text.index("{", mapping.start_mark.index) + 1
        return f"{text[:brace]}{entry}{text[brace:]}"
    indent = int(mapping.value[0][0].start_mark.column)
    end = _content_end(text, mapping.value[-1][1])
    line_end = text.find("\n", end)
    if line_end < 0:
        line_end = len(text)
    elif line_end > 0 and text[line_end - 1] == "\r":
        line_end -= 1
    lines = [
        " " * (indent + depth * step) + f"{_flow_key(part)}:" for depth, part in enumerate(key[:-1])
    ]
    last = " " * (indent + (len(key) - 1) * step)
    lines.append(f"{last}{_flow_key(key[-1])}: {_flow_value(value)}")
    added = "".join(newline + line for line in lines)
    return f"{text[:line_end]}{added}{text[line_end:]}"


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_RESERVED = frozenset({"true", "false", "null", "yes", "no", "on", "off", "y", "n"})


def _flow_key(key: str) -> str:
    if _PLAIN_KEY.match(key) and key.lower() not in _RESERVED:
        return key
    return json.dumps(key, ensure_ascii=False)


def _flow_path(key: Key, value: Any) -> str:
    """``{a: {b: value}}`` for the key path ``a.b``; ``value`` itself for an empty path."""
    if not key:
        return _flow_value(value)
    return "{" + f"{_flow_key(key[0])}: {_flow_path(key[1:], value)}" + "}"


def _flow_value(value: Any) -> str:
    """A leaf value in an asset layer: a mapping (only ever an empty one) replaces what the
    lower layers have there instead of merging into it."""
    if isinstance(value, dict):
        return f"!replace {flow(value)}"
    return flow(value)


def flow(value: Any) -> str:
    """``value`` as YAML flow text that the loader reads back as the same value: strings always
    double-quoted (``"1.42.0"`` stays a string), secrets as ``!secret NAME``."""
    if isinstance(value, SecretRef):
        return f"!secret {value.name}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flow_key(str(k))}: {flow(v)}" for k, v in value.items()) + "}"
    raise RunnerError(f"cannot write a {type(value).__name__} as YAML")


def _float(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    if "e" in text and "." not in text:  # YAML 1.1 floats need a dot: 1e+20 → 1.0e+20
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"
    return text
