"""Reading the state branch (SPEC 4): what has been applied."""

from __future__ import annotations

from runner.loading.source import OpsRepo
from runner.loading.yamlfile import Mapping, YamlError, parse
from runner.model import Settings

APPLIED_MARKER = "applied.yaml"


def last_applied_commit(ops: OpsRepo, settings: Settings) -> str | None:
    """The commit the last successful ``apply`` brought every node to, or None."""
    git = ops.require_git()
    tip = git.try_resolve(f"refs/heads/{settings.state_branch}")
    if tip is None:
        return None
    found = git.read_path(tip, APPLIED_MARKER)
    if found is None:
        return None
    try:
        doc = parse(found[1].decode("utf-8"))
    except (YamlError, UnicodeDecodeError):
        return None
    commit = doc.get("commit") if isinstance(doc, Mapping) else None
    return git.try_resolve(str(commit)) if commit else None
