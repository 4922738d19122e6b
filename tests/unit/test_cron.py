"""Cron fire times: Vixie day rules, daylight saving in three hemispheres' zones, one-off and
end times, and which window a reconcile fires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.errors import InvalidRepository
from runner.model import Pos, Schedule
from runner.scheduling import (
    Cron,
    CronError,
    TimeError,
    cron_problem,
    due_fire,
    fires_between,
    next_fire,
    parse_cron,
    parse_time,
    previous_fire,
    time_problem,
    timing_of,
)

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
MELBOURNE = ZoneInfo("Australia/Melbourne")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def fires(expr: str, zone: Any, start: str, end: str) -> list[str]:
    """Fires in (start, end] as UTC ``MM-DDTHH:MM``."""
    found = fires_between(parse_cron(expr), zone, utc(start), utc(end))
    return [f.strftime("%m-%dT%H:%M") for f in found]


# --- fields and day rules -----------------------------------------------------------------------


def test_vixie_or_rule_when_both_day_fields_are_restricted() -> None:
    # July 2026: the 1st and 15th are Wednesdays; Mondays are the 6th, 13th, 20th, 27th.
    assert fires("0 0 1,15 * 1", UTC, "2026-06-30T00:00", "2026-07-31T00:00") == [
        "07-01T00:00",
        "07-06T00:00",
        "07-13T00:00",
        "07-15T00:00",
        "07-20T00:00",
        "07-27T00:00",
    ]


def test_day_of_week_alone_and_day_of_month_alone() -> None:
    july = ("2026-06-30T00:00", "2026-07-31T00:00")
    assert fires("0 0 * * 1", UTC, *july) == [
        "07-06T00:00",
        "07-13T00:00",
        "07-20T00:00",
        "07-27T00:00",
    ]
    assert fires("0 0 13 * *", UTC, "2026-01-01T00:00", "2026-04-01T00:00") == [
        "01-13T00:00",
        "02-13T00:00",
        "03-13T00:00",
    ]


def test_a_day_field_starting_with_a_star_is_unrestricted_so_both_must_match() -> None:
    # */2 starts with '*': odd days AND Mondays (13th, 27th), not odd days OR Mondays.
    assert fires("0 0 */2 * 1", UTC, "2026-06-30T00:00", "2026-07-31T00:00") == [
        "07-13T00:00",
        "07-27T00:00",
    ]


def test_steps_ranges_and_names() -> None:
    # 2026-01-01 is a Thursday; Saturday the 3rd and Sunday the 4th do not fire.
    assert fires("15 9-17/4 * jan-mar mon-fri", UTC, "2026-01-01T00:00", "2026-01-05T10:00") == [
        "01-01T09:15",
        "01-01T13:15",
        "01-01T17:15",
        "01-02T09:15",
        "01-02T13:15",
        "01-02T17:15",
        "01-05T09:15",
    ]
    assert fires("0 0 1 apr-may/1 *", UTC, "2026-01-01T00:00", "2027-01-01T00:00") == [
        "04-01T00:00",
        "05-01T00:00",
    ]


def test_seven_and_zero_and_sun_are_sunday() -> None:
    sundays = ["07-05T12:00", "07-12T12:00"]
    for expr in ("0 12 * * 7", "0 12 * * 0", "0 12 * * sun", "0 12 * * SUN"):
        assert fires(expr, UTC, "2026-07-01T00:00", "2026-07-13T00:00") == sundays
    assert parse_cron("0 0 * * 5-7").weekdays == frozenset({0, 5, 6})


def test_macros() -> None:
    assert fires("@daily", UTC, "2026-07-01T00:00", "2026-07-03T00:00") == [
        "07-02T00:00",
        "07-03T00:00",
    ]
    assert fires("@hourly", UTC, "2026-07-01T00:00", "2026-07-01T02:00") == [
        "07-01T01:00",
        "07-01T02:00",
    ]
    assert fires("@weekly", UTC, "2026-07-01T00:00", "2026-07-13T00:00") == [
        "07-05T00:00",
        "07-12T00:00",
    ]
    assert fires("@monthly", UTC, "2026-07-01T00:00", "2026-09-01T00:00") == [
        "08-01T00:00",
        "09-01T00:00",
    ]
    assert parse_cron("@daily").fixed_time
    assert not parse_cron("@hourly").fixed_time


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 0 * *", "needs 5 fields (minute hour day-of-month month day-of-week), found 4"),
        ("60 0 * * *", "minute: '60' is outside 0-59"),
        ("0 0 * * mon/0", "day of week: bad step '0'"),
        ("0 0 * foo *", "month: 'foo' is not a number"),
        ("0 0 5-1 * *", "day of month: '5-1' is outside 1-31"),
    ],
)
def test_bad_expressions(expr: str, message: str) -> None:
    assert cron_problem(expr) == message
    with pytest.raises(CronError):
        parse_cron(expr)


def test_impossible_expression_gives_none_quickly() -> None:
    # Five years of calendar with no matching day: a minute-by-minute walk would take minutes.
    cron = parse_cron("0 0 30 2 *")
    assert next_fire(cron, LONDON, utc("2026-01-01T00:00")) is None
    assert previous_fire(cron, LONDON, utc("2026-01-01T00:00")) is None
    assert list(fires_between(cron, UTC, utc("2026-01-01T00:00"), utc("2036-01-01T00:00"))) == []


def test_next_and_previous_fire_boundaries() -> None:
    cron = parse_cron("0 2 * * *")
    two = utc("2026-07-01T02:00")
    assert next_fire(cron, UTC, two) == utc("2026-07-02T02:00")  # strictly after
    assert next_fire(cron, UTC, two - timedelta(seconds=1)) == two
    assert previous_fire(cron, UTC, two) == two  # at or before
    assert previous_fire(cron, UTC, two - timedelta(seconds=1)) == utc("2026-06-30T02:00")
    # Feb 29th: four years apart.
    leap = parse_cron("0 0 29 2 *")
    assert next_fire(leap, UTC, utc("2026-01-01T00:00")) == utc("2028-02-29T00:00")
    assert previous_fire(leap, UTC, utc("2026-01-01T00:00")) == utc("2024-02-29T00:00")


# --- daylight saving ----------------------------------------------------------------------------


def test_london_fixed_time_job_spring_forward_fires_after_the_gap() -> None:
    # 2026-03-29: 01:00 GMT becomes 02:00 BST; 01:30 does not exist that day.
    assert fires("30 1 * * *", LONDON, "2026-03-27T00:00", "2026-03-31T00:00") == [
        "03-27T01:30",
        "03-28T01:30",
        "03-29T01:00",  # 02:00 BST, the first instant after the gap
        "03-30T00:30",  # 01:30 BST
    ]


def test_london_fixed_time_job_fall_back_fires_once() -> None:
    # 2026-10-25: 02:00 BST becomes 01:00 GMT; 01:30 happens twice, fires at the first.
    assert fires("30 1 * * *", LONDON, "2026-10-23T00:00", "2026-10-27T00:00") == [
        "10-23T00:30",
        "10-24T00:30",
        "10-25T00:30",
        "10-26T01:30",
    ]


def test_london_wildcard_jobs_run_in_real_time() -> None:
    assert fires("*/30 * * * *", LONDON, "2026-03-28T23:00", "2026-03-29T02:00") == [
        "03-28T23:30",
        "03-29T00:00",
        "03-29T00:30",
        "03-29T01:00",  # 02:00 BST: 01:00 and 01:30 local never happen
        "03-29T01:30",
        "03-29T02:00",
    ]
    assert fires("*/30 * * * *", LONDON, "2026-10-24T23:30", "2026-10-25T02:00") == [
        "10-25T00:00",  # 01:00 BST
        "10-25T00:30",  # 01:30 BST
        "10-25T01:00",  # 01:00 GMT
        "10-25T01:30",  # 01:30 GMT
        "10-25T02:00",
    ]
    assert fires("15 * * * *", LONDON, "2026-10-24T23:00", "2026-10-25T03:00") == [
        "10-24T23:15",
        "10-25T00:15",
        "10-25T01:15",
        "10-25T02:15",
    ]


def test_new_york() -> None:
    # 2026-03-08: 02:00 EST becomes 03:00 EDT; 2026-11-01: 02:00 EDT becomes 01:00 EST.
    assert fires("30 2 * * *", NEW_YORK, "2026-03-07T00:00", "2026-03-10T00:00") == [
        "03-07T07:30",
        "03-08T07:00",  # 03:00 EDT
        "03-09T06:30",
    ]
    assert fires("30 1 * * *", NEW_YORK, "2026-10-31T00:00", "2026-11-03T00:00") == [
        "10-31T05:30",
        "11-01T05:30",  # 01:30 EDT; not 06:30 (01:30 EST)
        "11-02T06:30",
    ]
    assert fires("*/30 * * * *", NEW_YORK, "2026-03-08T06:00", "2026-03-08T07:30") == [
        "03-08T06:30",  # 01:30 EST
        "03-08T07:00",  # 03:00 EDT
        "03-08T07:30",
    ]
    assert fires("*/30 * * * *", NEW_YORK, "2026-11-01T04:30", "2026-11-01T07:00") == [
        "11-01T05:00",  # 01:00 EDT
        "11-01T05:30",
        "11-01T06:00",  # 01:00 EST
        "11-01T06:30",
        "11-01T07:00",
    ]
    assert fires("15 * * * *", NEW_YORK, "2026-11-01T04:00", "2026-11-01T07:00") == [
        "11-01T04:15",
        "11-01T05:15",
        "11-01T06:15",
    ]


def test_melbourne() -> None:
    # 2026-04-05: 03:00 AEDT becomes 02:00 AEST; 2026-10-04: 02:00 AEST becomes 03:00 AEDT.
    assert fires("30 2 * * *", MELBOURNE, "2026-04-03T00:00", "2026-04-06T00:00") == [
        "04-03T15:30",
        "04-04T15:30",  # 02:30 AEDT on the 5th, the first of two
        "04-05T16:30",
    ]
    assert fires("30 2 * * *", MELBOURNE, "2026-10-02T00:00", "2026-10-05T00:00") == [
        "10-02T16:30",
        "10-03T16:00",  # 03:00 AEDT on the 4th: 02:30 does not exist
        "10-04T15:30",
    ]
    assert fires("15 * * * *", MELBOURNE, "2026-04-04T14:00", "2026-04-04T17:30") == [
        "04-04T14:15",  # 01:15 AEDT
        "04-04T15:15",  # 02:15 AEDT
        "04-04T16:15",  # 02:15 AEST
        "04-04T17:15",
    ]
    assert fires("*/30 * * * *", MELBOURNE, "2026-10-03T15:00", "2026-10-03T16:30") == [
        "10-03T15:30",  # 01:30 AEST
        "10-03T16:00",  # 03:00 AEDT
        "10-03T16:30",
    ]


def test_previous_fire_across_daylight_saving() -> None:
    cron = parse_cron("30 1 * * *")
    assert previous_fire(cron, LONDON, utc("2026-03-29T01:00")) == utc("2026-03-29T01:00")
    assert previous_fire(cron, LONDON, utc("2026-03-29T00:59")) == utc("2026-03-28T01:30")
    assert previous_fire(cron, LONDON, utc("2026-10-25T23:00")) == utc("2026-10-25T00:30")
    wildcard = parse_cron("*/30 * * * *")
    assert previous_fire(wildcard, LONDON, utc("2026-10-25T01:10")) == utc("2026-10-25T01:00")
    assert previous_fire(wildcard, LONDON, utc("2026-10-25T00:59")) == utc("2026-10-25T00:30")


# --- properties ---------------------------------------------------------------------------------

_MINUTE = st.sampled_from(["*", "*/15", "0", "5,35", "10-20/5", "59"])
_HOUR = st.sampled_from(["*", "*/6", "1", "2-3", "0,12", "23"])
_DAY = st.sampled_from(["*", "1", "15", "1-7", "*/10", "31"])
_MONTH = st.sampled_from(["*", "3", "10", "*/2", "feb"])
_WEEKDAY = st.sampled_from(["*", "1", "0", "mon-fri", "6,7"])
_STARTS = st.datetimes(datetime(2026, 1, 1), datetime(2026, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC)
)
_SPAN = timedelta(days=2)


def _matches(cron: Cron, local: datetime) -> bool:
    return (
        local.minute in cron.minutes and local.hour in cron.hours and cron.matches_day(local.date())
    )


def _brute(cron: Cron, zone: Any, after: datetime, until: datetime) -> list[datetime]:
    """Every real minute in (after, until] whose local time matches: a wildcard job's
    definition, and any job's in UTC."""
    moment = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    found = []
    while moment <= until:
        if _matches(cron, moment.astimezone(zone)):
            found.append(moment)
        moment += timedelta(minutes=1)
    return found


@settings(max_examples=60, deadline=None)
@given(_MINUTE, _HOUR, _DAY, _MONTH, _WEEKDAY, _STARTS)
def test_next_fire_is_the_first_match_in_utc(
    minute: str, hour: str, day: str, month: str, weekday: str, start: datetime
) -> None:
    cron = parse_cron(f"{minute} {hour} {day} {month} {weekday}")
    found = next_fire(cron, UTC, start)
    expected = _brute(cron, UTC, start, start + _SPAN)
    if expected:
        assert found == expected[0]
    else:
        assert found is None or found > start + _SPAN
    if found is not None:
        assert _matches(cron, found)
        assert previous_fire(cron, UTC, found) == found
        before = previous_fire(cron, UTC, found - timedelta(seconds=1))
        assert before is None or before <= start


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(["*/30 * * * *", "15 * * * *", "* 1-2 * * *", "*/20 0-3 * * 0"]),
    st.sampled_from([LONDON, NEW_YORK, MELBOURNE]),
    st.sampled_from(["2026-03-08", "2026-03-29", "2026-04-05", "2026-10-04", "2026-10-25"]),
    st.integers(min_value=-6 * 60, max_value=30 * 60),
)
def test_wildcard_jobs_fire_at_every_matching_real_minute(
    expr: str, zone: ZoneInfo, day: str, offset: int
) -> None:
    cron = parse_cron(expr)
    start = utc(f"{day}T00:00") + timedelta(minutes=offset)
    end = start + timedelta(hours=6)
    assert list(fires_between(cron, zone, start, end)) == _brute(cron, zone, start, end)


# --- one-off and end times ----------------------------------------------------------------------


def test_parse_time() -> None:
    assert parse_time("2026-11-27T05:00:00+00:00") == utc("2026-11-27T05:00")
    assert parse_time("2026-11-27t05:00:00z") == utc("2026-11-27T05:00")
    assert parse_time("2026-11-27T05:00+1100") == utc("2026-11-26T18:00")
    assert parse_time("2026-11-27T05:00") == utc("2026-11-27T05:00")  # naive: the zone given
    assert parse_time("2026-11-27T05:00", MELBOURNE) == utc("2026-11-26T18:00")
    assert parse_time("2026-11-27", LONDON) == utc("2026-11-27T00:00")
    # A skipped local time: the first instant after the gap; a repeated one: its first time.
    assert parse_time("2026-03-29T01:30", LONDON) == utc("2026-03-29T01:00")
    assert parse_time("2026-10-25T01:30", LONDON) == utc("2026-10-25T00:30")
    with pytest.raises(TimeError, match="is not an ISO 8601 time"):
        parse_time("tomorrow")
    assert time_problem("2026-02-30") == "'2026-02-30': day is out of range for month"
    assert time_problem("2026-02-28T10:00Z") is None


def schedule(**fields: Any) -> Schedule:
    base: dict[str, Any] = {
        "name": "s",
        "pos": Pos("schedules.yaml", 1),
        "target": None,
        "action": None,
    }
    return Schedule(**{**base, **fields})


def test_run_at_with_and_without_offset() -> None:
    local = timing_of(schedule(run_at="2026-11-27T05:00:00", timezone="Australia/Melbourne"), "UTC")
    assert local.run_at == utc("2026-11-26T18:00")
    assert local.next_fire(utc("2026-11-26T17:59")) == utc("2026-11-26T18:00")
    assert local.next_fire(utc("2026-11-26T18:00")) is None
    assert local.previous_fire(utc("2026-11-26T18:00")) == utc("2026-11-26T18:00")
    assert local.previous_fire(utc("2026-11-26T17:59")) is None
    offset = timing_of(schedule(run_at="2026-11-27T05:00:00+00:00"), "Australia/Melbourne")
    assert offset.run_at == utc("2026-11-27T05:00")
    defaulted = timing_of(schedule(run_at="2026-07-01T09:00"), "Europe/London")
    assert defaulted.run_at == utc("2026-07-01T08:00")  # runner.yaml's zone, in BST


def test_end_at_stops_fires() -> None:
    timing = timing_of(schedule(cron="0 2 * * *", end_at="2026-07-03T02:00:00Z"), "UTC")
    assert list(timing.fires_between(utc("2026-07-01T00:00"), utc("2026-07-10T00:00"))) == [
        utc("2026-07-01T02:00"),
        utc("2026-07-02T02:00"),
        utc("2026-07-03T02:00"),
    ]
    assert timing.next_fire(utc("2026-07-03T02:00")) is None
    assert timing.previous_fire(utc("2026-07-09T00:00")) == utc("2026-07-03T02:00")


def test_bad_run_at_names_file_and_line() -> None:
    bad = schedule(run_at="2026-02-30T10:00", key_lines={"run_at": 7})
    with pytest.raises(InvalidRepository) as caught:
        timing_of(bad, "UTC")
    assert str(caught.value) == (
        "schedules.yaml:7: schedule s: run_at: '2026-02-30T10:00': day is out of range for month"
    )


# --- which fire is due --------------------------------------------------------------------------


def test_due_fire_is_the_latest_missed_window_only() -> None:
    nightly = schedule(cron="0 2 * * *", timezone="Europe/London")
    state = {"last_fire": "2026-11-20T02:00:00.000+00:00", "runs": 3}
    now = utc("2026-11-23T09:00")
    assert due_fire(nightly, state, now, "UTC", None) == utc("2026-11-23T02:00")
    caught_up = {"last_fire": "2026-11-23T02:00:00.000+00:00", "runs": 4}
    assert due_fire(nightly, caught_up, now, "UTC", None) is None
    assert due_fire(nightly, caught_up, utc("2026-11-24T02:00"), "UTC", None) == utc(
        "2026-11-24T02:00"
    )


def test_due_fire_without_state_starts_at_arming() -> None:
    once = schedule(run_at="2026-11-23T14:00:00Z")
    armed = utc("2026-11-23T13:58")
    assert due_fire(once, None, utc("2026-11-23T13:59"), "UTC", armed) is None
    assert due_fire(once, None, utc("2026-11-23T14:05"), "UTC", armed) == utc("2026-11-23T14:00")
    # Merged after its time: never due.
    assert due_fire(once, None, utc("2026-11-23T14:05"), "UTC", utc("2026-11-23T14:01")) is None
    nightly = schedule(cron="0 2 * * *")
    long_ago = utc("2025-01-01T00:00")
    assert due_fire(nightly, None, utc("2026-11-23T09:00"), "UTC", long_ago) == utc(
        "2026-11-23T02:00"
    )
    assert due_fire(nightly, None, utc("2026-11-23T09:00"), "UTC", None) is None


def test_due_fire_max_runs_disabled_and_end_at() -> None:
    now = utc("2026-11-23T09:00")
    armed = utc("2026-11-01T00:00")
    limited = schedule(cron="0 2 * * *", max_runs=2)
    assert due_fire(limited, {"runs": 1, "last_fire": "2026-11-20T02:00Z"}, now, "UTC", armed)
    assert (
        due_fire(limited, {"runs": 2, "last_fire": "2026-11-20T02:00Z"}, now, "UTC", armed) is None
    )
    off = schedule(cron="0 2 * * *", enabled=False)
    assert due_fire(off, None, now, "UTC", armed) is None
    ended = schedule(cron="0 2 * * *", end_at="2026-11-10")
    assert due_fire(ended, None, now, "UTC", armed) == utc("2026-11-09T02:00")
    assert due_fire(ended, {"last_fire": "2026-11-09T02:00Z"}, now, "UTC", armed) is None
