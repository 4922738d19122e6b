"""``runner changes list/show/logs`` and ``runner events list``: history read from the state
branch, narrowed by ``--filter KEY=VALUE`` (one parser for both listings)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from runner.errors import InvalidArgument
from runner.loading.source import OpsRepo
from runner.model import Settings
from runner.operations.properties import normalise_path
from runner.state.events import list_events
from runner.state.records import ChangeRecord, change_from_yaml, now
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


# --- `--filter KEY=VALUE`: one parser for `changes list` and `events list` -------------------

CHANGE_FILTER_KEYS = ("status", "node", "action", "kind", "run", "since", "until")
EVENT_FILTER_KEYS = ("kind", "node", "by", "since", "until")
# Step, change and run statuses (SPEC 2.4).
STATUSES = frozenset(
    {
        "pending",
        "queued",
        "running",
        "waiting",
        "success",
        "error",
        "skipped",
        "cancelled",
        "aborted",
    }
)
_RELATIVE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


@dataclass(frozen=True)
class Bound:
    """One ``since``/``until`` value: a moment, and whether a record at exactly it matches."""

    moment: datetime
    inclusive: bool = True


@dataclass(frozen=True)
class RecordFilter:
    """``--filter`` values: the same key twice matches either value, different keys must all
    match (OpsChain's filters). ``node`` values ending in ``%`` match by prefix."""

    values: tuple[tuple[str, tuple[str, ...]], ...] = ()  # key → accepted values
    since: tuple[Bound, ...] = ()
    until: tuple[Bound, ...] = ()

    def matches(self, fields: Mapping[str, object], moment: str | None) -> bool:
        """Whether a record with these ``fields`` (status, node, ...) created at ``moment`` (ISO
        8601, the record's own time) passes every key."""
        for key, accepted in self.values:
            value = fields.get(key)
            if value is None or not any(_value_matches(key, str(value), a) for a in accepted):
                return False
        if not self.since and not self.until:
            return True
        when = _parse_time(moment)
        if when is None:
            return False
        if self.since and not any(
            when > b.moment or (b.inclusive and when == b.moment) for b in self.since
        ):
            return False
        return not self.until or any(
            when < b.moment or (b.inclusive and when == b.moment) for b in self.until
        )


def parse_filters(
    texts: Sequence[str], keys: Sequence[str], moment: datetime | None = None
) -> RecordFilter:
    """``KEY=VALUE`` strings as a RecordFilter; ``keys`` are the ones this listing knows.
    Relative times (``24h``, ``7d``) count back from ``moment`` (default: now). Raises
    InvalidArgument naming the filter for an unknown key or a value that cannot match."""
    at = moment or now()
    values: dict[str, list[str]] = {}
    since: list[Bound] = []
    until: list[Bound] = []
    for text in texts:
        key, sep, value = text.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise InvalidArgument(f"--filter {text!r}: expected KEY=VALUE")
        if key not in keys:
            raise InvalidArgument(
                f"--filter {text!r}: unknown key {key!r} (known: {', '.join(keys)})"
            )
        if key in ("since", "until"):
            bound = _parse_bound(value, at, end_of_day=key == "until")
            if bound is None:
                raise InvalidArgument(
                    f"--filter {text!r}: {value!r} is not a date (2026-11-01), a time "
                    "(2026-11-01T10:00:00Z) or a duration ago (30m, 24h, 7d, 2w)"
                )
            (since if key == "since" else until).append(bound)
            continue
        if key == "status" and value not in STATUSES:
            known = ", ".join(sorted(STATUSES))
            raise InvalidArgument(f"--filter {text!r}: unknown status {value!r} (known: {known})")
        if key == "node":
            value = _node_pattern(value)
        values.setdefault(key, []).append(value)
    return RecordFilter(tuple((k, tuple(v)) for k, v in values.items()), tuple(since), tuple(until))


def _node_pattern(value: str) -> str:
    """``projects/pay/%`` as ``/projects/pay/%``; an exact path loses a trailing slash."""
    if value.endswith("%"):
        return "/" + value[:-1].lstrip("/") + "%"
    return normalise_path(value)


def _value_matches(key: str, value: str, accepted: str) -> bool:
    if key == "node" and accepted.endswith("%"):
        return value.startswith(accepted[:-1])
    return value == accepted


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        return None
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)


def _parse_bound(value: str, at: datetime, *, end_of_day: bool) -> Bound | None:
    """A date (a whole UTC day: ``until`` takes in all of it), a time (no offset: UTC), or a
    duration ago."""
    relative = _RELATIVE.match(value)
    if relative:
        seconds = float(relative.group(1)) * _UNIT_SECONDS[relative.group(2)]
        return Bound(at - timedelta(seconds=seconds))
    found = _parse_time(value)
    if found is None:
        return None
    if _DATE.match(value) and end_of_day:
        return Bound(found + timedelta(days=1), inclusive=False)
    return Bound(found)


def filter_records(
    records: Sequence[ChangeRecord], filters: RecordFilter, limit: int | None = None
) -> list[ChangeRecord]:
    """The records that pass ``filters``, in the given order; with ``limit``, the last ones."""
    found = [r for r in records if filters.matches(change_fields(r), r.created)]
    return found[-limit:] if limit is not None and limit < len(found) else found


def change_fields(record: ChangeRecord) -> dict[str, object]:
    return {
        "status": record.status,
        "node": record.node,
        "action": record.action,
        "kind": record.kind,
        "run": record.run,
    }


def query_changes(
    ops: OpsRepo, settings: Settings, filters: RecordFilter, limit: int | None = None
) -> list[ChangeRecord]:
    """``runner changes list``: the state branch brought up to date first when it has a remote,
    then every change that passes ``filters``, oldest first."""
    _synced(ops, settings)
    return filter_records(list_changes(ops, settings), filters, limit)


def query_events(
    ops: OpsRepo, settings: Settings, filters: RecordFilter, limit: int | None = None
) -> list[dict[str, Any]]:
    """``runner events list``: audit events that pass ``filters``, oldest first."""
    store = _synced(ops, settings)
    found = [
        e
        for e in list_events(store)
        if filters.matches({k: e.get(k) for k in ("kind", "node", "by")}, _text(e.get("time")))
    ]
    return found[-limit:] if limit is not None and limit < len(found) else found


def _synced(ops: OpsRepo, settings: Settings) -> StateStore:
    store = _store(ops, settings)
    if settings.state_remote:
        store.sync()
    return store


def _text(value: object) -> str | None:
    return None if value is None else str(value)
