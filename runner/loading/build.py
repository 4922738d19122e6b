"""Schema-checked YAML documents → model dataclasses. The only place raw dicts become types.

Every function here assumes its document passed its JSON Schema (shapes and types are right);
cross-references are checked later, in ``loading.checks``.
"""

from __future__ import annotations

from typing import Any

from runner.durations import parse_duration
from runner.loading.yamlfile import Mapping
from runner.model import (
    Action,
    Asset,
    Environment,
    EnvironmentSettings,
    Layer,
    Pos,
    Project,
    ProjectSettings,
    Ref,
    Retries,
    Schedule,
    Settings,
    Step,
    Template,
    TemplateVersion,
    Workflow,
    WorkflowStep,
)


def _pos(file: str, mapping: Mapping, key: str | None = None) -> Pos:
    return Pos(file, mapping.line_of(key) if key is not None else mapping.line)


def _ref(file: str, mapping: Mapping, key: str) -> Ref | None:
    value = mapping.get(key)
    return None if value is None else Ref(str(value), _pos(file, mapping, key))


def _refs(file: str, mapping: Mapping, key: str) -> tuple[Ref, ...]:
    line = mapping.line_of(key)
    return tuple(Ref(str(v), Pos(file, line)) for v in mapping.get(key) or ())


def _layer(name: str, file: str, value: Any) -> Layer:
    return Layer(name, file, value if isinstance(value, Mapping | bytes) else Mapping(1))


def _props(doc: Mapping, split: Any) -> Any:
    """The properties mapping: split off by the parse cache, or still inside the document."""
    return split if split is not None else doc.get("properties")


def _duration(value: Any) -> float | None:
    return None if value is None else parse_duration(value)


def _retries(value: Any) -> Retries:
    if value is None:
        return Retries()
    if isinstance(value, int):
        return Retries(attempts=value, backoff=1.0)
    return Retries(
        attempts=int(value.get("attempts", 0)), backoff=parse_duration(value.get("backoff", 1))
    )


# --- runner.yaml --------------------------------------------------------------------------------


def settings(file: str, doc: Mapping) -> Settings:
    state = doc.get("state") or {}
    allow = doc.get("allow_parallel") or {}
    paused = doc.get("paused")
    leases = doc.get("leases") or {}
    limits = doc.get("limits") or {}
    drift = doc.get("drift") or {}
    defaults = Settings()
    return Settings(
        file=file,
        state_branch=state.get("branch", defaults.state_branch),
        state_remote=state.get("remote"),
        parallelism=doc.get("parallelism", defaults.parallelism),
        fail_fast=doc.get("fail_fast", defaults.fail_fast),
        timezone=doc.get("timezone", defaults.timezone),
        groups={k: tuple(str(u) for u in v or ()) for k, v in (doc.get("groups") or {}).items()},
        allow_parallel_node=allow.get("runs_of_same_node", False),
        allow_parallel_workflow=allow.get("runs_of_same_workflow", False),
        paused_reason=paused.get("reason") if isinstance(paused, dict) else None,
        paused_pos=_pos(file, doc, "paused") if paused else None,
        lease_ttl=parse_duration(leases.get("ttl", defaults.lease_ttl)),
        lease_renew=parse_duration(leases.get("renew_every", defaults.lease_renew)),
        drift_every=parse_duration(drift.get("every", defaults.drift_every)),
        max_file_bytes=limits.get("max_file_bytes", defaults.max_file_bytes),
        key_lines=dict(doc.key_lines),
    )


# --- actions and steps --------------------------------------------------------------------------


def step(file: str, doc: Mapping) -> Step:
    action = _ref(file, doc, "action")
    children = tuple(step(file, s) for s in doc.get("steps") or ())
    return Step(
        name=str(doc["name"]),
        pos=_pos(file, doc),
        run=doc.get("run"),
        action=action,
        steps=children,
        run_as=doc.get("run_as", "sequential"),
        needs=_refs(file, doc, "needs"),
        condition=doc.get("if", "success()"),
        timeout=_duration(doc.get("timeout")),
        retries=_retries(doc.get("retries")),
        env=tuple(sorted((str(k), str(v)) for k, v in (doc.get("env") or {}).items())),
        description=doc.get("description", ""),
    )


def actions(file: str, doc: Mapping | None) -> dict[str, Action]:
    if not doc:
        return {}
    return {
        name: Action(
            name=name,
            pos=_pos(file, doc, name),
            steps=tuple(step(file, s) for s in body.get("steps") or ()),
            description=body.get("description", ""),
            run_as=body.get("run_as", "sequential"),
            fail_fast=body.get("fail_fast"),
        )
        for name, body in doc.items()
    }


# --- templates and nodes ------------------------------------------------------------------------


def template(
    code: str,
    file: str,
    doc: Mapping,
    version: str | None = None,
    commit: str | None = None,
    properties: Any = None,
) -> Template:
    versions = {
        name: TemplateVersion(
            name=name,
            rev=str(body["rev"]),
            pos=_pos(file, doc["versions"], name),
            description=body.get("description", ""),
        )
        for name, body in (doc.get("versions") or {}).items()
    }
    schema = doc.get("schema")
    return Template(
        code=code,
        file=file,
        name=doc.get("name", code),
        description=doc.get("description", ""),
        properties=_layer(
            "template", f"{file}@{version}" if version else file, _props(doc, properties)
        ),
        actions=actions(file, doc.get("actions")),
        versions=versions,
        schema=_plain(schema) if schema is not None else None,
        schema_pos=_pos(file, doc, "schema") if schema is not None else None,
        on_create=_ref(file, doc, "on_create"),
        on_change=_ref(file, doc, "on_change"),
        on_delete=_ref(file, doc, "on_delete"),
        check=_ref(file, doc, "check"),
        version=version,
        commit=commit,
    )


def project(code: str, file: str, doc: Mapping, properties: Any = None) -> Project:
    s = doc.get("settings") or Mapping()
    return Project(
        code=code,
        file=file,
        name=doc.get("name", code),
        description=doc.get("description", ""),
        properties=_layer("project", file, _props(doc, properties)),
        settings=ProjectSettings(
            parallelism=s.get("parallelism"),
            fail_fast=s.get("fail_fast"),
            requires_approval_from=_refs(file, s, "requires_approval_from"),
        ),
        actions=actions(file, doc.get("actions")),
    )


def environment(
    project_code: str, code: str, file: str, doc: Mapping, properties: Any = None
) -> Environment:
    s = doc.get("settings") or Mapping()
    return Environment(
        project=project_code,
        code=code,
        file=file,
        name=doc.get("name", code),
        description=doc.get("description", ""),
        type=doc.get("type", "development"),
        depends_on=_refs(file, doc, "depends_on"),
        properties=_layer("environment", file, _props(doc, properties)),
        settings=EnvironmentSettings(
            parallelism=s.get("parallelism"),
            requires_approval_from=_refs(file, s, "requires_approval_from"),
            self_heal=bool(s.get("self_heal", False)),
        ),
    )


def asset(
    project_code: str,
    env: str | None,
    code: str,
    file: str,
    doc: Mapping,
    properties: Any = None,
) -> Asset:
    spec = str(doc["template"])
    name, _, version = spec.partition("@")
    return Asset(
        project=project_code,
        environment=env,
        code=code,
        file=file,
        name=doc.get("name", code),
        description=doc.get("description", ""),
        template=Ref(name, _pos(file, doc, "template")),
        version=version or None,
        depends_on=_refs(file, doc, "depends_on"),
        properties=_layer("asset", file, _props(doc, properties)),
    )


# --- workflows and schedules --------------------------------------------------------------------


def workflow_step(file: str, doc: Mapping) -> WorkflowStep:
    common: dict[str, Any] = {
        "name": str(doc["name"]),
        "pos": _pos(file, doc),
        "needs": _refs(file, doc, "needs"),
        "condition": doc.get("if", "success()"),
        "timeout": _duration(doc.get("timeout")),
        "retries": _retries(doc.get("retries")),
        "description": doc.get("description", ""),
    }
    if "change" in doc:
        change = doc["change"]
        targets = _refs(file, change, "targets") or (
            (_ref(file, change, "target"),) if "target" in change else ()
        )
        overrides = change.get("property_overrides")
        return WorkflowStep(
            kind="change",
            targets=tuple(t for t in targets if t is not None),
            action=_ref(file, change, "action"),
            run_as=change.get("run_as", "sequential"),
            property_overrides=_layer("overrides", file, overrides) if overrides else None,
            **common,
        )
    if "wait" in doc:
        wait = doc["wait"] or Mapping()
        return WorkflowStep(
            kind="wait",
            approval_from=_refs(file, wait, "approval_from"),
            message=wait.get("message", ""),
            **common,
        )
    if "workflow" in doc:
        return WorkflowStep(kind="workflow", workflow=_ref(file, doc, "workflow"), **common)
    if "run" in doc:
        return WorkflowStep(kind="run", run=str(doc["run"]), **common)
    return WorkflowStep(
        kind="group",
        run_as=doc.get("run_as", "sequential"),
        steps=tuple(workflow_step(file, s) for s in doc.get("steps") or ()),
        **common,
    )


def workflow(project_code: str, code: str, file: str, doc: Mapping) -> Workflow:
    overrides = doc.get("property_overrides")
    return Workflow(
        project=project_code,
        code=code,
        file=file,
        name=doc.get("name", code),
        description=doc.get("description", ""),
        run_as=doc.get("run_as", "sequential"),
        steps=tuple(workflow_step(file, s) for s in doc.get("steps") or ()),
        property_overrides=_layer("overrides", file, overrides) if overrides else None,
    )


def schedules(project_code: str | None, file: str, doc: list[Mapping] | None) -> list[Schedule]:
    found = []
    for item in doc or ():
        overrides = item.get("property_overrides")
        found.append(
            Schedule(
                name=str(item["name"]),
                pos=_pos(file, item),
                project=project_code,
                cron=item.get("cron"),
                run_at=_text(item.get("run_at")),
                timezone=item.get("timezone"),
                target=_ref(file, item, "target"),
                action=_ref(file, item, "action"),
                workflow=_ref(file, item, "workflow"),
                new_commits_only=bool(item.get("new_commits_only", False)),
                max_runs=item.get("max_runs"),
                end_at=_text(item.get("end_at")),
                enabled=bool(item.get("enabled", True)),
                allow_parallel=bool(item.get("allow_parallel", False)),
                property_overrides=_layer("overrides", file, overrides) if overrides else None,
                key_lines=dict(item.key_lines),
            )
        )
    return found


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _plain(value: Any) -> Any:
    """A loaded value as plain dicts and lists (for JSON Schemas written inside templates)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
