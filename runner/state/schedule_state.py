"""Schedule state on the state branch (SPEC 4): ``schedules/<name>.yaml``.

::

    name: nightly-drift
    armed_at: '2026-11-20T13:58:02.000+00:00'   # when the schedule became desired state
    last_fire: '2026-11-23T02:00:00.000+00:00'  # the scheduled time last fired (or skipped)
    fired_at: '2026-11-23T02:03:11.201+00:00'   # when that claim was made
    runs: 4                                     # fires that started something (skips do not count)
    commit: 3f9a1c...                           # the ops repo head at that fire or skip
    claimed_by: ci-7:4121:9c2e1a                # the runner process that claimed it
    last_run: {kind: change, id: 20261123T020311201Z-1b2c3d}   # what the fire started, or null
    last_skip: {fire: '2026-11-22T02:00:00.000+00:00', reason: new_commits_only}   # or null

``runner reconcile`` runs on several machines at once. Each fire is *claimed* by one
``StateStore.update`` that moves ``last_fire`` forward and writes an audit event in the same
commit; the mutation re-reads the state and does nothing when ``last_fire`` already reached the
fire, so exactly one process wins it, also through a remote (the loser's replayed mutation turns
into nothing). The claim's event is its receipt: the winner is the process whose event landed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runner.model import Schedule
from runner.scheduling import parse_time
from runner.state.events import new_event
from runner.state.records import dump, iso, read_yaml
from runner.state.store import StateStore, StateView

SCHEDULES = "schedules"
FIRED, SKIPPED, TAKEN = "fired", "skipped", "taken"
NEW_COMMITS_ONLY = "new_commits_only"
STILL_RUNNING = "still running"
RUN_KINDS = ("change", "run")


def state_path(name: str) -> str:
    return f"{SCHEDULES}/{name}.yaml"


def read_state(view: StateView, name: str) -> dict[str, Any] | None:
    data = view.read(state_path(name))
    return None if data is None else read_yaml(data)


def read_states(store: StateStore) -> dict[str, dict[str, Any]]:
    """Every schedule's state, by schedule name (also of schedules no longer in the repo)."""
    view = store.view()
    found: dict[str, dict[str, Any]] = {}
    for path in view.list(SCHEDULES):
        if path.endswith(".yaml"):
            state = read_yaml(view.read(path))
            name = str(state.get("name") or path[len(SCHEDULES) + 1 : -len(".yaml")])
            found[name] = state
    return found


@dataclass(frozen=True)
class ClaimResult:
    """What ``claim`` did: ``fired`` (start the run, then ``set_last_run``), ``skipped``
    (``reason``: ``new_commits_only`` or ``still running``; the window is used up) or ``taken``
    (another process claimed this fire first). ``state`` is the schedule's state afterwards."""

    outcome: str
    schedule: str
    fire: datetime
    reason: str | None = None
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def fired(self) -> bool:
        return self.outcome == FIRED


def claim(
    store: StateStore,
    schedule: Schedule,
    fire: datetime,
    head_commit: str,
    holder: str,
    now: datetime,
    still_running: Callable[[dict[str, Any]], bool],
    *,
    armed_at: datetime | None = None,
) -> ClaimResult:
    """Claim ``fire`` of ``schedule`` for ``holder``: one state commit (pushed, with a remote)
    holding the new state and a ``schedule`` audit event. ``still_running(last_run)`` says
    whether the run the previous fire started is still going (asked only when the schedule
    does not ``allow_parallel``). ``armed_at`` is recorded on the first claim."""
    path = state_path(schedule.name)
    receipts: dict[tuple[str, str | None], tuple[str, bytes]] = {}

    def receipt(outcome: str, reason: str | None) -> tuple[str, bytes]:
        # Made once per outcome, so a mutation replayed after a lost race writes the same event.
        if (outcome, reason) not in receipts:
            receipts[outcome, reason] = _event(schedule, fire, outcome, reason, head_commit, holder)
        return receipts[outcome, reason]

    def mutate(view: StateView) -> dict[str, bytes | None]:
        current = read_state(view, schedule.name) or {}
        last = current.get("last_fire")
        if last and parse_time(str(last)) >= fire:
            return {}
        reason = _skip_reason(schedule, current, head_commit, still_running)
        outcome = FIRED if reason is None else SKIPPED
        state = {
            "name": schedule.name,
            "armed_at": current.get("armed_at") or iso(armed_at),
            "last_fire": iso(fire),
            "fired_at": iso(now),
            "runs": int(current.get("runs") or 0) + (1 if reason is None else 0),
            "commit": head_commit,
            "claimed_by": holder,
            "last_run": None if reason is None else current.get("last_run"),
            "last_skip": (
                current.get("last_skip")
                if reason is None
                else {"fire": iso(fire), "reason": reason}
            ),
        }
        event_path, event = receipt(outcome, reason)
        return {path: dump(state), event_path: event}

    store.sync()
    store.update(mutate, f"runner: schedule {schedule.name} claims {iso(fire)}")
    store.push()
    view = store.view()
    state = read_state(view, schedule.name) or {}
    last = state.get("last_fire")
    if last and parse_time(str(last)) == fire:
        # The state file says who holds this fire. (An event file is no proof: replaying a
        # neighbour's unpushed commit onto the remote's tip can carry its event over while
        # the remote's state file wins.)
        if state.get("claimed_by") != holder:
            return ClaimResult(TAKEN, schedule.name, fire, None, state)
        skip = state.get("last_skip")
        if isinstance(skip, dict) and skip.get("fire") == iso(fire):
            return ClaimResult(SKIPPED, schedule.name, fire, str(skip.get("reason")), state)
        return ClaimResult(FIRED, schedule.name, fire, None, state)
    # A later fire was claimed meanwhile: ours stands if its event made it to the branch.
    for (outcome, reason), (event_path, _) in receipts.items():
        if view.exists(event_path):
            return ClaimResult(outcome, schedule.name, fire, reason, state)
    return ClaimResult(TAKEN, schedule.name, fire, None, state)


def _skip_reason(
    schedule: Schedule,
    current: dict[str, Any],
    head_commit: str,
    still_running: Callable[[dict[str, Any]], bool],
) -> str | None:
    if schedule.new_commits_only and current.get("commit") == head_commit:
        return NEW_COMMITS_ONLY
    last_run = current.get("last_run")
    if not schedule.allow_parallel and isinstance(last_run, dict) and still_running(last_run):
        return STILL_RUNNING
    return None


def _event(
    schedule: Schedule,
    fire: datetime,
    outcome: str,
    reason: str | None,
    head_commit: str,
    holder: str,
) -> tuple[str, bytes]:
    when = iso(fire)
    if outcome == FIRED:
        message = f"schedule {schedule.name} fired for {when}"
    else:
        message = f"schedule {schedule.name} skipped {when}: {reason}"
    return new_event(
        "schedule",
        message,
        by=holder,
        node=schedule.target.value if schedule.target is not None else None,
        schedule=schedule.name,
        fire=when,
        outcome=outcome,
        reason=reason,
        commit=head_commit,
        workflow=schedule.workflow.value if schedule.workflow is not None else None,
        action=schedule.action.value if schedule.action is not None else None,
    )


def set_last_run(store: StateStore, name: str, kind: str, id: str) -> None:
    """Record what the last fire of schedule ``name`` started: a ``change`` or a workflow
    ``run``, by id (``allow_parallel: false`` asks about it at the next fire)."""
    if kind not in RUN_KINDS:
        raise ValueError(f"last run kind {kind!r}: one of {', '.join(RUN_KINDS)}")
    path = state_path(name)

    def mutate(view: StateView) -> dict[str, bytes | None]:
        current = read_state(view, name) or {"name": name}
        return {path: dump({**current, "last_run": {"kind": kind, "id": id}})}

    store.update(mutate, f"runner: schedule {name} started {kind} {id}")
    store.push()
