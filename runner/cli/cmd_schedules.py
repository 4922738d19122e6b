"""``runner schedules list/preview``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import click

from runner.cli import Context, cli
from runner.cli.options import echo_table, format_option, rev_option, time_option
from runner.operations.schedules import PREVIEW_LIMIT, Fire, Row, preview, schedule_rows


@cli.group("schedules")
def schedules_group() -> None:
    """Schedules: when they fire next, and what they fired (times in UTC and local)."""


@schedules_group.command("list")
@click.option("--now", "now_text", metavar="TIME", help="Pretend it is TIME (ISO 8601, UTC).")
@rev_option("Read the schedules at this revision (default: HEAD).")
@format_option("text", "json")
@click.pass_obj
def list_command(obj: Context, now_text: str | None, rev: str | None, fmt: str) -> None:
    """Every schedule: what it runs, when, its state, its last and next fire."""
    rows = schedule_rows(obj.ops, time_option("--now", now_text), rev)
    if fmt == "json":
        click.echo(json.dumps([_row_json(r) for r in rows], indent=2))
        return
    if not rows:
        click.echo("No schedules (schedules.yaml, projects/<project>/schedules.yaml).")
        return
    headers = (
        "NAME",
        "STATE",
        "RUNS",
        "WHEN",
        "ZONE",
        "LAST FIRE (UTC)",
        "LAST FIRE (LOCAL)",
        "NEXT FIRE (UTC)",
        "NEXT FIRE (LOCAL)",
        "WHAT",
    )
    echo_table(headers, [_row_text(r) for r in rows])


@schedules_group.command("preview")
@click.option("--from", "start_text", required=True, metavar="TIME", help="From (exclusive).")
@click.option("--to", "end_text", required=True, metavar="TIME", help="To (inclusive).")
@click.option("--name", "names", multiple=True, metavar="NAME", help="Only this schedule.")
@format_option("text", "json")
@click.pass_obj
def preview_command(
    obj: Context, start_text: str, end_text: str, names: tuple[str, ...], fmt: str
) -> None:
    """Every fire between two times (ISO 8601; naive means UTC), in time order."""
    start, end = time_option("--from", start_text), time_option("--to", end_text)
    found = preview(obj.ops, start, end, names or None)
    if fmt == "json":
        body = {
            "from": _utc(start),
            "to": _utc(end),
            "fires": [_fire_json(f) for f in found.fires],
            "truncated": found.truncated,
        }
        click.echo(json.dumps(body, indent=2))
        return
    span = f"from {_short(start)} to {_short(end)} UTC"
    if not found.fires:
        click.echo(f"No fires {span}.")
        return
    headers = ("FIRE (UTC)", "LOCAL", "ZONE", "SCHEDULE", "WHAT")
    echo_table(headers, [_fire_text(f) for f in found.fires])
    count = len(found.fires)
    if found.truncated:
        click.echo(
            f"Only the first {PREVIEW_LIMIT:,} fires {span} are shown: "
            "narrow --from/--to or choose --name."
        )
    else:
        click.echo(f"{count} fire{'s' if count != 1 else ''} {span}.")


def _row_text(row: Row) -> list[str]:
    runs = f"{row.runs}/{row.max_runs}" if row.max_runs is not None else str(row.runs)
    when = row.cron if row.cron is not None else f"at {_local(row.run_at, row.zone)}"
    if row.end_at is not None:
        when += f" until {_local(row.end_at, row.zone)}"
    return [
        row.name,
        row.state,
        runs,
        when,
        row.zone,
        _short(row.last_fire),
        _local(row.last_fire, row.zone),
        _short(row.next_fire),
        _local(row.next_fire, row.zone),
        row.what,
    ]


def _row_json(row: Row) -> dict[str, Any]:
    return {
        "name": row.name,
        "file": row.file,
        "state": row.state,
        "target": row.target,
        "action": row.action,
        "workflow": row.workflow,
        "cron": row.cron,
        "run_at": _utc(row.run_at),
        "timezone": row.zone,
        "enabled": row.enabled,
        "new_commits_only": row.new_commits_only,
        "allow_parallel": row.allow_parallel,
        "runs": row.runs,
        "max_runs": row.max_runs,
        "end_at": _utc(row.end_at),
        "last_fire": _utc(row.last_fire),
        "last_fire_local": _local_iso(row.last_fire, row.zone),
        "next_fire": _utc(row.next_fire),
        "next_fire_local": _local_iso(row.next_fire, row.zone),
        "due": _utc(row.due),
        "last_run": row.last_run,
        "last_skip": row.last_skip,
    }


def _fire_text(fire: Fire) -> list[str]:
    return [_short(fire.at), _local(fire.at, fire.zone), fire.zone, fire.schedule, fire.what]


def _fire_json(fire: Fire) -> dict[str, Any]:
    return {
        "schedule": fire.schedule,
        "fire": _utc(fire.at),
        "local": _local_iso(fire.at, fire.zone),
        "timezone": fire.zone,
        "target": fire.target,
        "action": fire.action,
        "workflow": fire.workflow,
    }


def _format(moment: datetime) -> str:
    return "%Y-%m-%d %H:%M:%S" if moment.second or moment.microsecond else "%Y-%m-%d %H:%M"


def _short(moment: datetime | None) -> str:
    """A UTC time for a table: ``2026-11-23 02:00`` (seconds only when there are some)."""
    if moment is None:
        return "-"
    moment = moment.astimezone(UTC)
    return moment.strftime(_format(moment))


def _local(moment: datetime | None, zone: str) -> str:
    """The same instant on the schedule's wall clock: ``2026-11-23 13:00 AEDT``."""
    if moment is None:
        return "-"
    local = moment.astimezone(ZoneInfo(zone))
    return local.strftime(_format(local) + " %Z")


def _utc(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _local_iso(moment: datetime | None, zone: str) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(ZoneInfo(zone)).isoformat(timespec="seconds")
