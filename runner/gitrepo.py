"""The git adapter: the only module that imports pygit2.

It resolves revisions, walks trees at a commit, reads blobs, and (for later stages) writes commits
without a checkout. Library errors are translated here into ``RunnerError`` kinds.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath

import pygit2

from runner.errors import Blocked, InvalidArgument, RunnerError, UnknownRevision

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

    def checkout_to(self, commit: str, folder: Path) -> None:
        """Write the files of ``commit`` into ``folder`` (a private checkout for running steps),
        without touching this repository's work tree, index or refs. Symlinks are written as
        symlinks only when they stay inside the checkout."""
        folder.mkdir(parents=True, exist_ok=True)
        self._export(self._repo[commit].peel(pygit2.Tree), folder, folder.resolve())

    def _export(self, tree: pygit2.Tree, folder: Path, root: Path) -> None:
        for obj in tree:
            target = folder / (obj.name or "")
            if isinstance(obj, pygit2.Tree):
                target.mkdir(exist_ok=True)
                self._export(obj, target, root)
            elif isinstance(obj, pygit2.Blob):
                data = obj.data
                if obj.filemode == FILEMODE_LINK:
                    link = os.fsdecode(data)
                    resolved = (target.parent / link).resolve()
                    if resolved == root or root in resolved.parents:
                        target.symlink_to(link)
                    continue
                target.write_bytes(data)
                if obj.filemode == 0o100755:
                    target.chmod(0o755)

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

    # -- Writing without a checkout (the state branch, SPEC 4) ----------------------------
    # Commits built from trees, compare-and-swap of refs, fetch and push of one ref. None of
    # these touches the work tree or the index; the only ref moved is the one a caller names.

    @property
    def common_dir(self) -> Path:
        """Where refs live: the git dir, or the main one of a linked work tree."""
        marker = self.git_dir / "commondir"
        if marker.is_file():
            return (self.git_dir / marker.read_text().strip()).resolve()
        return self.git_dir

    def read_ref(self, ref: str) -> str | None:
        """The commit a ref names now (loose file or packed-refs), None when it does not exist."""
        loose = self.common_dir / ref
        try:
            text = loose.read_text().strip()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            text = ""
        if text and not text.startswith("ref:"):
            return text
        found = self._repo.references.get(ref)
        if found is None:
            return None
        return str(found.resolve().target)

    def commit_files(
        self,
        parent: str | None,
        changes: Mapping[str, bytes | None],
        message: str,
        base_tree: str | None = None,
    ) -> str:
        """A new commit on ``parent`` whose tree is the parent's (or ``base_tree``, or empty) with
        the files in ``changes`` written (bytes) or removed (None). Only the folders on a changed
        path are rebuilt; a folder left empty disappears. No ref moves."""
        repo = self._repo
        base: pygit2.Tree | None = None
        if base_tree is not None:
            base = repo[base_tree].peel(pygit2.Tree)
        elif parent is not None:
            base = repo[parent].peel(pygit2.Tree)
        tree = self._build_tree(base, _nest(changes))
        if tree is None:
            tree = repo.TreeBuilder().write()
        sig = self.signature()
        parents = [] if parent is None else [pygit2.Oid(hex=parent)]
        return str(repo.create_commit(None, sig, sig, message, tree, parents))

    def _build_tree(self, base: pygit2.Tree | None, changes: _Nested) -> pygit2.Oid | None:
        repo = self._repo
        builder = repo.TreeBuilder(base) if base is not None else repo.TreeBuilder()
        for name, change in changes.items():
            existing = builder.get(name)
            if isinstance(change, dict):
                sub = existing if isinstance(existing, pygit2.Tree) else None
                oid = self._build_tree(sub, change)
                if oid is not None:
                    builder.insert(name, oid, FILEMODE_TREE)
                elif existing is not None and sub is not None:
                    builder.remove(name)
            elif change is None:
                if existing is not None:
                    builder.remove(name)
            else:
                builder.insert(name, repo.create_blob(change), FILEMODE_BLOB)
        if len(builder) == 0:
            return None
        return builder.write()

    def tree_id(self, commit: str) -> str:
        return str(self._repo[commit].peel(pygit2.Tree).id)

    def commit_message(self, commit: str) -> str:
        return str(self._repo[commit].peel(pygit2.Commit).message)

    def last_change(self, commit: str, path: str) -> tuple[str, int] | None:
        """The newest commit on the first-parent line of ``commit`` (itself included) whose
        tree changed ``path`` against its first parent, with its committer time in Unix
        seconds; None when ``path`` is not in ``commit``. First parents, because a merged pull
        request becomes desired state when it is merged, not when its branch was written. A
        parent a shallow clone lacks counts as absent: the walk stops at the clone's edge."""

        def entry(tree: pygit2.Tree) -> pygit2.Oid | None:
            try:
                return tree[path].id
            except KeyError:
                return None

        current = self._repo[commit].peel(pygit2.Commit)
        seen = entry(current.tree)
        if seen is None:
            return None
        while True:
            parent: pygit2.Commit | None = None
            if current.parent_ids:
                try:
                    parent = self._repo[current.parent_ids[0]].peel(pygit2.Commit)
                except (KeyError, ValueError, pygit2.GitError):
                    parent = None
            if parent is None or entry(parent.tree) != seen:
                return str(current.id), int(current.commit_time)
            current = parent

    def compare_and_swap(self, ref: str, expected: str | None, new: str) -> bool:
        """Point ``ref`` at ``new`` if it names ``expected`` now (None: if it does not exist).

        Atomic across processes on this machine: the ref's lock file is created exclusively, the
        current value read under it, and the new value renamed into place. False when the ref
        held something else."""
        if not ref.startswith("refs/") or not pygit2.reference_is_valid_name(ref):
            raise InvalidArgument(f"{ref!r}: not a valid reference name")
        lock = _RefLock(self.common_dir / ref)
        lock.acquire()
        try:
            if self.read_ref(ref) != expected:
                return False
            lock.commit(new)
            return True
        finally:
            lock.release()

    def read_file(self, commit: str, path: str) -> bytes | None:
        """The bytes of the file at ``path`` in ``commit``, None when there is no such file."""
        found = self.read_path(commit, path)
        return None if found is None else found[1]

    def list_tree(self, commit: str, prefix: str) -> list[str]:
        """Every file below the folder ``prefix`` ('' for all) at ``commit``, as full paths,
        sorted."""
        prefix = prefix.strip("/")
        root = self._subtree(commit, prefix)
        if root is None:
            return []
        base = f"{prefix}/" if prefix else ""
        found: list[str] = []
        stack: list[tuple[str, pygit2.Tree]] = [(base, root)]
        while stack:
            where, tree = stack.pop()
            for obj in tree:
                if isinstance(obj, pygit2.Tree):
                    stack.append((f"{where}{obj.name}/", obj))
                elif obj.filemode != FILEMODE_COMMIT:
                    found.append(f"{where}{obj.name}")
        return sorted(found)

    def changed_files(self, old: str | None, new: str) -> dict[str, bytes | None]:
        """What ``new`` changes against ``old`` (None: an empty tree), as ``commit_files`` takes
        it: the new bytes of each added or modified file, None for each removed one."""
        repo = self._repo
        new_tree = repo[new].peel(pygit2.Tree)
        if old is None:
            return {path: self.read_file(new, path) for path in self.list_tree(new, "")}
        diff = repo[old].peel(pygit2.Tree).diff_to_tree(new_tree)
        changed: dict[str, bytes | None] = {}
        for delta in diff.deltas:
            if delta.status == pygit2.enums.DeltaStatus.DELETED:
                changed[delta.old_file.path] = None
            else:
                changed[delta.new_file.path] = self.blob(str(delta.new_file.id))
        return changed

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether ``ancestor`` is ``descendant`` or in its history."""
        if ancestor == descendant:
            return True
        return bool(self._repo.descendant_of(descendant, ancestor))

    def merge_base(self, a: str, b: str) -> str | None:
        found = self._repo.merge_base(a, b)
        return None if found is None else str(found)

    def commits_between(self, base: str | None, tip: str) -> list[str]:
        """The commits reachable from ``tip`` but not from ``base``, oldest first."""
        walker = self._repo.walk(
            pygit2.Oid(hex=tip), pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.REVERSE
        )
        if base is not None:
            walker.hide(pygit2.Oid(hex=base))
        return [str(commit.id) for commit in walker]

    def parents(self, commit: str) -> list[str]:
        return [str(p) for p in self._repo[commit].peel(pygit2.Commit).parent_ids]

    def _remote(self, remote: str) -> pygit2.Remote:
        """A configured remote by name, or an anonymous one for a URL or path."""
        if remote in self._repo.remotes.names():
            return self._repo.remotes[remote]
        return self._repo.remotes.create_anonymous(remote)

    def tracking_ref(self, remote: str, ref: str) -> str:
        """Where ``fetch_ref`` keeps what it fetched: ``refs/remotes/<remote>/<branch>``."""
        name = (
            remote
            if remote in self._repo.remotes.names()
            else f"url-{blob_id(remote.encode())[:12]}"
        )
        return f"refs/remotes/{name}/{ref.removeprefix('refs/heads/')}"

    def fetch_ref(self, remote: str, ref: str) -> str | None:
        """Fetch one ref of ``remote`` (a remote's name, a URL or a path) and return the commit
        it names there, None when the remote does not have it."""
        handle = self._remote(remote)
        tracking = self.tracking_ref(remote, ref)
        for attempt in range(20):
            try:
                handle.fetch([f"+{ref}:{tracking}"], message=f"runner: fetch {ref}")
                heads = handle.list_heads(connect=False)
                break
            except pygit2.GitError as exc:
                # Another process of this machine updating the tracking ref at the same moment.
                if "lock" not in str(exc).lower() or attempt == 19:
                    raise RunnerError(f"fetching {ref} from {remote}: {exc}") from exc
                time.sleep(random.uniform(0.005, 0.05))  # noqa: S311 - jitter
        for head in heads:
            if head.name == ref:
                return str(head.oid)
        return None

    def push_ref(
        self, remote: str, ref: str, expected_remote: str | None, new: str | None = None
    ) -> bool:
        """Move ``ref`` on ``remote`` from ``expected_remote`` (None: absent there) to ``new``
        (default: what the local ``ref`` names), as a fast-forward.

        False when the remote ref is not at ``expected_remote`` any more or the update is not a
        fast-forward; a ``RunnerError`` for any other failure. On a local remote (a path or
        ``file://``) libgit2 would overwrite the ref without checking its old value, so the
        objects are sent under a temporary ref and the ref itself is moved by
        ``compare_and_swap`` in the remote repository."""
        if new is None:
            new = self.read_ref(ref)
            if new is None:
                raise InvalidArgument(f"{ref}: nothing to push, the ref does not exist")
        if expected_remote is not None and not (
            expected_remote in self._repo and self.is_ancestor(expected_remote, new)
        ):
            return False
        handle = self._remote(remote)
        url = handle.push_url or handle.url or remote
        if _is_local_url(url):
            pushed = self._push_local(_local_path(url), ref, expected_remote, new)
        else:
            pushed = self._push_network(handle, ref, expected_remote, new)
        if pushed:
            # Bookkeeping only, as git does; another process may be moving it at the same time.
            with contextlib.suppress(pygit2.GitError):
                tracking = self.tracking_ref(remote, ref)
                self._repo.references.create(tracking, pygit2.Oid(hex=new), force=True)
        return pushed

    def _push_local(self, path: str, ref: str, expected: str | None, new: str) -> bool:
        try:
            other = GitRepo(pygit2.Repository(path))
        except pygit2.GitError as exc:
            raise RunnerError(f"{path}: not a git repository to push to: {exc}") from exc
        if other.read_ref(ref) != expected:
            return False
        try:
            self._send_objects(other, expected, new)
        except pygit2.GitError as exc:
            raise RunnerError(f"pushing {ref} to {path}: {exc}") from exc
        return other.compare_and_swap(ref, expected, new)

    def _send_objects(self, other: GitRepo, have: str | None, tip: str) -> None:
        """Write into ``other``, as one pack, the objects of the commits from ``have`` (which
        ``other`` has, with its history) to ``tip``. No temporary ref: a ref that appears and
        disappears would break the listing of any process fetching from ``other`` meanwhile."""
        repo = self._repo
        objects: list[pygit2.Oid] = []
        seen: set[pygit2.Oid] = set()
        for sha in self.commits_between(have, tip):
            commit = repo[sha].peel(pygit2.Commit)
            if commit.id in other.raw:
                continue
            if commit.parents:
                _changed_objects(commit.parents[0].tree, commit.tree, objects, seen)
            else:
                _new_objects(commit.tree, None, objects, seen)
            objects.append(commit.id)
        if not objects:
            return
        pack = pygit2.PackBuilder(repo)
        for oid in objects:
            pack.add(oid)
        pack.write(str(other.common_dir / "objects" / "pack"))

    def _push_network(
        self, handle: pygit2.Remote, ref: str, expected: str | None, new: str
    ) -> bool:
        try:
            # One connection, in the push direction: the push below reuses it, so the value the
            # server checks the update against is the one compared with ``expected`` here.
            handle.connect(direction=_DIRECTION_PUSH)
            heads = {h.name: str(h.oid) for h in handle.list_heads(connect=False)}
        except pygit2.GitError as exc:
            raise RunnerError(f"pushing {ref}: {exc}") from exc
        if heads.get(ref) != expected:
            return False
        temp = f"{_TEMP_REF_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self._repo.references.create(temp, pygit2.Oid(hex=new))
        report = _PushReport()
        try:
            # Not forced: libgit2 refuses a non-fast-forward against what the server advertises,
            # and the server applies the update only if the ref still holds that value.
            handle.push([f"{temp}:{ref}"], callbacks=report)
        except pygit2.GitError as exc:
            if any(marker in str(exc) for marker in _NON_FAST_FORWARD):
                return False
            raise RunnerError(f"pushing {ref}: {exc}") from exc
        finally:
            self._repo.references.delete(temp)
        message = report.rejected.get(ref)
        if message is None:
            return True
        if any(marker in message for marker in _NON_FAST_FORWARD):
            return False
        raise RunnerError(f"pushing {ref}: rejected by the remote: {message}")

    # -- Reading history (runner history, pause origins) ----------------------------------

    def object_ids(self, commit: str, paths: Sequence[str]) -> tuple[str | None, ...]:
        """The id of the blob or tree at each of ``paths`` in ``commit`` (None where there is
        nothing): whether files moved between two commits, without reading them."""
        tree = self._repo[commit].peel(pygit2.Tree)
        found: list[str | None] = []
        for path in paths:
            try:
                found.append(str(tree[path].id))
            except KeyError:
                found.append(None)
        return tuple(found)

    def author(self, commit: str) -> tuple[str, str, datetime]:
        """The author's name, email and time (in the author's own offset) of ``commit``."""
        sig = self._repo[commit].peel(pygit2.Commit).author
        zone = timezone(timedelta(minutes=sig.offset))
        return sig.name, sig.email, datetime.fromtimestamp(sig.time, zone)


def _kind(mode: int) -> str:
    if mode == FILEMODE_LINK:
        return "symlink"
    if mode == FILEMODE_COMMIT:
        return "dir-link"
    return "file"


def blob_id(data: bytes) -> str:
    """Git's blob id of ``data`` (what ``git hash-object`` prints)."""
    return str(pygit2.hash(data))


# ---------------------------------------------------------------------------------------------
# Helpers of GitRepo's "writing without a checkout" methods: nested tree changes, git's ref
# lock-file protocol (``<ref>.lock`` created exclusively, renamed onto the ref: the same protocol
# git and libgit2 follow, so all three interoperate), and the push report.
# ---------------------------------------------------------------------------------------------

FILEMODE_BLOB = 0o100644
LOCK_WAIT = 10.0  # seconds to wait for another writer's ref lock before giving up
LOCK_STALE = 30.0  # a ref lock older than this was left by a dead writer and is removed
_LOCK_POLL = (0.0005, 0.005)  # the range of one jittered wait for a held lock, in seconds
_DIRECTION_PUSH = 1  # libgit2's GIT_DIRECTION_PUSH
_TEMP_REF_PREFIX = "refs/runner/push/"  # a network push sends a commit from this ref
# How a push that lost a race reads: libgit2's own checks against the advertised value, then
# git receive-pack's (its ref lock found another value: "failed to update ref"; or another
# push held the lock) and the wording of the big hosts.
_NON_FAST_FORWARD = (
    "non-fastforwardable",
    "not present locally",
    "non-fast-forward",
    "fetch first",
    "failed to update ref",
    "failed to lock",
    "cannot lock ref",
    "stale info",
)

_Nested = dict[str, "bytes | _Nested | None"]

# libgit2 keeps no tree over 4 KB in its object cache; a state-branch folder of 1,000 change
# records is a 50 KB tree read on every update, so let trees up to 1 MB stay cached.
pygit2.settings.cache_object_limit(pygit2.enums.ObjectType.TREE, 1 << 20)


def _check_path(path: str) -> list[str]:
    parts = path.split("/")
    if not path or any(p in ("", ".", "..", ".git") for p in parts):
        raise InvalidArgument(f"{path!r}: not a usable path inside a tree")
    return parts


def _nest(changes: Mapping[str, bytes | None]) -> _Nested:
    """``{"a/b/c": data}`` as ``{"a": {"b": {"c": data}}}``; a path both file and folder fails."""
    root: _Nested = {}
    for path in sorted(changes):
        *folders, name = _check_path(path)
        node = root
        for folder in folders:
            child = node.setdefault(folder, {})
            if not isinstance(child, dict):
                raise InvalidArgument(f"{path!r}: a file and a folder at once in one commit")
            node = child
        if isinstance(node.get(name), dict):
            raise InvalidArgument(f"{path!r}: a file and a folder at once in one commit")
        node[name] = changes[path]
    return root


def _new_objects(
    tree: pygit2.Tree, old: pygit2.Tree | None, out: list[pygit2.Oid], seen: set[pygit2.Oid]
) -> None:
    """The trees and blobs of ``tree`` that ``old`` lacks, into ``out``, children first."""
    if tree.id in seen or (old is not None and old.id == tree.id):
        return
    seen.add(tree.id)
    before = {obj.name: obj for obj in old} if old is not None else {}
    for obj in tree:
        prev = before.get(obj.name)
        if prev is not None and prev.id == obj.id:
            continue
        if isinstance(obj, pygit2.Tree):
            _new_objects(obj, prev if isinstance(prev, pygit2.Tree) else None, out, seen)
        elif obj.filemode != FILEMODE_COMMIT and obj.id not in seen:
            seen.add(obj.id)
            out.append(obj.id)
    out.append(tree.id)


def _changed_objects(
    old: pygit2.Tree, new: pygit2.Tree, out: list[pygit2.Oid], seen: set[pygit2.Oid]
) -> None:
    """The trees and blobs of ``new`` that ``old`` lacks, into ``out``: the blob of every added
    or modified file and every folder above a changed path (libgit2's tree diff finds them
    without looking into unchanged folders)."""
    found = [new.id]
    for delta in old.diff_to_tree(new).deltas:
        if delta.status != pygit2.enums.DeltaStatus.DELETED and (
            delta.new_file.mode != FILEMODE_COMMIT
        ):
            found.append(delta.new_file.id)
        folder = delta.new_file.path or delta.old_file.path
        while "/" in folder:
            folder = folder.rsplit("/", 1)[0]
            try:
                found.append(new[folder].id)
            except KeyError:  # the folder went with the file
                continue
    for oid in found:
        if oid not in seen:
            seen.add(oid)
            out.append(oid)


def _is_local_url(url: str) -> bool:
    """Whether libgit2 reaches ``url`` through its in-process local transport."""
    return url.startswith("file://") or os.path.isdir(url)


def _local_path(url: str) -> str:
    return url[len("file://") :] if url.startswith("file://") else url


class _RefLock:
    """``<ref>.lock`` held by this process: git's protocol for updating one ref."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = path.with_name(path.name + ".lock")
        self.fd = -1

    def acquire(self) -> None:
        self.lock.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                self.fd = os.open(self.lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                return
            except FileExistsError:
                self._remove_if_stale()
            if time.monotonic() > deadline:
                raise Blocked(f"{self.lock}: held by another writer for over {LOCK_WAIT:.0f}s")
            time.sleep(random.uniform(*_LOCK_POLL))  # noqa: S311 - jitter, not a secret

    def _remove_if_stale(self) -> None:
        try:
            seen = self.lock.stat()
        except FileNotFoundError:
            return
        if time.time() - seen.st_mtime < LOCK_STALE:
            return
        # Only the very file judged stale: a fresh lock made since then has another inode.
        with contextlib.suppress(FileNotFoundError):
            if self.lock.stat().st_ino == seen.st_ino:
                self.lock.unlink()

    def commit(self, value: str) -> None:
        """Write ``value`` and rename the lock onto the ref, which releases it."""
        os.write(self.fd, f"{value}\n".encode())
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        os.replace(self.lock, self.path)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            with contextlib.suppress(FileNotFoundError):
                self.lock.unlink()


class _PushReport(pygit2.RemoteCallbacks):
    """Collects the remote's rejection of reference updates, which libgit2 does not raise."""

    def __init__(self) -> None:
        super().__init__()
        self.rejected: dict[str, str] = {}

    def push_update_reference(self, refname: str, message: str | None) -> None:
        if message:
            self.rejected[refname] = message
