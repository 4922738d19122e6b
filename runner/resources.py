"""Files shipped with the package: the JSON Schemas and the example ops repo.

A wheel carries them as ``runner/data/``; a source checkout (editable install, tests) reads the
top-level ``schemas/`` and ``example-repo/`` folders in place.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """``name`` is ``schemas`` or ``example-repo``."""
    shipped = _PACKAGE / "data" / name
    if shipped.is_dir():
        return shipped
    in_source = _PACKAGE.parent / name
    if in_source.is_dir():
        return in_source
    raise FileNotFoundError(f"{name} is missing from this installation of gitops-runner")
