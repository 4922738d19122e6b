"""Run records on the state branch (SPEC 4): ``runs/<run-id>.yaml`` and the decision files.

A run record lists every step of the run, groups and nested workflows included, by path
(``group/child``, ``<nested step>/<child>``), each with its status, the steps it comes after,
the change ids it made, what it waits for and the decision taken on it. Decisions on a wait step
live in ``approvals/<run-id>/<step path>.yaml`` (one file per step, so a decision is never
lost to a concurrent write of the run record); the run record carries a copy for reading.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from runner.errors import InvalidArgument
from runner.loading.yamlfile import Mapping, parse
from runner.state.records import dump, plain, read_yaml
from runner.state.store import StateStore, StateView

RUNS = "runs"
APPROVALS = "approvals"
ACTIVE = frozenset({"pending", "running", "waiting"})
RUN_END = frozenset({"success", "error", "cancelled", "aborted"})
STEP_END = frozenset({"success", "error", "skipped", "cancelled", "aborted"})
FAILED = frozenset({"error", "aborted"})
DECISIONS = ("approve", "reject", "continue")


@dataclass(frozen=True)
class RunStep:
    name: str  # the step's path: "prod", "checks/lint", "db/backup"
    kind: str  # change | wait | run | group | workflow
    status: str = "pending"
    needs: tuple[str, ...] = ()  # the steps (paths) it comes after, explicit or implicit
    started: str | None = None
    finished: str | None = None
    changes: tuple[str, ...] = ()  # change ids a change step made
    waiting_for: tuple[str, ...] = ()  # groups, while it waits for a decision or an approval
    message: str = ""
    decision: dict[str, Any] | None = None  # {decision, user, message, time}
    error: str | None = None  # masked; never a secret value
    exit_code: int | None = None


@dataclass(frozen=True)
class RunRecord:
    id: str
    workflow: str  # project/code
    name: str  # the workflow's display name
    commit: str
    status: str = "pending"
    trigger: str = "manual"  # manual | schedule:<name>
    by: str | None = None
    created: str | None = None
    started: str | None = None
    finished: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # --set of this run
    holder: str | None = None
    steps: tuple[RunStep, ...] = ()

    @property
    def path(self) -> str:
        return run_path(self.id)

    @property
    def node(self) -> str:
        """The pseudo-node whose lease says who advances this run."""
        return f"/runs/{self.id}"

    def step(self, name: str) -> RunStep | None:
        return next((s for s in self.steps if s.name == name), None)

    def with_step(self, step: RunStep) -> RunRecord:
        return replace(self, steps=tuple(step if s.name == step.name else s for s in self.steps))

    def waiting_steps(self) -> list[RunStep]:
        return [s for s in self.steps if s.status == "waiting" and s.kind != "group"]


def run_path(run_id: str) -> str:
    return f"{RUNS}/{run_id}.yaml"


def approval_path(run_id: str, step: str) -> str:
    """``approvals/<run-id>/<step path>.yaml``: a group's child is a file in a folder."""
    return f"{APPROVALS}/{run_id}/{step}.yaml"


def change_approval_path(change_id: str) -> str:
    return f"{APPROVALS}/{change_id}.yaml"


def log_path(run_id: str, step: str) -> str:
    return f"logs/{run_id}/{step.replace('/', '__')}.log"


# --- YAML -------------------------------------------------------------------------------------


def run_to_yaml(record: RunRecord) -> bytes:
    body = asdict(record)
    body["steps"] = [
        {
            **asdict(s),
            "needs": list(s.needs),
            "changes": list(s.changes),
            "waiting_for": list(s.waiting_for),
        }
        for s in record.steps
    ]
    return dump(body)


def run_from_yaml(data: bytes) -> RunRecord:
    loaded = parse(data.decode("utf-8"))
    if not isinstance(loaded, Mapping):
        raise ValueError("not a run record")
    doc = plain(loaded)
    steps = tuple(
        RunStep(
            **{
                **s,
                "needs": tuple(s.get("needs") or ()),
                "changes": tuple(s.get("changes") or ()),
                "waiting_for": tuple(s.get("waiting_for") or ()),
            }
        )
        for s in doc.get("steps") or ()
    )
    fields = {k: v for k, v in doc.items() if k != "steps"}
    fields["overrides"] = fields.get("overrides") or {}
    return RunRecord(**fields, steps=steps)


def as_dict(record: RunRecord) -> dict[str, Any]:
    """The record as plain data (what ``runs show --format json`` prints)."""
    return plain(read_yaml(run_to_yaml(record)))  # type: ignore[no-any-return]


# --- reading ----------------------------------------------------------------------------------


def read_run(view: StateView | StateStore, run_id: str) -> RunRecord | None:
    data = view.read(run_path(run_id))
    return None if data is None else run_from_yaml(data)


def list_runs(store: StateStore | StateView) -> list[RunRecord]:
    """Every run, oldest first (ids sort by time)."""
    found = []
    for path in store.list(RUNS):
        if path.endswith(".yaml") and path.count("/") == 1:
            data = store.read(path)
            if data is not None:
                found.append(run_from_yaml(data))
    return sorted(found, key=lambda r: r.id)


def run_ids(store: StateStore | StateView) -> list[str]:
    return sorted(
        p[len(RUNS) + 1 : -len(".yaml")]
        for p in store.list(RUNS)
        if p.endswith(".yaml") and p.count("/") == 1
    )


def matching_runs(store: StateStore | StateView, prefix: str) -> list[str]:
    return [i for i in run_ids(store) if i.startswith(prefix)]


def find_run(store: StateStore, prefix: str) -> RunRecord:
    """The run whose id is or starts with ``prefix``; exit 3 when none or several."""
    found = matching_runs(store, prefix)
    if not found:
        raise InvalidArgument(f"no run {prefix!r} on the state branch")
    if len(found) > 1 and prefix not in found:
        raise InvalidArgument(f"{prefix!r} matches {len(found)} runs; give more of the id")
    run_id = prefix if prefix in found else found[0]
    record = read_run(store, run_id)
    assert record is not None
    return record


def read_decision(view: StateView | StateStore, run_id: str, step: str) -> dict[str, Any] | None:
    data = view.read(approval_path(run_id, step))
    return read_yaml(data) if data is not None else None


def decision_text(decision: dict[str, Any]) -> str:
    """``approved by alice at 2026-01-02T10:00:00.000+00:00``"""
    verb = {"approve": "approved", "reject": "rejected", "continue": "continued"}.get(
        str(decision.get("decision")), str(decision.get("decision"))
    )
    return f"{verb} by {decision.get('user')} at {decision.get('time')}"


def groups_text(groups: Iterable[str]) -> str:
    return ", ".join(groups) or "anyone"
