"""``runner history PATH``: the commits that changed a node's converged properties.

The walk follows first parents from ``--rev`` (default HEAD) back to the root, newest first, and
keeps the state of the node at each commit: absent, invalid (its own files do not load), or
present with its converged properties (layers 1–5). Three levels of "did it move?", cheapest
first, so a long history costs little more than ``git log``:

1. the object ids of the files that can feed the node (its layer files, ``runner.yaml`` and the
   ``templates/`` tree): equal ids, same state, nothing loaded;
2. otherwise the snapshot (parsed files come from the blob-id cache) and
   ``Snapshot.input_key``: an equal key means equal inputs, nothing converged;
3. otherwise the converged values, compared leaf by leaf.

A change is attributed to the oldest commit of the run of commits that share the newer state:
the commit that brought it in. A commit at which the node's files do not load is skipped with a
note; the states on either side of it are compared instead. Property diffs come from
``runner.changes.property_diff`` (the plan's differ), secrets stay references and are shown as
``***``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.changes import CREATED, DELETED, MODIFIED, Inputs, PropertyChange, property_diff
from runner.errors import InvalidArgument
from runner.gitrepo import GitRepo
from runner.loading import snapshot as loading
from runner.loading.documents import ParseCache
from runner.loading.snapshot import Snapshot
from runner.loading.source import OpsRepo
from runner.model import Asset
from runner.operations.properties import normalise_path
from runner.properties.merge import leaves


@dataclass(frozen=True)
class Commit:
    sha: str
    author: str
    email: str
    time: str  # ISO 8601 in the author's offset
    subject: str


@dataclass(frozen=True)
class HistoryEntry:
    """A commit that changed the node: created, modified or deleted it."""

    commit: Commit
    change: str  # created | modified | deleted
    properties: tuple[PropertyChange, ...]


@dataclass(frozen=True)
class SkippedCommit:
    """A commit at which the node's files do not load: left out of the comparison."""

    commit: Commit
    reason: str


@dataclass(frozen=True)
class NodeHistory:
    node: str
    rev: str  # the commit the walk started from
    items: tuple[HistoryEntry | SkippedCommit, ...]  # newest first
    complete: bool  # False: stopped at --max before the root

    @property
    def entries(self) -> tuple[HistoryEntry, ...]:
        return tuple(i for i in self.items if isinstance(i, HistoryEntry))


@dataclass(frozen=True)
class _State:
    """The node at one commit. ``inputs`` is None when it is absent."""

    key: str
    inputs: Inputs | None = None
    invalid: str | None = None

    @property
    def present(self) -> bool:
        return self.inputs is not None

    def values(self, path: str) -> dict[str, Any]:
        return {} if self.inputs is None else self.inputs.converger.values(path)


_ABSENT = _State("absent")


def node_history(
    ops: OpsRepo, path: str, rev: str = "HEAD", max_entries: int | None = None
) -> NodeHistory:
    """The commits, newest first, that changed the converged properties of the node at
    ``path``; raises InvalidArgument when the node exists neither at ``rev`` nor before it."""
    git = ops.require_git()
    node = normalise_path(path)
    start = git.resolve(rev)
    walk = _Walk(ops, git, node, max_entries)
    walk.run(start)
    if not walk.seen_present:
        raise InvalidArgument(f"{node}: no such node at {rev} nor in its history")
    items = sorted(walk.items, key=lambda pair: pair[0])
    return NodeHistory(node, start, tuple(item for _, item in items), walk.complete)


class _Walk:
    """One first-parent walk: the run of commits sharing a state, and what was found."""

    def __init__(self, ops: OpsRepo, git: GitRepo, node: str, max_entries: int | None) -> None:
        self.ops = ops
        self.git = git
        self.node = node
        self.max_entries = max_entries
        self.files = _input_files(ops.prefix, node)
        self.cache: ParseCache = loading.cache_for(git)
        self.items: list[tuple[int, HistoryEntry | SkippedCommit]] = []
        self.entries = 0
        self.seen_present = False
        self.complete = True

    def run(self, start: str) -> None:
        # The newer state (the last valid one seen), the oldest commit sharing it, its depth.
        newer: _State | None = None
        oldest = start
        oldest_depth = 0
        last_ids: tuple[str | None, ...] | None = None
        last_state: _State | None = None
        commit: str | None = start
        depth = 0
        try:
            while commit is not None:
                ids = self.git.object_ids(commit, self.files)
                if ids == last_ids and last_state is not None:
                    state = last_state
                else:
                    state = self._state(commit, ids)
                last_ids, last_state = ids, state
                if state.invalid is not None:
                    self._skip(depth, commit, state.invalid)
                elif newer is None or self._same(newer, state):
                    # The run's state is kept as at its oldest commit, the one a change is
                    # attributed to (its file lines are the ones the diff shows).
                    newer, oldest, oldest_depth = state, commit, depth
                    self.seen_present = self.seen_present or state.present
                else:
                    self._record(oldest_depth, oldest, state, newer)
                    if self.max_entries is not None and self.entries >= self.max_entries:
                        self.complete = False
                        return
                    newer, oldest, oldest_depth = state, commit, depth
                    self.seen_present = self.seen_present or state.present
                parents = self.git.parents(commit)
                commit = parents[0] if parents else None
                depth += 1
            if newer is not None and newer.present:
                self._record(oldest_depth, oldest, _ABSENT, newer)
        finally:
            self.cache.save()

    def _state(self, commit: str, ids: tuple[str | None, ...]) -> _State:
        if ids[-3] is None:  # the node's own file is not there: nothing to load
            return _ABSENT
        snap = loading.load(self.ops, commit, self.cache)
        return _node_state(snap, self.node)

    def _same(self, newer: _State, older: _State) -> bool:
        if newer.present != older.present:
            return False
        if not newer.present or newer.key == older.key:
            return True
        return _same_values(newer.values(self.node), older.values(self.node))

    def _record(self, depth: int, commit: str, older: _State, newer: _State) -> None:
        node, before, after = self.node, older.inputs, newer.inputs
        if before is None and after is not None:
            change = CREATED
            props = property_diff(after, after, node, {}, after.converger.values(node))
        elif after is None and before is not None:
            change = DELETED
            props = property_diff(before, before, node, before.converger.values(node), {})
        elif before is not None and after is not None:
            change = MODIFIED
            old, new = before.converger.values(node), after.converger.values(node)
            props = property_diff(before, after, node, old, new)
        else:
            return
        # An empty mapping is a leaf of its own: drop the root "leaf" of a side with no values.
        kept = tuple(p for p in props if p.key)
        self.items.append((depth, HistoryEntry(self._commit(commit), change, kept)))
        self.entries += 1

    def _skip(self, depth: int, commit: str, reason: str) -> None:
        self.items.append((depth, SkippedCommit(self._commit(commit), reason)))

    def _commit(self, sha: str) -> Commit:
        name, email, when = self.git.author(sha)
        subject = (self.git.commit_message(sha).strip().splitlines() or [""])[0]
        return Commit(sha, name, email, when.isoformat(), subject)


def layer_files(node: str) -> list[str]:
    """The files of a node's own layers, relative to the ops root, lowest first (the node's own
    file last); raises InvalidArgument for a path that names no kind of node."""
    parts = node.strip("/").split("/")
    shape = tuple(p if i % 2 == 0 else "*" for i, p in enumerate(parts))
    if shape not in _SHAPES:
        raise InvalidArgument(
            f"{node}: not a node path (/projects/P, /projects/P/environments/E, "
            "/projects/P/assets/A or /projects/P/environments/E/assets/A)"
        )
    files = ["properties.yaml", f"projects/{parts[1]}/project.yaml"]
    if len(parts) >= 4 and parts[2] == "environments":
        files.append(f"projects/{parts[1]}/environments/{parts[3]}/environment.yaml")
    if parts[-2] == "assets":
        files.append("/".join(parts[:-1]) + f"/{parts[-1]}.yaml")
    return files


_SHAPES = {
    ("projects", "*"),
    ("projects", "*", "environments", "*"),
    ("projects", "*", "assets", "*"),
    ("projects", "*", "environments", "*", "assets", "*"),
}


def _input_files(prefix: str, node: str) -> tuple[str, ...]:
    """Paths inside the git repository of everything that can feed the node's properties: its
    layer files (its own file last), then runner.yaml and the templates folder."""
    files = [*layer_files(node), "runner.yaml", "templates"]
    return tuple(f"{prefix}/{f}" if prefix else f for f in files)


def _same_values(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Leaf by leaf, types included (``1`` is not ``true``), as the plan compares them."""
    left, right = dict(leaves(a)), dict(leaves(b))
    return left.keys() == right.keys() and all(
        type(v) is type(right[k]) and v == right[k] for k, v in left.items()
    )


def _node_state(snap: Snapshot, node: str) -> _State:
    """Absent, invalid (with the first problem of the node's own files) or present."""
    own = _own_files(node)
    problems = sorted(p for p in snap.problems if p.file in own)
    if problems:
        return _State("invalid", invalid=str(problems[0]))
    if not snap.has_node(node):
        return _ABSENT
    asset = snap.assets.get(node)
    if asset is not None:
        if snap.template_of(asset) is None:
            return _State("invalid", invalid=_template_problem(snap, asset))
        if asset.project not in snap.projects or (
            asset.environment is not None and asset.parent_path not in snap.environments
        ):
            return _State("invalid", invalid=f"{asset.file}: its project or environment is missing")
        return _State(snap.input_key(node), Inputs(snap))
    key = " ".join(snap.blobs.get(f, "") for f in sorted(own))
    return _State(key, Inputs(snap))


def _own_files(node: str) -> set[str]:
    """The files (relative to the ops root) whose problems make the node unreadable. A broken
    template shows as a missing one (``_template_problem``): a problem of a template version
    this node does not use must not hide its history."""
    return {*layer_files(node), "runner.yaml"}


def _template_problem(snap: Snapshot, asset: Asset) -> str:
    """Why the asset's template (at its version) is not there: the template file's first
    problem, else that it does not exist."""
    template_file = f"templates/{asset.template.value}/template.yaml"
    problems = sorted(p for p in snap.problems if p.file == template_file)
    if problems:
        return str(problems[0])
    label = asset.template.value + (f"@{asset.version}" if asset.version else "")
    return f"{asset.file}: template {label} not found"
