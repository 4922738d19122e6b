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
from itertools import accumulate
from typing import Any

from runner.changes import PropertyChange, is_missing
from runner.loading.yamlfile import SecretRef
from runner.planning.dag import PlannedStep
from runner.planning.plan import NodePlan, Plan
from runner.render.graph import ASSET, Dag, Vertex, mermaid, steps_dag
from runner.render.values import MASK, scalar

MARKER = "<!-- gitops-runner:plan -->"
LIMIT = 65_000  # GitHub refuses comments over 65,536 characters; keep a margin
STEP_GRAPH_MAX = 60  # steps drawn one by one up to this many
NODE_GRAPH_MAX = 150  # above this many nodes, no graph at all
MAX_ROWS = 100  # property rows shown per node
MAX_STEPS = 100  # steps listed per node
MAX_CELL = 120  # characters of one value, key or command shown

_SIGN = {"created": "+", "modified": "~", "deleted": "-"}
_ESCAPED = re.compile(r"([\\`*_\[\]|~#])")
_BLOCK_START = re.compile(r"^(\s*)([-+=]|\d+(?=[.)]))")  # a list item or heading underline


def render(plan: Plan, base_source: str = "", limit: int = LIMIT) -> str:
    header = [f"{MARKER}\n**{_text(plan.summary())}**", _revisions(plan, base_source)]
    if not plan.has_changes:
        return _join(header)
    steps = {step.id: step for step in plan.steps}
    sections = [(change.node, section(change, steps)) for change in plan.changes]
    drawn = graph(plan)
    if drawn is None:
        return fit(header, sections, _no_graph(plan), _no_graph(plan), limit)
    return fit(header, sections, drawn, _GRAPH_CUT, limit)


def _count(n: int, noun: str) -> str:
    """``1 step``, ``2 steps``, ``3 properties``."""
    if n == 1:
        return f"1 {noun}"
    return f"{n} {noun[:-1]}ies" if noun.endswith("y") else f"{n} {noun}s"


# --- escaping -----------------------------------------------------------------------------------


def _text(text: str, *, block_start: bool = False) -> str:
    """Plain text in markdown: no emphasis, link, code, table cell or HTML can start in it, nor
    (``block_start``: the text opens a line or list item) a list or heading."""
    one_line = " ".join(text.splitlines())
    escaped = one_line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = _ESCAPED.sub(r"\\\1", escaped)
    return _BLOCK_START.sub(_escape_start, escaped) if block_start else escaped


def _escape_start(match: re.Match[str]) -> str:
    marker = match.group(2)
    if marker.isdigit():  # "1." starts an ordered list: escape the dot, keep the number
        return f"{match.group(1)}{marker}\\"
    return f"{match.group(1)}\\{marker}"


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
    parts.append("\n".join(f"- {_text(reason, block_start=True)}" for reason in change.reasons))
    if change.note:
        parts.append(f"**Note:** {_text(change.note)}")
    parts.extend(_diff(change))
    listed = [steps[i] for i in change.steps if i in steps]
    if listed:
        parts.append(_steps(listed))
    parts.append("</details>")
    return "\n\n".join(p for p in parts if p)


def _title(change: NodePlan) -> str:
    if change.runs:
        what = f"{change.action} ({_count(len(change.steps), 'step')})"
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
            f"\n\n… and {_count(more, 'more property')}: "
            "run `runner plan` locally or see the JSON artifact."
        )
    if change.change == "modified":
        return [table]
    label = _count(len(props), "property")
    return [f"<details><summary>{label}</summary>", table, "</details>"]


def _table(props: Sequence[PropertyChange]) -> str:
    rows = ["| key | old | new | set by |", "| --- | --- | --- | --- |"]
    for prop in props:
        old = "—" if is_missing(prop.old) else code(_value(prop.old), cell=True)
        new = "—" if is_missing(prop.new) else code(_value(prop.new), cell=True)
        rows.append(f"| {code(prop.key, cell=True)} | {old} | {new} | {_set_by(prop)} |")
    return "\n".join(rows)


def _value(value: Any) -> str:
    """JSON, so strings are quoted and lists readable; a secret is ``***``, never its name."""
    return MASK if isinstance(value, SecretRef) else scalar(value)


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
        lines.append(f"\n… and {_count(more, 'more step')}.")
    return "\n".join(lines)


def graph(plan: Plan) -> str | None:
    """The mermaid graph: of steps when few enough, else of nodes; None when too big."""
    if plan.steps and len(plan.steps) <= STEP_GRAPH_MAX:
        dag = steps_dag(plan.steps, plan.edges).reduced()
        n = len(plan.steps)
        intro = f"**Step graph** ({_count(n, 'step')}; an arrow means “runs before”)"
        return f"{intro}\n\n```mermaid\n{mermaid(dag, 'TD')}```"
    if len(plan.changes) <= NODE_GRAPH_MAX:
        vertices = tuple(Vertex(c.node, _node_label(c), ASSET) for c in plan.changes)
        dag = Dag(vertices, plan.node_edges).reduced()
        n = len(plan.changes)
        intro = (
            f"**Node graph** ({_count(n, 'node')}, {_count(len(plan.steps), 'step')}; "
            "an arrow means “runs before”)"
        )
        return f"{intro}\n\n```mermaid\n{mermaid(dag, 'LR')}```"
    return None


def _no_graph(plan: Plan) -> str:
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


def cut_note(n: int, first: str) -> str:
    return (
        f"> **{_count(n, 'node section')} cut to fit GitHub's comment limit; "
        f"run `runner plan` locally or see the JSON artifact for all.** "
        f"The first one cut is {code(first)}."
    )


def fit(
    header: list[str],
    sections: list[tuple[str, str]],
    graph_block: str,
    without_graph: str,
    limit: int,
) -> str:
    """Everything when it fits; else ``without_graph`` in place of the graph; else without the
    last node sections too, and a note under the header saying so. ``sections`` are
    (node path, text)."""
    texts = [text for _, text in sections]
    whole = _join([*header, *texts, graph_block])
    if _size(whole) <= limit:
        return whole
    fixed = sum(_size(b) + 2 for b in (*header, without_graph)) - 1  # separators, final "\n"
    kept_size = [0, *accumulate(_size(text) + 2 for text in texts)]
    if fixed + kept_size[-1] <= limit:
        return _join([*header, *texts, without_graph])
    kept = len(texts) - 1
    note = cut_note(1, sections[kept][0])
    while kept > 0 and fixed + kept_size[kept] + _size(note) + 2 > limit:
        kept -= 1
        note = cut_note(len(texts) - kept, sections[kept][0])
    return _join([*header, note, *texts[:kept], without_graph])
