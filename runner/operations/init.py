"""``runner init DIR``: a working ops repo, copied from the example and committed.

The example pins a template version to a revision of the repository it ships in; a new repository
cannot have that commit, so each pinned version is re-pointed at a tag (``<template>-<version>``)
created on the first commit. Validation then passes in the new repository as it stands.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from runner.errors import InvalidArgument
from runner.gitrepo import GitRepo
from runner.loading.yamlfile import Mapping, parse
from runner.resources import data_dir

_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".demo-out")


@dataclass(frozen=True)
class Initialised:
    folder: Path
    commit: str
    tags: tuple[str, ...]


def init(folder: Path) -> Initialised:
    if folder.exists() and any(folder.iterdir()):
        raise InvalidArgument(f"{folder}: exists and is not empty")
    shutil.copytree(data_dir("example-repo"), folder, ignore=_SKIP, dirs_exist_ok=True)
    tags = [_repin(path) for path in sorted(folder.glob("templates/*/template.yaml"))]
    git = GitRepo.init(folder)
    commit = git.commit_worktree("Initial ops repo from gitops-runner's example")
    names = tuple(tag for found in tags for tag in found)
    for tag in names:
        git.tag(tag, commit)
    return Initialised(folder, commit, names)


def _repin(path: Path) -> list[str]:
    """Point each version of one template at the tag ``<template>-<version>``."""
    text = path.read_text("utf-8")
    doc = parse(text)
    versions = doc.get("versions") if isinstance(doc, Mapping) else None
    if not isinstance(versions, Mapping):
        return []
    lines = text.splitlines(keepends=True)
    code = path.parent.name
    tags = []
    for name, body in versions.items():
        if not isinstance(body, Mapping) or "rev" not in body:
            continue
        tag = f"{code}-{name}"
        index = body.line_of("rev") - 1
        lines[index] = re.sub(r"(rev:\s*)([^,}\s#]+)", rf"\g<1>{tag}", lines[index], count=1)
        tags.append(tag)
    path.write_text("".join(lines), "utf-8")
    return tags
