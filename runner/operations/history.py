"""``runner changes list/show/logs``: history read from the state branch."""

from __future__ import annotations

from dataclasses import dataclass

from runner.errors import InvalidArgument
from runner.loading.source import OpsRepo
from runner.model import Settings
from runner.state.records import ChangeRecord, change_from_yaml
from runner.state.store import StateStore


@dataclass(frozen=True)
class StepLog:
    step: str
    text: str


def _store(ops: OpsRepo, settings: Settings) -> StateStore:
    return StateStore.for_settings(ops.require_git(), settings)


def list_changes(ops: OpsRepo, settings: Settings) -> list[ChangeRecord]:
    store = _store(ops, settings)
    records = []
    for path in store.list("changes"):
        data = store.read(path)
        if data is not None and path.endswith(".yaml"):
            records.append(change_from_yaml(data))
    return sorted(records, key=lambda r: (r.created or "", r.node, r.id))


def show_change(ops: OpsRepo, settings: Settings, change_id: str) -> ChangeRecord:
    matches = [r for r in list_changes(ops, settings) if r.id.startswith(change_id)]
    if not matches:
        raise InvalidArgument(f"no change {change_id!r} on the state branch")
    if len(matches) > 1:
        raise InvalidArgument(f"{change_id!r} matches {len(matches)} changes; give more of the id")
    return matches[0]


def change_logs(
    ops: OpsRepo, settings: Settings, change_id: str, step: str | None = None
) -> list[StepLog]:
    record = show_change(ops, settings, change_id)
    store = _store(ops, settings)
    found = []
    for step_record in record.steps:
        if step is not None and step_record.id != step:
            continue
        data = store.read(f"logs/{record.id}/{step_record.id.replace('/', '__')}.log")
        found.append(StepLog(step_record.id, data.decode("utf-8", "replace") if data else ""))
    if step is not None and not found:
        names = ", ".join(s.id for s in record.steps)
        raise InvalidArgument(f"change {record.id} has no step {step!r} (steps: {names})")
    return found
