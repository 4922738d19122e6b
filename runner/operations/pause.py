"""Pausing the repository (SPEC 2.6, Talend's pause context).

Two switches, either of which stops every command that makes changes (apply, run, reconcile,
workflow runs) with exit 4:

* ``paused: {reason: ...}`` in runner.yaml — a change freeze that goes through review like any
  other commit. The message names who paused: the author of the commit that introduced the
  reason, found by walking runner.yaml's first-parent history (its blobs only, nothing parsed
  twice).
* ``paused.yaml`` on the state branch — ``runner pause --reason`` for an emergency, without a pull
  request; ``runner resume-all`` lifts it. Both are recorded as audit events.

Commands that only read (validate, plan, properties, history, lists) are never paused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.errors import Blocked, InvalidArgument, Problem
from runner.gitrepo import GitRepo
from runner.identity import current_user
from runner.loading import build
from runner.loading.documents import ParseCache, read_one
from runner.loading.snapshot import Snapshot, read_settings
from runner.loading.source import OpsRepo
from runner.loading.yamlfile import Mapping as YamlMapping
from runner.loading.yamlfile import YamlError, parse
from runner.model import Settings
from runner.state.events import new_event
from runner.state.records import dump, iso, now, read_yaml
from runner.state.store import StateStore, StateView

PAUSED_FILE = "paused.yaml"
_UNREADABLE = object()  # a runner.yaml that does not parse: never the same reason as another


class Paused(Blocked):
    """The repository is paused: nothing that makes changes may start (exit 4)."""


@dataclass(frozen=True)
class StatePause:
    """``paused.yaml`` on the state branch."""

    reason: str
    by: str | None = None
    time: str | None = None

    def describe(self) -> str:
        return f"{self.reason} (by {self.by or 'unknown'} at {self.time or 'an unknown time'})"


@dataclass(frozen=True)
class PausedBy:
    """The commit that introduced runner.yaml's current ``paused`` reason."""

    commit: str
    author: str
    subject: str

    def __str__(self) -> str:
        return f'paused by {self.author} in {self.commit[:12]} "{self.subject}"'


# --- checking ------------------------------------------------------------------------------------


def ensure_not_paused(ops: OpsRepo, snapshot: Snapshot, store: StateStore | None = None) -> None:
    """Raise Paused when runner.yaml at ``snapshot`` or the state branch pauses the repository.

    Cheap when nothing is paused: a setting already loaded and one file of the state branch.
    A caller whose store has a remote has synced it already; without a store, one is made from
    the snapshot's settings (and not synced)."""
    settings = snapshot.settings
    if is_paused(settings):
        raise Paused(settings_pause_message(ops, settings, snapshot.commit))
    if store is None:
        if ops.git is None:
            return
        store = StateStore.for_settings(ops.git, settings)
    found = read_state_pause(store)
    if found is not None:
        raise Paused(
            f"repository paused on the state branch: {found.reason} (by {found.by or 'unknown'} "
            f"at {found.time or 'an unknown time'}; runner resume-all lifts it)"
        )


def is_paused(settings: Settings) -> bool:
    return settings.paused_reason is not None or settings.paused_pos is not None


def settings_pause_message(ops: OpsRepo, settings: Settings, commit: str | None) -> str:
    """``repository paused: <reason> (runner.yaml:<line>, paused by <author> in <sha> "<subject>")``
    for a runner.yaml read at ``commit`` (None: the working tree)."""
    reason = settings.paused_reason or "(no reason given)"
    line = settings.paused_pos.line if settings.paused_pos is not None else 0
    origin = paused_by(ops, reason, commit)
    who = str(origin) if origin is not None else "paused by a change not committed yet"
    return f"repository paused: {reason} (runner.yaml:{line}, {who})"


def paused_by(ops: OpsRepo, reason: str, commit: str | None) -> PausedBy | None:
    """The oldest commit of the unbroken first-parent run, from ``commit`` (None: HEAD, when the
    working tree's reason is HEAD's) back, whose runner.yaml has this paused ``reason``."""
    git = ops.git
    start = commit or (git.head_commit() if git is not None else None)
    if git is None or start is None:
        return None
    path = f"{ops.prefix}/runner.yaml" if ops.prefix else "runner.yaml"
    reasons: dict[str | None, object] = {}

    def reason_at(sha: str) -> object:
        oid = git.object_ids(sha, (path,))[0]
        if oid not in reasons:
            reasons[oid] = None if oid is None else _paused_reason(git.blob(oid))
        return reasons[oid]

    if reason_at(start) != reason:
        return None
    found = start
    while True:
        parents = git.parents(found)
        if not parents or reason_at(parents[0]) != reason:
            break
        found = parents[0]
    name, _email, _when = git.author(found)
    subject = (git.commit_message(found).strip().splitlines() or [""])[0]
    return PausedBy(found, name, subject)


def _paused_reason(data: bytes) -> object:
    """runner.yaml's ``paused.reason`` (None: not paused), or _UNREADABLE."""
    try:
        doc = parse(data.decode("utf-8"))
    except (YamlError, UnicodeDecodeError):
        return _UNREADABLE
    paused = doc.get("paused") if isinstance(doc, YamlMapping) else None
    if not paused:
        return None
    return paused.get("reason", "(no reason given)") if isinstance(paused, dict) else _UNREADABLE


def read_state_pause(source: StateStore | StateView) -> StatePause | None:
    """``paused.yaml`` of the state branch (its tip, or a view of it), None when not paused."""
    data = source.read(PAUSED_FILE)
    if data is None:
        return None
    doc = read_yaml(data)
    return StatePause(
        str(doc.get("reason") or "(no reason given)"),
        _optional(doc.get("by")),
        _optional(doc.get("time")),
    )


def _optional(value: Any) -> str | None:
    return None if value is None else str(value)


# --- runner pause / runner resume-all ------------------------------------------------------------


@dataclass(frozen=True)
class PauseResult:
    now: StatePause | None  # what the state branch says after the command
    before: StatePause | None  # what it said before
    changed: bool
    pushed_to: str | None  # the remote the state branch was pushed to
    settings_note: str | None  # runner.yaml at HEAD pauses too: the whole message


def pause(
    ops: OpsRepo, reason: str, environ: Mapping[str, str], by: str | None = None
) -> PauseResult:
    """Write ``paused.yaml`` and a ``pause`` event in one state commit (an existing pause gets
    the new reason); the same reason again changes nothing."""
    reason = reason.strip()
    if not reason:
        raise InvalidArgument("--reason: a pause needs a reason")
    settings = read_settings(ops)
    git = ops.require_git()
    store = _synced(git, settings)
    user = current_user(environ, git, by)
    before = read_state_pause(store)
    wanted = StatePause(reason, user, iso(now()))
    message = (
        f"pause reason changed to: {reason} (was: {before.reason})"
        if before is not None
        else f"repository paused: {reason}"
    )
    event_path, event = new_event("pause", message, by=user, reason=reason)
    body = dump({"reason": wanted.reason, "by": wanted.by, "time": wanted.time})

    def mutate(view: StateView) -> dict[str, bytes | None]:
        current = read_state_pause(view)
        if current is not None and current.reason == reason:
            return {}
        return {PAUSED_FILE: body, event_path: event}

    old_tip = store.tip()
    new_tip = store.update(mutate, f"runner: pause: {reason}")
    changed = new_tip != old_tip
    pushed = _push(store, settings) if changed else None
    return PauseResult(
        read_state_pause(store), before, changed, pushed, head_pause_message(ops, git)
    )


def resume_all(ops: OpsRepo, environ: Mapping[str, str], by: str | None = None) -> PauseResult:
    """Remove ``paused.yaml`` with a ``resume`` event in one state commit. A pause written in
    runner.yaml stays: only a commit removing it lifts it (``settings_note`` says so)."""
    settings = read_settings(ops)
    git = ops.require_git()
    store = _synced(git, settings)
    user = current_user(environ, git, by)
    before = read_state_pause(store)
    lifted = f" (was: {before.reason})" if before is not None else ""
    event_path, event = new_event("resume", f"pause lifted{lifted}", by=user)

    def mutate(view: StateView) -> dict[str, bytes | None]:
        if not view.exists(PAUSED_FILE):
            return {}
        return {PAUSED_FILE: None, event_path: event}

    old_tip = store.tip()
    new_tip = store.update(mutate, "runner: resume-all")
    changed = new_tip != old_tip
    pushed = _push(store, settings) if changed else None
    return PauseResult(
        read_state_pause(store),
        before if changed else None,
        changed,
        pushed,
        head_pause_message(ops, git),
    )


def _synced(git: GitRepo, settings: Settings) -> StateStore:
    store = StateStore.for_settings(git, settings)
    if settings.state_remote:
        store.sync()
    return store


def _push(store: StateStore, settings: Settings) -> str | None:
    if not settings.state_remote:
        return None
    store.push()
    return settings.state_remote


def head_pause_message(ops: OpsRepo, git: GitRepo) -> str | None:
    """The pause message of runner.yaml at HEAD, None when it does not pause."""
    head = git.head_commit()
    if head is None:
        return None
    settings = settings_at(ops, git, head)
    return settings_pause_message(ops, settings, head) if is_paused(settings) else None


def settings_at(ops: OpsRepo, git: GitRepo, commit: str) -> Settings:
    """runner.yaml at ``commit`` alone (defaults when it is missing or does not load)."""
    path = f"{ops.prefix}/runner.yaml" if ops.prefix else "runner.yaml"
    found = git.read_path(commit, path)
    if found is None:
        return Settings()
    oid, data = found
    problems: list[Problem] = []
    doc = read_one(
        "runner.yaml",
        oid,
        "runner",
        lambda: data,
        ParseCache(None),
        Settings().max_file_bytes,
        problems,
    )
    if problems or doc is None or not doc.ok:
        return Settings()
    return build.settings("runner.yaml", doc.value)
