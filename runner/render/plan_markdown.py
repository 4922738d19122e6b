"""The plan as a pull-request comment: GitHub-flavoured markdown, under GitHub's size limit.

Layout: a hidden marker (CI finds the comment by it and updates it in place); the summary in
bold; base → head and how the base was chosen; one collapsible section per changed node (its
reasons, a note when nothing runs, the property diff with the provenance of each leaf, its
steps); a mermaid graph of the DAG: step by step up to ``STEP_GRAPH_MAX`` steps, one box per
node up to ``NODE_GRAPH_MAX`` nodes, else left out with a note.

Over ``LIMIT`` characters the graph goes first, then node sections from the end, and a visible
line near the top says how many were cut. Every text that comes from the repo is escaped (values
are code spans, with ``|`` escaped inside tables; other text has markdown and HTML escaped), so a
property value can neither break the table nor inject HTML, a mention or a link. Secrets show as
``***``. Pure and deterministic: the same plan gives the same text, byte for byte.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from runner.changes import PropertyChange, is_missing
from runner.planning.dag import PlannedStep
from runner.planning.plan import NodePlan, Plan
from runner.render.graph import ASSET, Dag, Vertex, mermaid, steps_dag
from runner.render.values import scalar

MARKER = "<!-- gitops-runner:plan -->"
LIMIT = 65_000  # GitHub refuses comments over 65,536 characters; keep a margin
STEP_GRAPH_MAX = 60  # steps drawn one by one up to this many
NODE_GRAPH_MAX = 150  # above this many nodes, no graph at all
MAX_ROWS = 100  # property rows shown per node
MAX_STEPS = 100  # steps listed per node
MAX_CELL = 120  # characters of one value, key or command shown

_SIGN = {"created": "+", "modified": "~", "deleted": "-"}
_ESCAPED = re.compile(r"([\\`*_\[\]|~])")


def render(plan: Plan, base_source: str = "", limit: int = LIMIT) -> str:
    header = [f"{MARKER}\n**{_text(plan.summary())}**", _revisions(plan, base_source)]
    if not plan.has_changes:
        return _join(header)
    steps = {step.id: step for step in plan.steps}
    sections = [section(change, steps) for change in plan.changes]
    return fit(header, sections, graph(plan), limit)


# --- escaping -----------------------------------------------------------------------------------


def _text(text: str) -> str:
    """Plain text in markdown: no emphasis, link, code, table cell or HTML can start in it."""
    one_line = " ".join(text.splitlines())
    escaped = one_line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _ESCAPED.sub(r"\\\1", escaped)


def _short(text: str, limit: int = MAX_CELL) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def code(text: str, *, cell: bool = False, limit: int = MAX_CELL) -> str:
    """A code span that holds any text on one line: a fence longer than any backtick run in it,
    padded when the text starts or ends with a backtick or a space; ``|`` escaped in a table
    cell (GitHub unescapes it there, inside code spans too)."""
    body = _short(" ".join(text.splitlines()) or " ", limit)
    runs = [len(run) for run in re.findall(r"`+", body)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if body[0] in "` " or body[-1] in "` " else ""
    out = f"{fence}{pad}{body}{pad}{fence}"
    return out.replace("|", "\\|") if cell else out


def _html(text: str) -> str:
    return html.escape(" ".join(text.splitlines()), quote=True)


# --- the parts ----------------------------------------------------------------------------------


def _revisions(plan: Plan, base_source: str) -> str:
    base = code(plan.base[:12]) if plan.base else "none"
    head = code(plan.head[:12]) if plan.head else "?"
    source = f" ({_text(base_source)})" if base_source else ""
    return f"Base {base}{source} → head {head}"


def section(change: NodePlan, steps: dict[str, PlannedStep]) -> str:
    """One collapsible section: ``<details>`` needs blank lines around its markdown body."""
    parts = [f"<details><summary>{_title(change)}</summary>"]
    parts.append("\n".join(f"- {_text(reason)}" for reason in change.reasons))
    if change.note:
        parts.append(f"**Nothing runs:** {_text(change.note)}")
    parts.extend(_diff(change))
    listed = [steps[i] for i in change.steps if i in steps]
    if listed:
        parts.append(_steps(listed))
    parts.append("</details>")
    return "\n\n".join(p for p in parts if p)


def _title(change: NodePlan) -> str:
    if change.runs:
        n = len(change.steps)
        what = f"{change.action} ({n} step{'s' if n != 1 else ''})"
    elif change.action:
        what = f"{change.action} (not run)"
    else:
        what = "nothing to run"
    return (
        f"{_SIGN[change.change]} <code>{_html(change.node)}</code> — {change.change}, {_html(what)}"
    )


def _diff(change: NodePlan) -> list[str]:
    props = change.properties_diff
    if not props:
        return ["No property changed."] if change.change == "modified" else []
    table = _table(props[:MAX_ROWS])
    more = len(props) - MAX_ROWS
    if more > 0:
        table += (
            f"\n\n… and {more} more propert{'ies' if more != 1 else 'y'}: "
            "run `runner plan` locally or see the JSON artifact."
        )
    if change.change == "modified":
        return [table]
    n = len(props)
    label = f"{n} propert{'ies' if n != 1 else 'y'}"
    return [f"<details><summary>{label}</summary>", table, "</details>"]


def _table(props: Sequence[PropertyChange]) -> str:
    rows = ["| key | old | new | set by |", "| --- | --- | --- | --- |"]
    for prop in props:
        old = "—" if is_missing(prop.old) else code(scalar(prop.old), cell=True)
        new = "—" if is_missing(prop.new) else code(scalar(prop.new), cell=True)
        rows.append(f"| {code(prop.key, cell=True)} | {old} | {new} | {_set_by(prop)} |")
    return "\n".join(rows)


def _set_by(prop: PropertyChange) -> str:
    if prop.file is None:
        return _text(prop.layer or "—")
    where = f"{prop.file}:{prop.line}" if prop.line else prop.file
    return f"{_text(prop.layer or '?')} {code(where, cell=True)}"


def _steps(listed: list[PlannedStep]) -> str:
    lines = ["Steps, in plan order:", ""]
    for i, step in enumerate(listed[:MAX_STEPS], 1):
        condition = "" if step.condition == "success()" else f" · if {code(step.condition)}"
        first, *rest = step.run.splitlines() or [""]
        command = first + (" …" if rest else "")
        lines.append(
            f"{i}. {code(f'{step.action}/{step.name}')}{condition} — {code(command, limit=100)}"
        )
    more = len(listed) - MAX_STEPS
    if more > 0:
        lines.append(f"\n… and {more} more step{'s' if more != 1 else ''}.")
    return "\n".join(lines)


def graph(plan: Plan) -> str:
    """The mermaid graph, or a line saying why there is none."""
    if plan.steps and len(plan.steps) <= STEP_GRAPH_MAX:
        dag = steps_dag(plan.steps, plan.edges).reduced()
        n = len(plan.steps)
        intro = f"**Step graph** ({n} step{'s' if n != 1 else ''}; an arrow means “runs before”)"
        return f"{intro}\n\n```mermaid\n{mermaid(dag, 'TD')}```"
    if len(plan.changes) <= NODE_GRAPH_MAX:
        vertices = tuple(Vertex(c.node, _node_label(c), ASSET) for c in plan.changes)
        dag = Dag(vertices, plan.node_edges).reduced()
        n = len(plan.changes)
        intro = (
            f"**Node graph** ({n} node{'s' if n != 1 else ''}, {len(plan.steps)} steps: "
            "too many to draw one by one; an arrow means “runs before”)"
        )
        return f"{intro}\n\n```mermaid\n{mermaid(dag, 'LR')}```"
    return (
        f"_No graph: {len(plan.changes)} nodes are more than {NODE_GRAPH_MAX} to draw; "
        "see `node_edges` and `steps` in the JSON artifact._"
    )


def _node_label(change: NodePlan) -> str:
    what = change.action if change.runs and change.action else "nothing runs"
    return f"{_SIGN[change.change]} {change.node} · {what}"


# --- the size cap -------------------------------------------------------------------------------

_GRAPH_CUT = "_Graph left out to fit GitHub's comment limit; see the JSON artifact._"


def _size(text: str) -> int:
    """Characters as GitHub may count them (UTF-16 code units): never fewer than ``len``."""
    return len(text.encode("utf-16-le")) // 2


def _join(blocks: Sequence[str]) -> str:
    return "\n\n".join(blocks) + "\n"


def cut_note(n: int) -> str:
    return (
        f"> **{n} node section{'s' if n != 1 else ''} cut to fit GitHub's comment limit; "
        "run `runner plan` locally or see the JSON artifact for all.**"
    )


def fit(header: list[str], sections: list[str], graph_block: str, limit: int) -> str:
    """Everything when it fits; else without the graph; else without the last sections."""
    whole = _join([*header, *sections, graph_block])
    if _size(whole) <= limit:
        return whole
    fixed = sum(_size(b) + 2 for b in (*header, _GRAPH_CUT)) - 1  # separators and final "\n"
    sizes = [_size(s) + 2 for s in sections]
    if fixed + sum(sizes) <= limit:
        return _join([*header, *sections, _GRAPH_CUT])
    kept = len(sections)
    total = fixed + sum(sizes)
    while kept > 0 and total + _size(cut_note(len(sections) - kept)) + 2 > limit:
        kept -= 1
        total -= sizes[kept]
    note = cut_note(len(sections) - kept)
    return _join([*header, note, *sections[:kept], _GRAPH_CUT])
