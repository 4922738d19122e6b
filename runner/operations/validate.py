"""``runner validate``: every check over the ops repo at a revision or in the working tree."""

from __future__ import annotations

from dataclasses import dataclass

from runner.errors import InvalidRepository, Problem
from runner.loading import checks, snapshot
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
    problems = checks.check(snap, converger, cache)
    cache.save()
    return Validated(snap, converger, problems)


def load_valid(ops: OpsRepo, rev: str | None) -> Validated:
    """A snapshot every later stage may rely on; raises InvalidRepository otherwise."""
    result = validate(ops, rev)
    if result.problems:
        raise InvalidRepository(result.problems)
    return result
