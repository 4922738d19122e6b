"""Cron expressions (5 fields, Vixie semantics) and schedule timing.

A cron expression names local wall-clock times in a time zone; fires are real instants, returned
in UTC. Daylight saving follows Vixie cron:

- a *fixed-time* job (neither the minute nor the hour field starts with ``*``) fires once per
  matching wall-clock time: a time the clocks skip fires at the first instant after the gap, a
  time they repeat fires at its first occurrence only;
- a *wildcard* job (``*/30 * * * *``, ``15 * * * *``) runs in real time: at every instant whose
  local time matches, so twice in a repeated hour and never in a skipped one.

Fires are found one local wall-clock hour at a time (non-matching months and days are skipped
without looking at their hours), so an impossible expression such as ``0 0 30 2 *`` gives up
after about five years of calendar in microseconds rather than minutes. Around a fall-back hour
the fires of consecutive wall-clock hours are not in real-time order; they pass through a small
heap and are released once nothing later on the wall clock can come before them.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from runner.errors import InvalidRepository, Problem
from runner.model import Schedule

_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
_NAMES = {
    3: {
        m: i
        for i, m in enumerate(
            ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
        )
    },
    4: {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
}
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

HORIZON_DAYS = 5 * 366  # how far next_fire/previous_fire look before deciding there is none
_MARGIN = timedelta(hours=3)  # a fall-back repeats at most this much wall-clock time
_HOUR = timedelta(hours=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CronError(ValueError):
    pass


class TimeError(ValueError):
    """A time that is not ISO 8601 (or names no real date)."""


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression: the allowed values of each field, and whether day of month and
    day of week were restricted (Vixie cron: when both are, a day matches if *either* does)."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool
    fixed_time: bool = False  # neither minute nor hour starts with '*' (see the module doc)

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = day.isoweekday() % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_month or in_week
        return in_month and in_week


def parse_cron(text: str) -> Cron:
    expanded = _MACROS.get(text.strip().lower(), text)
    fields = expanded.split()
    if len(fields) != 5:
        raise CronError(
            f"needs 5 fields (minute hour day-of-month month day-of-week), found {len(fields)}"
        )
    sets = [_field(i, f) for i, f in enumerate(fields)]
    weekdays = frozenset(0 if d == 7 else d for d in sets[4])
    return Cron(
        text=text,
        minutes=sets[0],
        hours=sets[1],
        days=sets[2],
        months=sets[3],
        weekdays=weekdays,
        days_restricted=not fields[2].startswith("*"),
        weekdays_restricted=not fields[4].startswith("*"),
        fixed_time=not fields[0].startswith("*") and not fields[1].startswith("*"),
    )


def cron_problem(text: str) -> str | None:
    try:
        parse_cron(text)
    except CronError as exc:
        return str(exc)
    return None


def _field(index: int, text: str) -> frozenset[int]:
    name, low, high = _FIELDS[index]
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{name}: bad step {step_text!r}")
            step = int(step_text)
        if body == "*":
            start, end = low, high if index != 4 else 6
        elif "-" in body:
            first, _, last = body.partition("-")
            start, end = _value(index, first), _value(index, last)
        else:
            start = _value(index, body)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise CronError(f"{name}: {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _value(index: int, text: str) -> int:
    names = _NAMES.get(index, {})
    if text.lower() in names:
        return names[text.lower()]
    if not text.isdigit():
        raise CronError(f"{_FIELDS[index][0]}: {text!r} is not a number")
    return int(text)


# --- fire times ---------------------------------------------------------------------------------


def next_fire(cron: Cron, zone: tzinfo, after: datetime) -> datetime | None:
    """The first fire strictly after ``after`` (UTC), None when there is none within ~5 years."""
    return next(_forward(cron, zone, _utc(after), None), None)


def fires_between(cron: Cron, zone: tzinfo, start: datetime, end: datetime) -> Iterator[datetime]:
    """Every fire ``t`` with ``start < t <= end``, in order (UTC)."""
    end = _utc(end)
    for fire in _forward(cron, zone, _utc(start), end):
        if fire > end:
            return
        yield fire


def previous_fire(cron: Cron, zone: tzinfo, at: datetime) -> datetime | None:
    """The latest fire ``t <= at`` (UTC), None when there is none within ~5 years before."""
    return next(_backward(cron, zone, _utc(at)), None)


def _forward(
    cron: Cron, zone: tzinfo, after: datetime, until: datetime | None
) -> Iterator[datetime]:
    start = _wall(after, zone).replace(minute=0, second=0, microsecond=0) - _MARGIN
    if until is None:
        last_day = start.date() + timedelta(days=HORIZON_DAYS)
    else:
        last_day = _wall(until, zone).date() + timedelta(days=1)
    hours = sorted(cron.hours)
    found = _InOrder(forward=True)
    day = start.date()
    while day <= last_day:
        if day.month not in cron.months:
            day = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
            continue
        if cron.matches_day(day):
            for hour in hours:
                wall = datetime.combine(day, time(hour))
                if wall < start:
                    continue
                yield from found.release(_earliest(wall, zone))
                found.push_all(t for t in _hour_fires(cron, zone, wall) if t > after)
        elif found:
            yield from found.release(_earliest(datetime.combine(day, time()), zone))
        day += timedelta(days=1)
    yield from found.release(None)


def _backward(cron: Cron, zone: tzinfo, at: datetime) -> Iterator[datetime]:
    start = _wall(at, zone).replace(minute=0, second=0, microsecond=0) + _MARGIN
    first_day = start.date() - timedelta(days=HORIZON_DAYS)
    hours = sorted(cron.hours, reverse=True)
    found = _InOrder(forward=False)
    day = start.date()
    while day >= first_day:
        if day.month not in cron.months:
            day = day.replace(day=1) - timedelta(days=1)
            continue
        if cron.matches_day(day):
            for hour in hours:
                wall = datetime.combine(day, time(hour))
                if wall > start:
                    continue
                yield from found.release(_latest(wall + _HOUR, zone))
                found.push_all(t for t in _hour_fires(cron, zone, wall) if t <= at)
        elif found:
            yield from found.release(
                _latest(datetime.combine(day + timedelta(days=1), time()), zone)
            )
        day -= timedelta(days=1)
    yield from found.release(None)


class _InOrder:
    """Fires found slightly out of order, released in order (forward or backward), once each.

    ``release(bound)`` gives every held fire that comes before ``bound`` in the walk's direction:
    the caller passes a bound nothing it finds later can come before."""

    def __init__(self, forward: bool) -> None:
        self._sign = 1 if forward else -1
        self._heap: list[timedelta] = []
        self._last: timedelta | None = None

    def __bool__(self) -> bool:
        return bool(self._heap)

    def push_all(self, fires: Iterator[datetime]) -> None:
        for fire in fires:
            heapq.heappush(self._heap, (fire - _EPOCH) * self._sign)

    def release(self, bound: datetime | None) -> Iterator[datetime]:
        limit = None if bound is None else (bound - _EPOCH) * self._sign
        while self._heap and (limit is None or self._heap[0] < limit):
            key = heapq.heappop(self._heap)
            if key != self._last:
                self._last = key
                yield _EPOCH + key * self._sign


def _hour_fires(cron: Cron, zone: tzinfo, wall: datetime) -> list[datetime]:
    """The instants the matching minutes of one local wall-clock hour fire at."""
    minutes = sorted(cron.minutes)
    begin = _instant(wall, zone, 0)
    end = _instant(wall + _HOUR, zone, 0)
    if (
        begin == _instant(wall, zone, 1)
        and end == _instant(wall + _HOUR, zone, 1)
        and end - begin == _HOUR
    ):
        return [begin + timedelta(minutes=m) for m in minutes]  # no clock change in this hour
    fires: list[datetime] = []
    for minute in minutes:
        fires.extend(instants(wall.replace(minute=minute), zone, cron.fixed_time))
    return fires


def instants(wall: datetime, zone: tzinfo, fixed_time: bool = True) -> list[datetime]:
    """The instants (UTC) a naive local wall-clock time fires at in ``zone``.

    A repeated time: its first occurrence (fixed-time) or both (wildcard). A skipped time: the
    first instant after the gap (fixed-time) or none (wildcard)."""
    first = _instant(wall, zone, 0)
    second = _instant(wall, zone, 1)
    if first == second:
        return [first]
    if first < second:
        return [first] if fixed_time else [first, second]
    return [_gap_end(zone, second, first)] if fixed_time else []


def _gap_end(zone: tzinfo, before: datetime, after: datetime) -> datetime:
    """The instant the clocks jump forward, between ``before`` and ``after`` (to the second)."""
    target = after.astimezone(zone).utcoffset()
    while after - before > timedelta(seconds=1):
        middle = before + timedelta(seconds=(after - before).total_seconds() // 2)
        if middle.astimezone(zone).utcoffset() == target:
            after = middle
        else:
            before = middle
    return after


def _instant(wall: datetime, zone: tzinfo, fold: int) -> datetime:
    return wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)


def _earliest(wall: datetime, zone: tzinfo) -> datetime:
    return min(_instant(wall, zone, 0), _instant(wall, zone, 1))


def _latest(wall: datetime, zone: tzinfo) -> datetime:
    return max(_instant(wall, zone, 0), _instant(wall, zone, 1))


def _wall(moment: datetime, zone: tzinfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


def _utc(moment: datetime) -> datetime:
    """An aware datetime in UTC; a naive one is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# --- ISO 8601 times -----------------------------------------------------------------------------


def parse_time(text: str, zone: tzinfo = UTC) -> datetime:
    """An ISO 8601 date or date-time as a UTC instant. Without an offset it is a wall-clock time
    in ``zone`` (a date alone: its midnight), placed as a fixed-time cron job would be: a skipped
    time is the first instant after the gap, a repeated one its first occurrence."""
    try:
        value = datetime.fromisoformat(text.strip().upper())
    except ValueError as exc:
        if "isoformat" in str(exc):
            raise TimeError(
                f"{text!r} is not an ISO 8601 time (like 2026-11-23T02:00:00Z)"
            ) from exc
        raise TimeError(f"{text!r}: {exc}") from exc
    if value.tzinfo is not None:
        return value.astimezone(UTC)
    return instants(value, zone, fixed_time=True)[0]


def time_problem(text: str) -> str | None:
    """Why ``text`` is not a usable ``run_at``/``end_at``, or None."""
    try:
        parse_time(text)
    except TimeError as exc:
        return str(exc)
    return None


# --- a schedule's timing ------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """When one schedule fires: its cron expression or one-off time, in its zone, up to its
    ``end_at``. All methods take aware datetimes and return UTC."""

    zone: ZoneInfo
    cron: Cron | None = None
    run_at: datetime | None = None
    end_at: datetime | None = None

    def next_fire(self, after: datetime) -> datetime | None:
        after = _utc(after)
        if self.cron is not None:
            found = next_fire(self.cron, self.zone, after)
        else:
            found = self.run_at if self.run_at is not None and self.run_at > after else None
        return found if found is not None and self._before_end(found) else None

    def previous_fire(self, at: datetime) -> datetime | None:
        at = _utc(at)
        if self.end_at is not None:
            at = min(at, self.end_at)
        if self.cron is not None:
            return previous_fire(self.cron, self.zone, at)
        return self.run_at if self.run_at is not None and self.run_at <= at else None

    def fires_between(self, start: datetime, end: datetime) -> Iterator[datetime]:
        start, end = _utc(start), _utc(end)
        if self.end_at is not None:
            end = min(end, self.end_at)
        if self.cron is not None:
            yield from fires_between(self.cron, self.zone, start, end)
        elif self.run_at is not None and start < self.run_at <= end:
            yield self.run_at

    def _before_end(self, fire: datetime) -> bool:
        return self.end_at is None or fire <= self.end_at


def zone_of(schedule: Schedule, default_zone: str) -> ZoneInfo:
    name = schedule.timezone or default_zone
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        pos = schedule.pos_of("timezone")
        raise InvalidRepository(
            [Problem(pos.file, pos.line, f"unknown time zone {name!r}")]
        ) from exc


def timing_of(schedule: Schedule, default_zone: str) -> Timing:
    """A validated schedule's timing; ``default_zone`` is runner.yaml's ``timezone``.

    Raises InvalidRepository (naming file and line) for a ``cron``, ``run_at`` or ``end_at``
    that cannot be read."""
    zone = zone_of(schedule, default_zone)
    cron = run_at = end_at = None
    try:
        if schedule.cron is not None:
            cron = parse_cron(schedule.cron)
    except CronError as exc:
        raise _problem(schedule, "cron", f"cron {schedule.cron!r}: {exc}") from exc
    for key in ("run_at", "end_at"):
        text = getattr(schedule, key)
        if text is None:
            continue
        try:
            value = parse_time(text, zone)
        except TimeError as exc:
            raise _problem(schedule, key, f"{key}: {exc}") from exc
        if key == "run_at":
            run_at = value
        else:
            end_at = value
    return Timing(zone=zone, cron=cron, run_at=run_at, end_at=end_at)


def _problem(schedule: Schedule, key: str, message: str) -> InvalidRepository:
    pos = schedule.pos_of(key)
    return InvalidRepository([Problem(pos.file, pos.line, f"schedule {schedule.name}: {message}")])


def due_fire(
    schedule: Schedule,
    state: Mapping[str, Any] | None,
    now: datetime,
    default_zone: str,
    armed_at: datetime | None,
) -> datetime | None:
    """The fire a reconcile at ``now`` should claim: the LATEST scheduled time ``f`` with
    ``window_start < f <= now`` (and ``f <= end_at``), where the window starts at the state's
    ``last_fire``, else at ``armed_at`` (when the schedule became desired state). Missed windows
    collapse into that one fire. None when disabled, out of runs, or nothing is due (also when
    there is neither a last fire nor an ``armed_at``)."""
    if not schedule.enabled:
        return None
    state = state or {}
    runs = int(state.get("runs") or 0)
    if schedule.max_runs is not None and runs >= schedule.max_runs:
        return None
    last = state.get("last_fire")
    window_start = parse_time(str(last)) if last else armed_at
    if window_start is None:
        return None
    fire = timing_of(schedule, default_zone).previous_fire(now)
    if fire is None or fire <= _utc(window_start):
        return None
    return fire
