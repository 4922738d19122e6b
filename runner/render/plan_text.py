"""The plan for a terminal."""

from __future__ import annotations

from runner.changes import is_missing
from runner.planning.plan import Plan
from runner.render.values import scalar

_SIGN = {"created": "+", "modified": "~", "deleted": "-"}


def render(plan: Plan, base_source: str = "") -> str:
    base = plan.base[:12] if plan.base else "(nothing applied)"
    head = plan.head[:12] if plan.head else "?"
    lines = [f"Plan {base} → {head}" + (f"  (base: {base_source})" if base_source else "")]
    lines.append(plan.summary())
    for change in plan.changes:
        action = change.action or "-"
        lines.append("")
        lines.append(f"{_SIGN[change.change]} {change.node}  {change.change}, action {action}")
        lines.extend(f"    why: {reason}" for reason in change.reasons)
        if change.note:
            lines.append(f"    note: {change.note}")
        for prop in change.properties_diff:
            old = "(none)" if is_missing(prop.old) else scalar(prop.old)
            new = "(none)" if is_missing(prop.new) else scalar(prop.new)
            where = f"  [{prop.layer} {prop.file}:{prop.line}]" if prop.file else ""
            lines.append(f"    {prop.key}: {old} → {new}{where}")
        lines.extend(f"    step {step_id.split(':', 1)[1]}" for step_id in change.steps)
    return "\n".join(lines) + "\n"
