"""The state branch (SPEC 4): results committed to an orphan branch of the ops repo's repository.

Every write is ``StateStore.update(mutate, message)``. ``mutate`` is given a read-only
``StateView`` of the branch tip and returns the files to write (bytes) or remove (None); the
store commits that on the tip, as git objects only (no work tree, no index), and moves the branch
with a compare-and-swap. When another writer moved the branch first, ``mutate`` runs again on the
new tip: a mutation is a function of the view it is given, so it can be replayed, and records are
never lost nor written twice.

With a remote (SPEC 2.6 ``state.remote``), ``push`` sends the branch as a fast-forward and
``sync`` brings the remote's commits in. When the two have diverged, the commits this store made
since its last push are made again on the remote's tip by replaying their mutations; commits of
other processes sharing this clone are carried over as file changes, except a commit touching a
file the remote changed too: the remote wins and that commit is left out whole (a lease taken
elsewhere stays taken, and a claim's event never lands without its claim).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from runner.errors import Blocked
from runner.gitrepo import GitRepo
from runner.model import Settings

DEFAULT_BRANCH = "runner-state"
UPDATE_ATTEMPTS = 500  # lost compare-and-swap races before update gives up
PUSH_ATTEMPTS = 30  # rejected pushes before push gives up
_BACKOFF_BASE = 0.0005  # seconds; doubled per lost race up to _BACKOFF_MAX, then jittered
_BACKOFF_MAX = 0.05

Changes = Mapping[str, bytes | None]
Mutation = Callable[["StateView"], Changes]


class StateView:
    """The state branch at one commit (None: the branch does not exist yet), read-only."""

    def __init__(self, git: GitRepo, tip: str | None) -> None:
        self._git = git
        self.tip = tip

    def read(self, path: str) -> bytes | None:
        return None if self.tip is None else self._git.read_file(self.tip, path)

    def list(self, prefix: str) -> list[str]:
        """Every file below the folder ``prefix``, as full paths, sorted."""
        return [] if self.tip is None else self._git.list_tree(self.tip, prefix)

    def exists(self, path: str) -> bool:
        return self.read(path) is not None


@dataclass
class _Own:
    """A commit this store made since its last push, and how to make it again."""

    commit: str
    mutate: Mutation
    message: str


class StateStore:
    """Reads and compare-and-swap writes of the state branch, optionally mirrored to a remote.

    One store may be shared by the threads of a process (a lease renewer next to the executor):
    its operations take turns. Processes coordinate through the compare-and-swap alone."""

    def __init__(
        self, git: GitRepo, branch: str = DEFAULT_BRANCH, remote: str | None = None
    ) -> None:
        self.git = git
        self.branch = branch
        self.remote = remote
        self._lock = threading.RLock()
        self._own: list[_Own] = []
        self._fetched = False
        self._remote_tip: str | None = None

    @classmethod
    def for_settings(cls, git: GitRepo, settings: Settings) -> StateStore:
        """The store runner.yaml names (``state: {branch, remote}``)."""
        return cls(git, settings.state_branch, settings.state_remote)

    @property
    def ref(self) -> str:
        return f"refs/heads/{self.branch}"

    def tip(self) -> str | None:
        with self._lock:
            return self.git.read_ref(self.ref)

    def view(self, at: str | None = None) -> StateView:
        return StateView(self.git, at or self.tip())

    def read(self, path: str, at: str | None = None) -> bytes | None:
        with self._lock:
            return self.view(at).read(path)

    def list(self, prefix: str, at: str | None = None) -> list[str]:
        with self._lock:
            return self.view(at).list(prefix)

    def update(self, mutate: Mutation, message: str) -> str | None:
        """Commit what ``mutate`` returns on the tip and move the branch there; on a lost race,
        run ``mutate`` again on the new tip. Returns the new tip, or the unchanged tip (None when
        the branch does not exist) when ``mutate`` changed nothing."""
        with self._lock:
            for attempt in range(UPDATE_ATTEMPTS):
                view = self.view()
                changes = _effective(view, mutate(view))
                if not changes:
                    return view.tip
                new = self.git.commit_files(view.tip, changes, message)
                if self.git.compare_and_swap(self.ref, view.tip, new):
                    if self.remote is not None:
                        self._own.append(_Own(new, mutate, message))
                    return new
                _backoff(attempt)
        raise Blocked(f"{self.ref}: lost {UPDATE_ATTEMPTS} races in a row to other writers")

    def sync(self) -> None:
        """Bring the remote's branch in: fast-forward to it when behind, replay this store's own
        commits on it when diverged, nothing when ahead (``push`` sends those)."""
        if self.remote is None:
            return
        with self._lock:
            remote_tip = self.git.fetch_ref(self.remote, self.ref)
            self._fetched = True
            self._remote_tip = remote_tip
            if remote_tip is None:
                return
            for attempt in range(UPDATE_ATTEMPTS):
                local = self.tip()
                if local is not None and self.git.is_ancestor(remote_tip, local):
                    self._forget_pushed(remote_tip)
                    return
                if local is None or self.git.is_ancestor(local, remote_tip):
                    if self.git.compare_and_swap(self.ref, local, remote_tip):
                        self._own.clear()
                        return
                else:
                    new, remade = self._replay(local, remote_tip)
                    if self.git.compare_and_swap(self.ref, local, new):
                        self._own = [
                            _Own(again, o.mutate, o.message)
                            for o in self._own
                            if (again := remade.get(o.commit)) is not None
                        ]
                        return
                _backoff(attempt)
            raise Blocked(f"{self.ref}: lost {UPDATE_ATTEMPTS} races in a row to other writers")

    def push(self) -> None:
        """Send the branch to the remote as a fast-forward; when the remote moved, ``sync`` (its
        commits in, ours replayed on them) and push again."""
        if self.remote is None:
            return
        with self._lock:
            if not self._fetched:
                self.sync()
            for attempt in range(PUSH_ATTEMPTS):
                local = self.tip()
                if local is None or (
                    self._remote_tip is not None and self.git.is_ancestor(local, self._remote_tip)
                ):
                    return
                if self.git.push_ref(self.remote, self.ref, self._remote_tip, local):
                    self._remote_tip = local
                    self._forget_pushed(local)
                    return
                self.sync()
                _backoff(attempt)
            raise Blocked(f"{self.ref}: push to {self.remote} rejected {PUSH_ATTEMPTS} times")

    def _replay(self, local: str, remote_tip: str) -> tuple[str, dict[str, str | None]]:
        """The local commits the remote lacks, made again on ``remote_tip``: the new tip, and
        for each of this store's own commits the commit that replaces it (None: now a no-op)."""
        own = {o.commit: o for o in self._own}
        base = self.git.merge_base(local, remote_tip)
        tip = remote_tip
        remade: dict[str, str | None] = {}
        for commit in self.git.commits_between(remote_tip, local):
            view = StateView(self.git, tip)
            entry = own.get(commit)
            if entry is not None:
                changes = _effective(view, entry.mutate(view))
                message = entry.message
            else:
                changes = self._carried_over(commit, base, remote_tip, view)
                message = self.git.commit_message(commit)
            if changes:
                tip = self.git.commit_files(tip, changes, message)
            if entry is not None:
                remade[commit] = tip if changes else None
        return tip, remade

    def _carried_over(
        self, commit: str, base: str | None, remote_tip: str, view: StateView
    ) -> dict[str, bytes | None]:
        """Another process's commit as file changes; nothing when the remote changed one of its
        files too. A commit is one decision (a claim and its event, a record and its lease):
        half of it must not land. The remote wins; the process that made the commit decided on
        a stale view, and learns it by reading back the pushed tip (as leases and schedule
        claims do)."""
        parents = self.git.parents(commit)
        changed = self.git.changed_files(parents[0] if parents else None, commit)
        for path in changed:
            before = None if base is None else self.git.read_file(base, path)
            if self.git.read_file(remote_tip, path) != before:
                return {}
        return _effective(view, dict(changed))

    def _forget_pushed(self, pushed: str) -> None:
        local = self.tip()
        unpushed = set() if local is None else set(self.git.commits_between(pushed, local))
        self._own = [o for o in self._own if o.commit in unpushed]


def _effective(view: StateView, changes: Changes) -> dict[str, bytes | None]:
    """``changes`` less what would leave a file as it is."""
    return {path: data for path, data in changes.items() if view.read(path) != data}


def _backoff(attempt: int) -> None:
    ceiling = min(_BACKOFF_MAX, _BACKOFF_BASE * 2 ** min(attempt, 10))
    time.sleep(random.uniform(0, ceiling))  # noqa: S311 - jitter, not a secret
