"""``runner validate``: every check over the ops repo at a revision or in the working tree."""

from __future__ import annotations

from dataclasses import dataclass

from runner.errors import InvalidRepository, Problem
from runner.gitrepo import blob_id
from runner.loading import checks, snapshot
from runner.loading.documents import ParseCache
from runner.loading.snapshot import Snapshot
from runner.loading.source import OpsRepo
from runner.properties.converge import Converger


@dataclass(frozen=True)
class Validated:
    snapshot: Snapshot
    converger: Converger
    problems: list[Problem]


def validate(ops: OpsRepo, rev: str | None) -> Validated:
    cache = snapshot.cache_for(ops.git)
    snap = snapshot.load(ops, rev, cache)
    converger = Converger(snap)
    problems = problems_of(ops, snap, cache, converger)
    cache.save()
    return Validated(snap, converger, problems)


def problems_of(
    ops: OpsRepo, snap: Snapshot, cache: ParseCache, converger: Converger | None = None
) -> list[Problem]:
    """Every check over ``snap``; nothing to do for content that passed them all before."""
    key = _valid_key(ops, snap)
    if key is not None and not snap.problems and cache.get(key):
        return []
    problems = checks.check(snap, converger, cache)
    if key is not None and not problems:
        cache.put(key, True)
    return problems


def _valid_key(ops: OpsRepo, snap: Snapshot) -> str | None:
    """What a commit's validity depends on: the ops root's tree and the commits its pinned
    template versions resolved to (a moved tag changes them with the tree unchanged). The
    cache itself is dropped whenever the schemas or the checking code change. None for the
    working tree, which is checked every time."""
    if snap.commit is None or ops.git is None:
        return None
    if ops.prefix:
        tree = ops.git.object_ids(snap.commit, [ops.prefix])[0]
    else:
        tree = ops.git.tree_id(snap.commit)
    pinned = sorted(f"{code}@{version}={t.commit}" for (code, version), t in snap.pinned.items())
    return "valid-tree:" + blob_id(" ".join([str(tree), *pinned]).encode())


def load_valid(ops: OpsRepo, rev: str | None) -> Validated:
    """A snapshot every later stage may rely on; raises InvalidRepository otherwise."""
    result = validate(ops, rev)
    if result.problems:
        raise InvalidRepository(result.problems)
    return result
