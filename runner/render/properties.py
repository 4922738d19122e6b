"""Converged properties: the mapping itself, or one line per leaf with its provenance."""

from __future__ import annotations

import json

from runner.properties.merge import Converged, leaves
from runner.render.values import masked, scalar, to_json, to_yaml


def mapping(converged: Converged, fmt: str) -> str:
    if fmt == "json":
        return to_json(converged.values) + "\n"
    return to_yaml(converged.values)


def explain_rows(converged: Converged) -> list[dict[str, object]]:
    rows = []
    for path, value in leaves(converged.values):
        prov = converged.provenance.get(path)
        rows.append(
            {
                "key": ".".join(path),
                "value": masked(value),
                "layer": prov.layer if prov else None,
                "file": prov.file if prov else None,
                "line": prov.line if prov else None,
            }
        )
    return rows


def explain(converged: Converged, fmt: str) -> str:
    rows = explain_rows(converged)
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    if fmt == "yaml":
        return to_yaml(rows)
    widths = sorted(len(str(r["key"])) + len(scalar(r["value"])) + 3 for r in rows)
    width = widths[int(len(widths) * 0.9)] if widths else 0  # a few long values don't push all
    lines = []
    for row in rows:
        left = f"{row['key']} = {scalar(row['value'])}"
        where = f"{row['file']}:{row['line']}" if row["line"] else str(row["file"])
        lines.append(f"{left.ljust(width)}  {row['layer']} {where}")
    return "".join(f"{line}\n" for line in lines)
