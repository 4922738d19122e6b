"""The plan for a terminal: compact, one block per changed node.

A modified node shows every changed leaf (old → new, and where the new value was set); a created
or deleted node shows how many properties it has, since every leaf is new or gone (``runner
properties PATH --explain`` lists them). Steps are listed in plan order. Secrets show as ``***``.
"""

from __future__ import annotations

from typing import Any

from runner.changes import PropertyChange, is_missing
from runner.loading.yamlfile import SecretRef
from runner.planning.dag import PlannedStep
from runner.planning.plan import NodePlan, Plan
from runner.render.values import MASK, scalar

_SIGN = {"created": "+", "modified": "~", "deleted": "-"}


def render(plan: Plan, base_source: str = "") -> str:
    base = plan.base[:12] if plan.base else "(nothing applied)"
    head = plan.head[:12] if plan.head else "?"
    lines = [f"Plan {base} → {head}" + (f"  (base: {base_source})" if base_source else "")]
    lines.append(plan.summary())
    steps = {step.id: step for step in plan.steps}
    for change in plan.changes:
        lines.append("")
        lines.extend(node_lines(change, steps))
    return "\n".join(lines) + "\n"


def node_lines(change: NodePlan, steps: dict[str, PlannedStep]) -> list[str]:
    action = change.action or "none"
    lines = [f"{_SIGN[change.change]} {change.node}  {change.change}, action {action}"]
    lines.extend(f"    why: {reason}" for reason in change.reasons)
    if change.note:
        lines.append(f"    note: {change.note}")
    if change.change == "modified":
        lines.extend(f"    {property_line(prop)}" for prop in change.properties_diff)
    else:
        n = len(change.properties_diff)
        lines.append(f"    {n} propert{'ies' if n != 1 else 'y'}")
    if change.steps:
        lines.append("    steps:")
        lines.extend(f"      - {_step(steps[i]) if i in steps else i}" for i in change.steps)
    return lines


def property_line(prop: PropertyChange) -> str:
    old = "(none)" if is_missing(prop.old) else _value(prop.old)
    new = "(none)" if is_missing(prop.new) else _value(prop.new)
    where = f"  [{prop.layer} {prop.file}:{prop.line}]" if prop.file else ""
    return f"{prop.key}: {old} → {new}{where}"


def _value(value: Any) -> str:
    return MASK if isinstance(value, SecretRef) else scalar(value)


def _step(step: PlannedStep) -> str:
    condition = "" if step.condition == "success()" else f"  (if {step.condition})"
    return f"{step.action}/{step.name}{condition}"
