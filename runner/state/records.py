"""Records written to the state branch (SPEC 4), as plain dataclasses and their YAML.

Layout::

    applied.yaml                     the commit the last fully successful apply reached
    applied/<node>.yaml              last successful change of a node: commit, digest, change, time
    outputs/<node>.yaml              the node's recorded outputs (the ``outputs`` property layer)
    changes/<date>/<change-id>.yaml  a change: node, action, commit, reasons, status, step tree
    logs/<change-id>/<step>.log      step logs, secrets masked
    runs/<run-id>.yaml               workflow runs
    approvals/<run-id>/<step>.yaml   decisions on a run's wait step: {decision, user, message, time}
    approvals/<change-id>.yaml       the approval of a change held by requires_approval_from
    schedules/<name>.yaml            last fire, run count, commit seen
    paused.yaml                      an emergency pause: {reason, by, time}
    leases/<node>.yaml               who holds a node, until when
    events/<date>/<id>.yaml          audit events
"""

from __future__ import annotations

import os
import secrets as _random
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import yaml

from runner.loading.yamlfile import Mapping, SecretRef, parse

TERMINAL = frozenset({"success", "error", "skipped", "cancelled", "aborted"})


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds") if moment else None


def new_id(moment: datetime | None = None) -> str:
    """Sortable by time to the millisecond, unique across processes:
    ``20261123T101500123Z-3f9a1c`` (two applies in one second still sort in order)."""
    moment = (moment or now()).astimezone(UTC)
    millis = moment.microsecond // 1000
    return f"{moment.strftime('%Y%m%dT%H%M%S')}{millis:03d}Z-{_random.token_hex(3)}"


def holder_id() -> str:
    return f"{os.uname().nodename}:{os.getpid()}:{_random.token_hex(3)}"


def node_file(prefix: str, node: str, suffix: str = ".yaml") -> str:
    return f"{prefix}/{node.strip('/')}{suffix}"


@dataclass(frozen=True)
class StepRecord:
    id: str  # the step's name inside its action, "smoke/probe"
    status: str = "pending"
    started: str | None = None
    finished: str | None = None
    attempts: int = 0
    exit_code: int | None = None
    error: str | None = None  # masked; never a secret value
    outputs: dict[str, str] = field(default_factory=dict)  # masked


@dataclass(frozen=True)
class ChangeRecord:
    id: str
    node: str
    action: str
    commit: str
    status: str = "pending"
    kind: str = "apply"  # apply | run | retry | resume
    base: str | None = None
    reasons: tuple[str, ...] = ()
    holder: str | None = None
    retry_of: str | None = None
    created: str | None = None
    started: str | None = None
    finished: str | None = None
    steps: tuple[StepRecord, ...] = ()
    overrides: dict[str, Any] = field(default_factory=dict)
    run: str | None = None  # the workflow run this change belongs to, and its step
    run_step: str | None = None
    digest: str | None = None  # the node's effective-input digest at ``commit``
    waiting_for: tuple[str, ...] = ()  # groups, while it waits for `runner approve CHANGE`
    approval: dict[str, Any] | None = None  # {user, message, time} once approved

    @property
    def path(self) -> str:
        return f"changes/{self.id[:8]}/{self.id}.yaml"

    def with_step(self, step: StepRecord) -> ChangeRecord:
        steps = tuple(step if s.id == step.id else s for s in self.steps)
        return replace(self, steps=steps)

    def step(self, step_id: str) -> StepRecord | None:
        return next((s for s in self.steps if s.id == step_id), None)


class _Dumper(yaml.CSafeDumper):
    """The safe dumper, plus what loaded YAML may hold: ``!secret NAME`` references (written
    back as the same tag, so a record never holds a secret value and reads back as a reference)
    and the loader's mapping type."""


def _secret(dumper: _Dumper, ref: SecretRef) -> yaml.Node:
    return dumper.represent_scalar("!secret", ref.name)


def _mapping(dumper: _Dumper, value: dict[Any, Any]) -> yaml.Node:
    return dumper.represent_dict(dict(value))


_Dumper.add_representer(SecretRef, _secret)
_Dumper.add_multi_representer(dict, _mapping)


def dump(value: Any) -> bytes:
    return yaml.dump(
        value,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
    ).encode("utf-8")


def change_to_yaml(record: ChangeRecord) -> bytes:
    body = asdict(record)
    body["reasons"] = list(record.reasons)
    body["waiting_for"] = list(record.waiting_for)
    body["steps"] = [asdict(s) for s in record.steps]
    return dump(body)


def plain(value: Any) -> Any:
    """Loaded YAML as plain dicts and lists (the dumper writes only those)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def change_from_yaml(data: bytes) -> ChangeRecord:
    loaded = parse(data.decode("utf-8"))
    if not isinstance(loaded, Mapping):
        raise ValueError("not a change record")
    doc = plain(loaded)
    steps = tuple(StepRecord(**s) for s in doc.get("steps") or ())
    fields = {k: v for k, v in doc.items() if k not in ("steps", "reasons", "waiting_for")}
    return ChangeRecord(
        **fields,
        steps=steps,
        reasons=tuple(doc.get("reasons") or ()),
        waiting_for=tuple(doc.get("waiting_for") or ()),
    )


def read_yaml(data: bytes | None) -> dict[str, Any]:
    if data is None:
        return {}
    doc = parse(data.decode("utf-8"))
    return plain(doc) if isinstance(doc, dict) else {}
