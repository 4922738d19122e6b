"""Cron expressions (5 fields, Vixie semantics) and schedule timing."""

from __future__ import annotations

from dataclasses import dataclass

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


class CronError(ValueError):
    pass


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
