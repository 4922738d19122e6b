"""What ``apply`` prints for GitHub Actions: one collapsible log group per change.

GitHub folds the lines between ``::group::title`` and ``::endgroup::`` under the title, so a run
of forty changes reads as forty lines that open on a click, each holding its steps' statuses and
logs; a failed step also gets an ``::error`` annotation, listed on the run's summary page.

Step logs come from the repository's own scripts. Printed as they are, a line such as
``::endgroup::`` or ``::add-mask::`` in a log would be a workflow command, so each log is
wrapped in ``::stop-commands::<token>`` … ``::<token>::``, with a token no log can guess.
Values inside workflow commands are escaped the way GitHub reads them back.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Mapping

from runner.state.records import ChangeRecord, StepRecord

FAILED = ("error", "cancelled", "aborted")


def in_github_actions(environ: Mapping[str, str]) -> bool:
    """True inside a GitHub Actions job, which sets ``GITHUB_ACTIONS=true``."""
    return environ.get("GITHUB_ACTIONS") == "true"


def escape_data(text: str) -> str:
    """A workflow command's message: ``%``, CR and LF escaped."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value (``title=…``): also ``:`` and ``,``."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def log_groups(
    records: list[ChangeRecord],
    logs_of: Callable[[ChangeRecord], Mapping[str, str]],
    token: Callable[[], str] = lambda: secrets.token_hex(16),
) -> Iterator[str]:
    """Lines (without newlines) for every record: its group, and an ``::error`` per failed step.

    ``logs_of(record)`` gives each step's log text (masked) by step id.
    """
    for record in records:
        yield from _group(record, logs_of(record), token)


def _group(
    record: ChangeRecord, logs: Mapping[str, str], token: Callable[[], str]
) -> Iterator[str]:
    title = f"{record.status} {record.node} {record.action} (change {record.id})"
    yield f"::group::{escape_data(title)}"
    for step in record.steps:
        yield step_line(step)
        text = logs.get(step.id, "")
        if text:
            stop = token()
            yield f"::stop-commands::{stop}"
            yield from text.splitlines()
            yield f"::{stop}::"
    yield "::endgroup::"
    for step in record.steps:
        if step.status in FAILED:
            title = escape_property(f"{record.node} {step.id}")
            message = escape_data(step.error or f"step {step.status}")
            yield f"::error title={title}::{message}"


def step_line(step: StepRecord) -> str:
    """``error     migrate  exit 3  attempts 2  boom``: status, step, and whatever is known."""
    parts = [f"{step.status:9} {step.id}"]
    if step.exit_code is not None:
        parts.append(f"exit {step.exit_code}")
    if step.attempts > 1:
        parts.append(f"attempts {step.attempts}")
    if step.error and step.error != f"exit code {step.exit_code}":
        parts.append(" ".join(step.error.splitlines()))
    return "  ".join(parts)
