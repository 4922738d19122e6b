"""Where the ops repo is, and reading its files from git objects or from the working tree.

The ops root is ``--repo PATH``, else the nearest folder upward holding a ``runner.yaml``, else
the git top level. It may be a folder inside a larger git repository (a monorepo): ``prefix`` is
its path inside that repository.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from runner.errors import InvalidArgument
from runner.gitrepo import GitRepo, TreeEntry

WALKED_FOLDERS = ("templates", "projects")


@dataclass(frozen=True)
class OpsRepo:
    root: Path
    git: GitRepo | None
    prefix: str  # the ops root inside the git repository, '' at its top level

    def require_git(self) -> GitRepo:
        if self.git is None:
            raise InvalidArgument(f"{self.root}: not inside a git repository")
        return self.git


def locate(repo: Path | None, cwd: Path) -> OpsRepo:
    if repo is not None:
        root = repo if repo.is_absolute() else cwd / repo
        if not root.is_dir():
            raise InvalidArgument(f"{repo}: no such folder")
    else:
        root = _find_upward(cwd)
    root = root.resolve()
    git = GitRepo.discover(root)
    prefix = git.relative_prefix(root) if git is not None else ""
    if repo is None and git is None and not (root / "runner.yaml").is_file():
        raise InvalidArgument(
            f"{cwd}: no ops repo here (no runner.yaml upward and not in a git repository); "
            "pass --repo PATH"
        )
    return OpsRepo(root=root, git=git, prefix=prefix)


def _find_upward(cwd: Path) -> Path:
    here = cwd.resolve()
    for folder in (here, *here.parents):
        if (folder / "runner.yaml").is_file():
            return folder
    git = GitRepo.discover(here)
    if git is not None and git.workdir is not None:
        return git.workdir
    return here


class Source(Protocol):
    """The files of an ops repo at one revision (or as they are on disk)."""

    label: str
    commit: str | None

    def entries(self) -> Iterator[TreeEntry]: ...

    def read(self, entry: TreeEntry) -> bytes: ...


class GitSource:
    """Files straight from git objects at a commit; nothing is checked out."""

    def __init__(self, git: GitRepo, commit: str, prefix: str) -> None:
        self.git = git
        self.commit: str | None = commit
        self.prefix = prefix
        self.label = commit[:12]

    def entries(self) -> Iterator[TreeEntry]:
        return self.git.walk(self.commit or "", self.prefix, WALKED_FOLDERS)

    def read(self, entry: TreeEntry) -> bytes:
        return self.git.blob(entry.oid)


class WorkTreeSource:
    """Files as they are on disk, uncommitted edits included. Blob ids are computed from the
    bytes, so the parse cache serves both sources."""

    label = "working tree"
    commit: str | None = None

    def __init__(self, root: Path) -> None:
        self.root = root

    def entries(self) -> Iterator[TreeEntry]:
        with os.scandir(self.root) as it:
            top = sorted(it, key=lambda e: e.name)
        for item in top:
            kind = _disk_kind(item)
            if kind == "dir":
                if item.name in WALKED_FOLDERS:
                    yield from self._walk(Path(item.path), item.name)
            else:
                yield TreeEntry(item.name, "", kind)

    def _walk(self, folder: Path, base: str) -> Iterator[TreeEntry]:
        with os.scandir(folder) as it:
            items = sorted(it, key=lambda e: e.name)
        for item in items:
            path = f"{base}/{item.name}"
            kind = _disk_kind(item)
            if kind == "dir":
                yield TreeEntry(path, "", "dir")
                yield from self._walk(Path(item.path), path)
            else:
                yield TreeEntry(path, "", kind)

    def read(self, entry: TreeEntry) -> bytes:
        return (self.root / entry.path).read_bytes()


def _disk_kind(item: os.DirEntry[str]) -> str:
    mode = item.stat(follow_symlinks=False).st_mode
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "other"
