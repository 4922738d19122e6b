"""The plan as JSON (schemas/plan.schema.json, ``"version": 1``). Secrets show as ``***``."""

from __future__ import annotations

import json
from typing import Any

from runner.changes import PropertyChange, is_missing
from runner.planning.dag import PlannedStep
from runner.planning.plan import PLAN_FORMAT_VERSION, NodePlan, Plan
from runner.render.values import masked


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    needs: dict[str, list[str]] = {}
    for before, after in plan.edges:
        needs.setdefault(after, []).append(before)
    return {
        "version": PLAN_FORMAT_VERSION,
        "base": plan.base,
        "head": plan.head,
        "summary": {
            "text": plan.summary(),
            "nodes": len(plan.changes),
            "created": plan.count("created"),
            "modified": plan.count("modified"),
            "deleted": plan.count("deleted"),
            "steps": len(plan.steps),
        },
        "allow_destroy": plan.allow_destroy,
        "changes": [_change(c) for c in plan.changes],
        "steps": [_step(s, needs.get(s.id, [])) for s in plan.steps],
        "node_edges": [list(edge) for edge in plan.node_edges],
    }


def _change(change: NodePlan) -> dict[str, Any]:
    return {
        "node": change.node,
        "change": change.change,
        "action": change.action,
        "runs": change.runs,
        "note": change.note,
        "template": change.template,
        "reasons": list(change.reasons),
        "properties_diff": [property_to_dict(p) for p in change.properties_diff],
        "steps": list(change.steps),
    }


def property_to_dict(change: PropertyChange) -> dict[str, Any]:
    return {
        "key": change.key,
        "change": change.kind,
        "old": None if is_missing(change.old) else masked(change.old),
        "new": None if is_missing(change.new) else masked(change.new),
        "layer": change.layer,
        "file": change.file,
        "line": change.line,
    }


def _step(step: PlannedStep, needs: list[str]) -> dict[str, Any]:
    return {
        "id": step.id,
        "node": step.node,
        "action": step.action,
        "name": step.name,
        "run": step.run,
        "if": step.condition,
        "timeout": step.timeout,
        "retries": {"attempts": step.retries.attempts, "backoff": step.retries.backoff},
        "needs": sorted(needs),
    }


def render(plan: Plan) -> str:
    return json.dumps(plan_to_dict(plan), indent=2, ensure_ascii=False) + "\n"
