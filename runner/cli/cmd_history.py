"""``runner history PATH`` (a node's property history, from git) and ``runner events list``
(audit events, from the state branch)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from runner.cli import Context, cli
from runner.cli.cmd_changes import filter_options, to_csv
from runner.cli.options import format_option
from runner.loading.snapshot import read_settings
from runner.operations.history import EVENT_FILTER_KEYS, parse_filters, query_events
from runner.operations.node_history import (
    Commit,
    HistoryEntry,
    NodeHistory,
    SkippedCommit,
    node_history,
)
from runner.render.plan_json import property_to_dict as property_json
from runner.render.plan_text import property_line

# --- runner history ------------------------------------------------------------------------------


@cli.command("history")
@click.argument("path")
@click.option(
    "--rev", default="HEAD", show_default=True, metavar="REV", help="Walk back from here."
)
@click.option(
    "--max",
    "max_entries",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after this many changes.",
)
@format_option("text", "json")
@click.pass_obj
def history_command(obj: Context, path: str, rev: str, max_entries: int | None, fmt: str) -> None:
    """The commits that changed the converged properties of the node at PATH, newest first,
    each with its property diff (secrets shown as ***). Follows first parents, as `git log
    --first-parent` does."""
    found = node_history(obj.ops, path, rev, max_entries)
    if fmt == "json":
        click.echo(json.dumps(history_to_dict(found), indent=2, ensure_ascii=False))
    else:
        click.echo(render_history(found), nl=False)


def history_to_dict(found: NodeHistory) -> dict[str, Any]:
    return {
        "node": found.node,
        "rev": found.rev,
        "complete": found.complete,
        "entries": [
            {
                **_commit(item.commit),
                "change": item.change,
                "properties_diff": [property_json(p) for p in item.properties],
            }
            for item in found.items
            if isinstance(item, HistoryEntry)
        ],
        "skipped": [
            {**_commit(item.commit), "reason": item.reason}
            for item in found.items
            if isinstance(item, SkippedCommit)
        ],
    }


def _commit(commit: Commit) -> dict[str, str]:
    return {
        "commit": commit.sha,
        "author": commit.author,
        "email": commit.email,
        "time": commit.time,
        "subject": commit.subject,
    }


def render_history(found: NodeHistory) -> str:
    n = len(found.entries)
    lines = [
        f"History of {found.node} from {found.rev[:12]} (first parent, newest first): "
        f"{n} change{'s' if n != 1 else ''}"
    ]
    for item in found.items:
        lines.append("")
        when = datetime.fromisoformat(item.commit.time).strftime("%Y-%m-%d %H:%M %z")
        head = f"{item.commit.sha[:12]}  {when}  {item.commit.author}  {item.commit.subject}"
        if isinstance(item, SkippedCommit):
            lines.append(f"! {head}")
            lines.append(f"    skipped, the node does not load here: {item.reason}")
            continue
        lines.append(f"{_SIGN[item.change]} {head}")
        lines.append(f"    {item.change}")
        lines.extend(f"    {property_line(p)}" for p in item.properties)
    if not found.complete:
        lines.append("")
        lines.append(
            f"(stopped after {n} change{'s' if n != 1 else ''}; raise --max to go further back)"
        )
    return "\n".join(lines) + "\n"


_SIGN = {"created": "+", "modified": "~", "deleted": "-"}


# --- runner events list --------------------------------------------------------------------------

EVENT_COLUMNS = ("id", "time", "kind", "by", "node", "message", "details")


@cli.group("events")
def events_group() -> None:
    """Audit events, read from the state branch."""


@events_group.command("list")
@filter_options(EVENT_FILTER_KEYS)
@format_option("text", "json", "csv")
@click.pass_obj
def events_list_command(
    obj: Context, filters: tuple[str, ...], limit: int | None, fmt: str
) -> None:
    """Audit events (pause, resume, unlock, approvals, schedules ...), oldest first."""
    wanted = parse_filters(filters, EVENT_FILTER_KEYS)
    events = query_events(obj.ops, read_settings(obj.ops), wanted, limit)
    if fmt == "json":
        click.echo(json.dumps(events, indent=2, ensure_ascii=False))
        return
    if fmt == "csv":
        click.echo(to_csv([_event_row(e) for e in events], EVENT_COLUMNS), nl=False)
        return
    if not events:
        click.echo("No events match the filters." if filters else "No events recorded yet.")
        return
    click.echo(f"{'TIME':29} {'KIND':9} {'BY':20} {'NODE':12} MESSAGE")
    for e in events:
        node = e.get("node") or "-"
        click.echo(
            f"{e.get('time', ''):29} {e.get('kind', ''):9} {e.get('by') or '-':20} {node:12} "
            f"{e.get('message', '')}"
        )


def _event_row(event: dict[str, Any]) -> dict[str, Any]:
    """The fixed columns, and every other field of the event as one JSON object."""
    row = {k: event.get(k) for k in EVENT_COLUMNS if k != "details"}
    extra = {k: v for k, v in event.items() if k not in row}
    row["details"] = json.dumps(extra, ensure_ascii=False, sort_keys=True) if extra else None
    return row
