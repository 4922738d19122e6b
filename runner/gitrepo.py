"""The git adapter: the only module that imports pygit2.

It resolves revisions, walks trees at a commit, reads blobs, and (for later stages) writes commits
without a checkout. Library errors are translated here into ``RunnerError`` kinds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pygit2

from runner.errors import InvalidArgument, UnknownRevision

FILEMODE_LINK = 0o120000
FILEMODE_TREE = 0o040000
FILEMODE_COMMIT = 0o160000
DEFAULT_NAME = "gitops-runner"
DEFAULT_EMAIL = "runner@localhost"


@dataclass(frozen=True)
class TreeEntry:
    """A file in a tree: its path relative to the walked folder, blob id and kind."""

    path: str
    oid: str
    kind: str  # "file", "symlink", "dir-link" (a submodule) or "dir"


class GitRepo:
    """A git repository opened through pygit2."""

    def __init__(self, repo: pygit2.Repository) -> None:
        self._repo = repo

    @classmethod
    def discover(cls, start: Path) -> GitRepo | None:
        found = pygit2.discover_repository(str(start))
        if found is None:
            return None
        return cls(pygit2.Repository(found))

    @classmethod
    def open(cls, path: Path) -> GitRepo:
        try:
            return cls(pygit2.Repository(str(path)))
        except pygit2.GitError as exc:
            raise InvalidArgument(f"{path}: not a git repository") from exc

    @classmethod
    def init(cls, folder: Path) -> GitRepo:
        """``git init`` with ``main`` as the first branch."""
        return cls(pygit2.init_repository(str(folder), initial_head="main"))

    @property
    def workdir(self) -> Path | None:
        return Path(self._repo.workdir) if self._repo.workdir else None

    @property
    def git_dir(self) -> Path:
        return Path(self._repo.path)

    @property
    def raw(self) -> pygit2.Repository:
        return self._repo

    def resolve(self, rev: str) -> str:
        """The commit sha a revision (branch, tag, sha, ``HEAD~2``) names."""
        try:
            obj = self._repo.revparse_single(rev)
            commit = obj.peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError) as exc:
            raise UnknownRevision(rev) from exc
        return str(commit.id)

    def try_resolve(self, rev: str) -> str | None:
        try:
            return self.resolve(rev)
        except UnknownRevision:
            return None

    def head_commit(self) -> str | None:
        try:
            return str(self._repo.head.peel(pygit2.Commit).id)
        except (pygit2.GitError, KeyError):
            return None

    def _subtree(self, commit: str, prefix: str) -> pygit2.Tree | None:
        tree = self._repo[commit].peel(pygit2.Tree)
        if not prefix:
            return tree
        try:
            obj = tree[prefix]
        except KeyError:
            return None
        return obj if isinstance(obj, pygit2.Tree) else None

    def walk(self, commit: str, prefix: str, folders: tuple[str, ...]) -> Iterator[TreeEntry]:
        """Every entry under ``prefix`` at ``commit``: top-level files, and everything below the
        top-level folders named in ``folders``. Paths are relative to ``prefix``."""
        root = self._subtree(commit, prefix)
        if root is None:
            return
        for obj in root:
            name = obj.name or ""
            if isinstance(obj, pygit2.Tree):
                if name in folders:
                    yield from self._walk_tree(obj, name)
            else:
                yield TreeEntry(name, str(obj.id), _kind(obj.filemode))

    def _walk_tree(self, tree: pygit2.Tree, base: str) -> Iterator[TreeEntry]:
        for obj in tree:
            path = f"{base}/{obj.name}"
            if isinstance(obj, pygit2.Tree):
                yield TreeEntry(path, str(obj.id), "dir")
                yield from self._walk_tree(obj, path)
            else:
                yield TreeEntry(path, str(obj.id), _kind(obj.filemode))

    def blob(self, oid: str) -> bytes:
        _, data = self._repo.odb.read(oid)
        return bytes(data)

    def read_path(self, commit: str, path: str) -> tuple[str, bytes] | None:
        """The blob id and bytes of one file at a commit, or None when it is not a file."""
        tree = self._repo[commit].peel(pygit2.Tree)
        try:
            obj = tree[path]
        except KeyError:
            return None
        if not isinstance(obj, pygit2.Blob) or obj.filemode == FILEMODE_LINK:
            return None
        return str(obj.id), bytes(obj.data)

    def signature(self) -> pygit2.Signature:
        """The git identity, else ``gitops-runner <runner@localhost>``."""
        try:
            return self._repo.default_signature
        except (KeyError, pygit2.GitError):
            return pygit2.Signature(DEFAULT_NAME, DEFAULT_EMAIL)

    def commit_worktree(self, message: str) -> str:
        """Stage every file of the work tree and commit it on the current branch."""
        repo = self._repo
        repo.index.add_all()
        repo.index.write()
        tree = repo.index.write_tree()
        parents = [] if repo.head_is_unborn else [repo.head.target]
        sig = self.signature()
        return str(repo.create_commit("HEAD", sig, sig, message, tree, parents))

    def tag(self, name: str, commit: str) -> None:
        self._repo.references.create(f"refs/tags/{name}", pygit2.Oid(hex=commit), force=True)

    def relative_prefix(self, folder: Path) -> str:
        """The path of ``folder`` inside this repository's work tree, '' for its top level."""
        workdir = self.workdir
        if workdir is None:
            return ""
        rel = os.path.relpath(folder.resolve(), workdir.resolve())
        if rel == ".":
            return ""
        if rel.startswith(".."):
            raise InvalidArgument(f"{folder}: outside the git work tree {workdir}")
        return PurePosixPath(Path(rel)).as_posix()


def _kind(mode: int) -> str:
    if mode == FILEMODE_LINK:
        return "symlink"
    if mode == FILEMODE_COMMIT:
        return "dir-link"
    return "file"


def blob_id(data: bytes) -> str:
    """Git's blob id of ``data`` (what ``git hash-object`` prints)."""
    return str(pygit2.hash(data))
