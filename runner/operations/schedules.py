"""``runner schedules list/preview``, and which schedules are due for ``runner reconcile``.

Schedules are read from the validated ops repo at a commit (HEAD by default) and their state
from the state branch. A schedule with no state yet is *armed* at the committer time of the
newest commit (on the first-parent line of the head) that changed the file declaring it: the
moment it became desired state. Its first window runs from there; later windows from its last
fire. A window missed for days fires once, for its latest scheduled time.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from runner.errors import InvalidArgument
from runner.gitrepo import GitRepo
from runner.loading.snapshot import Snapshot
from runner.loading.source import OpsRepo
from runner.model import Schedule
from runner.operations.validate import load_valid
from runner.scheduling import Timing, due_fire, parse_time, timing_of
from runner.state.schedule_state import read_states
from runner.state.store import StateStore

PREVIEW_LIMIT = 1000
ACTIVE, DISABLED, ENDED, EXHAUSTED = "active", "disabled", "ended", "exhausted"


@dataclass(frozen=True)
class Row:
    """One schedule as ``schedules list`` shows it. Times are UTC; ``zone`` gives local time."""

    name: str
    file: str  # file:line of its declaration
    what: str  # "drift-check on /projects/pay/environments/prod" or "workflow release"
    target: str | None
    action: str | None
    workflow: str | None
    cron: str | None
    run_at: datetime | None
    zone: str
    enabled: bool
    new_commits_only: bool
    allow_parallel: bool
    runs: int
    max_runs: int | None
    end_at: datetime | None
    state: str  # active | disabled | ended | exhausted
    last_fire: datetime | None
    next_fire: datetime | None  # the next scheduled time after now (None unless active)
    due: datetime | None  # a fire the next reconcile would claim (a window not yet fired)
    last_run: dict[str, Any] | None
    last_skip: dict[str, Any] | None


@dataclass(frozen=True)
class Fire:
    schedule: str
    at: datetime  # UTC
    zone: str
    what: str
    target: str | None
    action: str | None
    workflow: str | None


@dataclass(frozen=True)
class Preview:
    start: datetime
    end: datetime
    fires: tuple[Fire, ...]
    truncated: bool  # more fires than the limit lie in the range


def describe(schedule: Schedule) -> str:
    """What a schedule starts, in a few words."""
    if schedule.workflow is not None:
        return f"workflow {schedule.workflow.value}"
    action = schedule.action.value if schedule.action else "?"
    target = schedule.target.value if schedule.target else "?"
    return f"{action} on {target}"


def armed_at(git: GitRepo, prefix: str, schedule: Schedule, commit: str) -> datetime | None:
    """When ``schedule`` became desired state: the committer time of the newest commit up to
    ``commit`` that changed the file declaring it."""
    path = f"{prefix}/{schedule.pos.file}" if prefix else schedule.pos.file
    found = git.last_change(commit, path)
    return None if found is None else datetime.fromtimestamp(found[1], UTC)


class Arming:
    """``armed_at`` per schedule file, looked up in git once per file."""

    def __init__(self, ops: OpsRepo, commit: str) -> None:
        self._git = ops.require_git()
        self._prefix = ops.prefix
        self._commit = commit
        self._seen: dict[str, datetime | None] = {}

    def __call__(self, schedule: Schedule) -> datetime | None:
        file = schedule.pos.file
        if file not in self._seen:
            self._seen[file] = armed_at(self._git, self._prefix, schedule, self._commit)
        return self._seen[file]


def due_schedules(
    ops: OpsRepo,
    snapshot: Snapshot,
    store: StateStore,
    now: datetime,
    arming: Arming | None = None,
) -> list[tuple[Schedule, datetime]]:
    """The schedules a reconcile at ``now`` should claim, each with the fire to claim, in fire
    order. Reads the state from ``store`` as it is (sync it first when a remote is set); looks
    in git only for schedules that never fired (through ``arming``, which the caller may keep
    to claim them)."""
    commit = snapshot.commit or ops.require_git().head_commit()
    if commit is None:
        return []
    arming = arming or Arming(ops, commit)
    states = read_states(store)
    zone = snapshot.settings.timezone
    due: list[tuple[Schedule, datetime]] = []
    for schedule in snapshot.schedules:
        state = states.get(schedule.name)
        armed = None if state and state.get("last_fire") else arming(schedule)
        fire = due_fire(schedule, state, now, zone, armed)
        if fire is not None:
            due.append((schedule, fire))
    return sorted(due, key=lambda pair: (pair[1], pair[0].name))


def _load(ops: OpsRepo, rev: str | None) -> tuple[Snapshot, StateStore, str]:
    git = ops.require_git()
    commit = git.resolve(rev or "HEAD")
    snapshot = load_valid(ops, commit).snapshot
    store = StateStore.for_settings(git, snapshot.settings)
    store.sync()
    return snapshot, store, commit


def schedule_rows(ops: OpsRepo, now: datetime, rev: str | None = None) -> list[Row]:
    """Every schedule at ``rev`` (default HEAD) with its state, sorted by name."""
    snapshot, store, commit = _load(ops, rev)
    arming = Arming(ops, commit)
    states = read_states(store)
    zone = snapshot.settings.timezone
    rows = []
    for schedule in sorted(snapshot.schedules, key=lambda s: s.name):
        state = states.get(schedule.name) or {}
        timing = timing_of(schedule, zone)
        armed = None if state.get("last_fire") else arming(schedule)
        due = due_fire(schedule, state, now, zone, armed)
        rows.append(_row(schedule, timing, state, now, due))
    return rows


def _row(
    schedule: Schedule, timing: Timing, state: dict[str, Any], now: datetime, due: datetime | None
) -> Row:
    runs = int(state.get("runs") or 0)
    upcoming = timing.next_fire(now)
    if not schedule.enabled:
        word = DISABLED
    elif schedule.max_runs is not None and runs >= schedule.max_runs:
        word = EXHAUSTED
    elif upcoming is None and due is None:
        word = ENDED
    else:
        word = ACTIVE
    last = state.get("last_fire")
    return Row(
        name=schedule.name,
        file=str(schedule.pos),
        what=describe(schedule),
        target=schedule.target.value if schedule.target else None,
        action=schedule.action.value if schedule.action else None,
        workflow=schedule.workflow.value if schedule.workflow else None,
        cron=schedule.cron,
        run_at=timing.run_at,
        zone=timing.zone.key,
        enabled=schedule.enabled,
        new_commits_only=schedule.new_commits_only,
        allow_parallel=schedule.allow_parallel,
        runs=runs,
        max_runs=schedule.max_runs,
        end_at=timing.end_at,
        state=word,
        last_fire=parse_time(str(last)) if last else None,
        next_fire=upcoming if word == ACTIVE else None,
        due=due if word == ACTIVE else None,
        last_run=state.get("last_run"),
        last_skip=state.get("last_skip"),
    )


def preview(
    ops: OpsRepo,
    start: datetime,
    end: datetime,
    names: Iterable[str] | None = None,
    limit: int = PREVIEW_LIMIT,
) -> Preview:
    """Every fire with ``start < t <= end`` of the schedules at HEAD (or only ``names``), in
    time order, at most ``limit``. Disabled schedules do not fire; ``end_at`` and the runs left
    under ``max_runs`` (after the state's last fire) are honoured. Whether ``new_commits_only``
    or a run still going will skip a fire cannot be known ahead, so those are listed."""
    if end <= start:
        raise InvalidArgument("--to must be later than --from")
    snapshot, store, _ = _load(ops, None)
    chosen = _chosen(snapshot, names)
    states = read_states(store)
    zone = snapshot.settings.timezone
    streams = [
        _fires(schedule, timing_of(schedule, zone), states.get(schedule.name) or {}, start, end)
        for schedule in chosen
        if schedule.enabled
    ]
    merged = heapq.merge(*streams, key=lambda fire: (fire.at, fire.schedule))
    fires = tuple(itertools.islice(merged, limit + 1))
    return Preview(start, end, fires[:limit], truncated=len(fires) > limit)


def _chosen(snapshot: Snapshot, names: Iterable[str] | None) -> list[Schedule]:
    schedules = sorted(snapshot.schedules, key=lambda s: s.name)
    if names is None:
        return schedules
    wanted = list(dict.fromkeys(names))
    known = {s.name for s in schedules}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise InvalidArgument(f"no schedule named {', '.join(unknown)} (schedules: {listed})")
    return [s for s in schedules if s.name in wanted]


def _fires(
    schedule: Schedule, timing: Timing, state: dict[str, Any], start: datetime, end: datetime
) -> Iterator[Fire]:
    last = state.get("last_fire")
    last_fire = parse_time(str(last)) if last else None
    left = None
    if schedule.max_runs is not None:
        left = max(0, schedule.max_runs - int(state.get("runs") or 0))
    for at in timing.fires_between(start, end):
        if left is not None and (last_fire is None or at > last_fire):
            if left == 0:
                return
            left -= 1
        yield Fire(
            schedule=schedule.name,
            at=at,
            zone=timing.zone.key,
            what=describe(schedule),
            target=schedule.target.value if schedule.target else None,
            action=schedule.action.value if schedule.action else None,
            workflow=schedule.workflow.value if schedule.workflow else None,
        )
