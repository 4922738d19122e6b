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
    snap = snapshot.load(ops, rev)
    converger = Converger(snap)
    return Validated(snap, converger, checks.check(snap, converger))


def load_valid(ops: OpsRepo, rev: str | None) -> Validated:
    """A snapshot every later stage may rely on; raises InvalidRepository otherwise."""
    result = validate(ops, rev)
    if result.problems:
        raise InvalidRepository(result.problems)
    return result
