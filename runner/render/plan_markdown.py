"""The plan as a pull-request comment (placeholder; see tests/functional/test_plan_render.py)."""

from __future__ import annotations

from runner.planning.plan import Plan
from runner.render.plan_text import render as text

MARKER = "<!-- gitops-runner:plan -->"


def render(plan: Plan, base_source: str = "") -> str:
    return f"{MARKER}\n**{plan.summary()}**\n\n```\n{text(plan, base_source)}```\n"
