"""Validation problems as text, JSON or GitHub workflow annotations."""

from __future__ import annotations

import json

from runner.errors import Problem


def text(problems: list[Problem]) -> str:
    return "".join(f"{p}\n" for p in problems)


def as_json(problems: list[Problem], label: str) -> str:
    body = {
        "valid": not problems,
        "source": label,
        "problems": [{"file": p.file, "line": p.line, "message": p.message} for p in problems],
    }
    return json.dumps(body, indent=2) + "\n"


def github(problems: list[Problem], prefix: str = "") -> str:
    """``::error file=…,line=…::message`` lines; ``prefix`` is the ops root inside the
    repository, so annotations land on the right file in a monorepo."""
    lines = []
    for p in problems:
        file = f"{prefix}/{p.file}" if prefix else p.file
        where = f"file={_prop(file)}" + (f",line={p.line}" if p.line else "")
        lines.append(f"::error {where}::{_data(p.message)}\n")
    return "".join(lines)


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")
