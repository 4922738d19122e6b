"""Rendering property values: secrets always masked as ``***``."""

from __future__ import annotations

import json
from typing import Any

import yaml

from runner.loading.yamlfile import SecretRef

MASK = "***"


def masked(value: Any) -> Any:
    """A plain copy of ``value`` with every secret reference replaced by ``***``."""
    if isinstance(value, SecretRef):
        return MASK
    if isinstance(value, dict):
        return {str(k): masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(v) for v in value]
    return value


def to_json(value: Any, indent: int | None = 2) -> str:
    return json.dumps(masked(value), indent=indent, ensure_ascii=False, sort_keys=False)


def to_yaml(value: Any) -> str:
    return yaml.dump(
        masked(value),
        Dumper=yaml.CSafeDumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
    )


def scalar(value: Any) -> str:
    """One value on one line (JSON, so strings are quoted and lists stay readable)."""
    return json.dumps(masked(value), ensure_ascii=False)
