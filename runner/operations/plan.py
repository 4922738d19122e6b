"""``runner plan``: what apply would do between two commits. Pure: nothing from the repo runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from runner.errors import InvalidRepository
from runner.loading import snapshot
from runner.loading.snapshot import Snapshot
from runner.loading.source import OpsRepo
from runner.operations.validate import problems_of
from runner.planning.plan import Plan, build_plan
from runner.state.read import last_applied_commit


@dataclass(frozen=True)
class PlanRequest:
    base: str | None = None  # None: the last applied commit, else nothing applied yet
    head: str = "HEAD"
    targets: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    allow_destroy: bool = False


@dataclass(frozen=True)
class Planned:
    ops: OpsRepo
    plan: Plan
    head: Snapshot
    base: Snapshot | None
    base_source: str  # how the base was chosen, for the reader


def plan(
    ops: OpsRepo,
    request: PlanRequest,
    before_base: Callable[[Snapshot], None] | None = None,
) -> Planned:
    """``before_base`` runs once the head is known valid and before the base is chosen (apply
    fetches the state branch there)."""
    git = ops.require_git()
    head_commit = git.resolve(request.head)
    cache = snapshot.cache_for(git)
    head = snapshot.load(ops, head_commit, cache)
    problems = problems_of(ops, head, cache)
    cache.save()
    if problems:
        raise InvalidRepository(problems)
    if before_base is not None:
        before_base(head)
    if request.base is not None:
        base_commit: str | None = git.resolve(request.base)
        base_source = f"--base {request.base}"
    else:
        base_commit = last_applied_commit(ops, head.settings)
        base_source = "last applied commit" if base_commit else "nothing applied yet"
    base = snapshot.load(ops, base_commit, cache) if base_commit is not None else None
    cache.save()
    result = build_plan(
        base,
        head,
        allow_destroy=request.allow_destroy,
        targets=request.targets,
        excludes=request.excludes,
    )
    return Planned(ops, result, head, base, base_source)
