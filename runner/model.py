"""The ops-repo model: frozen dataclasses built by ``runner.loading`` from validated YAML.

Raw YAML stops at the loader; every later stage sees these types. Property layers stay as the
loader's ``Mapping`` values (free-form by nature) wrapped in ``Layer``, which knows its file.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

CONDITIONS = ("success()", "failure()", "always()")


@dataclass(frozen=True, order=True)
class Pos:
    """Where something was written: a file relative to the ops root and a 1-based line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Ref:
    """A reference written in a file (a template, node, step, group or workflow name)."""

    value: str
    pos: Pos


@dataclass(frozen=True)
class Layer:
    """One property layer: ``values`` is the loader's mapping (it keeps key lines).

    A layer read from the parse cache arrives as pickled bytes and is unpickled on first use:
    validating or planning 10,000 assets whose inputs did not move never builds their
    property trees.
    """

    name: str  # template | repo | project | environment | asset | outputs | overrides
    file: str
    source: Any  # runner.loading.yamlfile.Mapping, a plain dict, or pickled bytes of one

    @property
    def values(self) -> Any:
        source = self.source
        if isinstance(source, bytes):
            source = pickle.loads(source)  # noqa: S301 - our own cache under .git/
            object.__setattr__(self, "source", source)
        return source


@dataclass(frozen=True)
class Retries:
    attempts: int = 0
    backoff: float = 0.0


@dataclass(frozen=True)
class Step:
    name: str
    pos: Pos
    run: str | None = None
    action: Ref | None = None
    steps: tuple[Step, ...] = ()
    run_as: str = "sequential"
    needs: tuple[Ref, ...] = ()
    condition: str = "success()"
    timeout: float | None = None
    retries: Retries = Retries()
    env: tuple[tuple[str, str], ...] = ()
    description: str = ""

    @property
    def is_group(self) -> bool:
        return self.run is None and self.action is None

    def walk(self) -> Iterator[Step]:
        yield self
        for child in self.steps:
            yield from child.walk()


@dataclass(frozen=True)
class Action:
    name: str
    pos: Pos
    steps: tuple[Step, ...]
    description: str = ""
    run_as: str = "sequential"
    fail_fast: bool | None = None

    def all_steps(self) -> Iterator[Step]:
        for step in self.steps:
            yield from step.walk()


@dataclass(frozen=True)
class TemplateVersion:
    name: str
    rev: str
    pos: Pos
    description: str = ""


@dataclass(frozen=True)
class Template:
    code: str
    file: str
    name: str
    properties: Layer
    actions: dict[str, Action]
    versions: dict[str, TemplateVersion] = field(default_factory=dict)
    description: str = ""
    schema: dict[str, Any] | None = None
    schema_pos: Pos | None = None
    on_create: Ref | None = None
    on_change: Ref | None = None
    on_delete: Ref | None = None
    check: Ref | None = None
    version: str | None = None  # the version this copy was read at (None: the run's commit)
    commit: str | None = None  # the commit its files were read at, when pinned

    @property
    def label(self) -> str:
        return f"{self.code}@{self.version}" if self.version else self.code

    def action_for(self, event: str) -> Ref | None:
        """The action a node gets on ``create``, ``change`` or ``delete``."""
        if event == "create":
            return self.on_create or self.on_change
        if event == "change":
            return self.on_change
        if event == "delete":
            return self.on_delete
        raise ValueError(event)


@dataclass(frozen=True)
class ProjectSettings:
    parallelism: int | None = None
    fail_fast: bool | None = None
    requires_approval_from: tuple[Ref, ...] = ()


@dataclass(frozen=True)
class Project:
    code: str
    file: str
    name: str
    properties: Layer
    settings: ProjectSettings = ProjectSettings()
    actions: dict[str, Action] = field(default_factory=dict)
    description: str = ""

    @property
    def path(self) -> str:
        return f"/projects/{self.code}"


@dataclass(frozen=True)
class EnvironmentSettings:
    parallelism: int | None = None
    requires_approval_from: tuple[Ref, ...] = ()
    self_heal: bool = False


@dataclass(frozen=True)
class Environment:
    project: str
    code: str
    file: str
    name: str
    properties: Layer
    type: str = "development"
    depends_on: tuple[Ref, ...] = ()
    settings: EnvironmentSettings = EnvironmentSettings()
    description: str = ""

    @property
    def path(self) -> str:
        return f"/projects/{self.project}/environments/{self.code}"


@dataclass(frozen=True)
class Asset:
    project: str
    environment: str | None
    code: str
    file: str
    name: str
    template: Ref  # the template code
    version: str | None
    properties: Layer
    depends_on: tuple[Ref, ...] = ()
    description: str = ""

    @property
    def parent_path(self) -> str:
        if self.environment is None:
            return f"/projects/{self.project}"
        return f"/projects/{self.project}/environments/{self.environment}"

    @property
    def path(self) -> str:
        return f"{self.parent_path}/assets/{self.code}"


@dataclass(frozen=True)
class WorkflowStep:
    name: str
    pos: Pos
    kind: str  # change | wait | workflow | run | group
    needs: tuple[Ref, ...] = ()
    condition: str = "success()"
    targets: tuple[Ref, ...] = ()
    action: Ref | None = None
    run_as: str = "sequential"
    property_overrides: Layer | None = None
    approval_from: tuple[Ref, ...] = ()
    message: str = ""
    workflow: Ref | None = None
    run: str | None = None
    steps: tuple[WorkflowStep, ...] = ()
    timeout: float | None = None
    retries: Retries = Retries()
    description: str = ""

    def walk(self) -> Iterator[WorkflowStep]:
        yield self
        for child in self.steps:
            yield from child.walk()


@dataclass(frozen=True)
class Workflow:
    project: str
    code: str
    file: str
    name: str
    steps: tuple[WorkflowStep, ...]
    run_as: str = "sequential"
    property_overrides: Layer | None = None
    description: str = ""

    @property
    def qualified_name(self) -> str:
        return f"{self.project}/{self.code}"


@dataclass(frozen=True)
class Schedule:
    name: str
    pos: Pos
    project: str | None = None
    cron: str | None = None
    run_at: str | None = None
    timezone: str | None = None
    target: Ref | None = None
    action: Ref | None = None
    workflow: Ref | None = None
    new_commits_only: bool = False
    max_runs: int | None = None
    end_at: str | None = None
    enabled: bool = True
    allow_parallel: bool = False
    property_overrides: Layer | None = None
    key_lines: dict[str, int] = field(default_factory=dict)

    def pos_of(self, key: str) -> Pos:
        return Pos(self.pos.file, self.key_lines.get(key, self.pos.line))


@dataclass(frozen=True)
class Settings:
    """runner.yaml, with defaults filled in."""

    file: str | None = None
    state_branch: str = "runner-state"
    state_remote: str | None = None
    parallelism: int = 4
    fail_fast: bool = True
    timezone: str = "UTC"
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    allow_parallel_node: bool = False
    allow_parallel_workflow: bool = False
    paused_reason: str | None = None
    paused_pos: Pos | None = None
    lease_ttl: float = 60.0
    lease_renew: float = 20.0
    drift_every: float = 0.0  # seconds between drift checks of a node by reconcile
    max_file_bytes: int = 1024 * 1024
    key_lines: dict[str, int] = field(default_factory=dict)
