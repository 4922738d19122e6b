"""Leases on nodes (SPEC 4): ``leases/<node>.yaml`` on the state branch says who runs a node
and until when.

A lease file is ``{node, holder, change, acquired, expires}`` (times ISO 8601, UTC); ``holder``
is an opaque string naming one runner process (``<hostname>:<pid>:<random>``). Every operation is
one ``StateStore.update``, a compare-and-swap of the branch tip, so two processes sharing a
repository never both take a lease. With a remote, an operation counts only once it has been
pushed as a fast-forward, and what it did is read back from the pushed tip: two machines
coordinate through the remote, and a runner whose acquisition lost the push race sees the
winner's lease instead of its own.

A lease past ``expires`` may be taken by anyone; the one taking it gets the expired lease back
(``Lease.took_over``) so it can mark that holder's change ``aborted``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from runner.errors import Blocked, RunnerError
from runner.state.store import PUSH_ATTEMPTS, Mutation, StateStore, StateView

LEASES = "leases"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lease:
    node: str
    holder: str
    change: str
    acquired: datetime
    expires: datetime
    # On a lease just taken: the expired lease of another holder it replaced. Not stored.
    took_over: Lease | None = field(default=None, compare=False)

    @property
    def path(self) -> str:
        return lease_path(self.node)

    def expired(self, now: datetime) -> bool:
        return now >= self.expires


class LeaseLost(Blocked):
    """A lease this process held is not its own any more (it expired and was taken over, or it
    was force-unlocked)."""

    def __init__(self, lease: Lease, now_held_by: Lease | None) -> None:
        by = f"held by {now_held_by.holder}" if now_held_by else "released"
        super().__init__(f"lease on {lease.node} lost by {lease.holder}: now {by}")
        self.lease = lease
        self.now_held_by = now_held_by


class MalformedLease(RunnerError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: not a lease ({reason}); remove it with `runner unlock --force`")
        self.path = path


def lease_path(node: str) -> str:
    name = node.strip("/")
    if not name:
        raise RunnerError(f"{node!r}: no lease can be taken on the root")
    return f"{LEASES}/{name}.yaml"


def lease_to_yaml(lease: Lease) -> bytes:
    doc = {
        "node": lease.node,
        "holder": lease.holder,
        "change": lease.change,
        "acquired": _iso(lease.acquired),
        "expires": _iso(lease.expires),
    }
    text = yaml.dump(
        doc, Dumper=yaml.CSafeDumper, sort_keys=True, default_flow_style=False, width=1000
    )
    return text.encode("utf-8")


def lease_from_yaml(data: bytes, path: str) -> Lease:
    try:
        doc = yaml.load(data, Loader=yaml.CSafeLoader)
    except yaml.YAMLError as exc:
        raise MalformedLease(path, "invalid YAML") from exc
    if not isinstance(doc, dict):
        raise MalformedLease(path, "not a mapping")
    try:
        return Lease(
            node=_text(doc, "node"),
            holder=_text(doc, "holder"),
            change=_text(doc, "change"),
            acquired=_time(doc["acquired"]),
            expires=_time(doc["expires"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedLease(path, f"bad or missing {exc}") from exc


def read_lease(store: StateStore, node: str) -> Lease | None:
    return _lease_in(store.view(), lease_path(node))


def try_acquire(
    store: StateStore,
    node: str,
    holder: str,
    change: str,
    ttl: float,
    now: datetime | None = None,
) -> tuple[Lease | None, Lease | None]:
    """Take the lease on ``node`` when it is free, expired, or already ``holder``'s:
    ``(ours, None)``; else ``(None, the other holder's lease)``. ``ours.took_over`` is the
    expired lease of another holder this one replaced."""
    moment = _truncate(now or datetime.now(UTC))
    path = lease_path(node)
    taken: list[Lease] = []  # what the latest run of ``mutate`` wrote; it may run again

    def mutate(view: StateView) -> dict[str, bytes | None]:
        taken.clear()
        current = _lease_in(view, path)
        if current is not None and current.holder != holder and not current.expired(moment):
            return {}
        again = current is not None and current.holder == holder and current.change == change
        ours = Lease(
            node=node,
            holder=holder,
            change=change,
            acquired=current.acquired if again and current is not None else moment,
            expires=moment + timedelta(seconds=ttl),
            took_over=current if current is not None and current.holder != holder else None,
        )
        taken.append(ours)
        return {path: lease_to_yaml(ours)}

    for _ in range(PUSH_ATTEMPTS):
        found = _settled(store, mutate, f"lease {node}: taken by {holder} for {change}", path)
        if found is not None and taken and found == taken[0]:
            return taken[0], None
        if found is not None and found.holder != holder and not found.expired(moment):
            return None, found
    raise Blocked(f"lease on {node}: the state branch kept changing under {holder}")


def renew(store: StateStore, lease: Lease, ttl: float, now: datetime | None = None) -> Lease:
    """``lease`` with a new expiry, if it is still ours; else ``LeaseLost``."""
    expires = _truncate(now or datetime.now(UTC)) + timedelta(seconds=ttl)

    def mutate(view: StateView) -> dict[str, bytes | None]:
        current = _lease_in(view, lease.path)
        if current is None or current.holder != lease.holder:
            return {}
        return {lease.path: lease_to_yaml(replace(current, expires=expires))}

    found = _settled(store, mutate, f"lease {lease.node}: renewed by {lease.holder}", lease.path)
    if found is None or found.holder != lease.holder or found.expires != expires:
        raise LeaseLost(lease, found)
    return found


def release(store: StateStore, lease: Lease) -> None:
    """Give ``lease`` back, if it is still ours (else leave whoever holds it alone)."""

    def mutate(view: StateView) -> dict[str, bytes | None]:
        current = _lease_in(view, lease.path)
        if current is None or current.holder != lease.holder:
            return {}
        return {lease.path: None}

    _settled(store, mutate, f"lease {lease.node}: released by {lease.holder}", lease.path)


def force_unlock(store: StateStore, node: str) -> Lease | None:
    """Remove the lease on ``node``, whoever holds it; the lease removed, if there was one (a
    malformed lease file is removed too, and None returned)."""
    path = lease_path(node)
    removed: list[Lease] = []

    def mutate(view: StateView) -> dict[str, bytes | None]:
        removed.clear()
        data = view.read(path)
        if data is None:
            return {}
        with contextlib.suppress(MalformedLease):
            removed.append(lease_from_yaml(data, path))
        return {path: None}

    _settled(store, mutate, f"lease {node}: force-unlocked", path)
    return removed[0] if removed else None


def _settled(store: StateStore, mutate: Mutation, message: str, path: str) -> Lease | None:
    """Run one update (pushed, with a remote) and read the lease back from where it landed."""
    store.sync()
    store.update(mutate, message)
    store.push()
    return _lease_in(store.view(), path)


def _lease_in(view: StateView, path: str) -> Lease | None:
    data = view.read(path)
    return None if data is None else lease_from_yaml(data, path)


def _truncate(moment: datetime) -> datetime:
    """``moment`` in UTC to the millisecond, as a lease file keeps it."""
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _time(value: object) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value)
    else:
        raise TypeError(f"{value!r} is not a time")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _truncate(moment)


def _text(doc: dict[Any, Any], key: str) -> str:
    value = doc[key]
    if not isinstance(value, str) or not value:
        raise ValueError(key)
    return value


# --- many nodes in one commit ----------------------------------------------------------------
# An apply takes, renews and gives back the leases of all its nodes together: one state commit
# (and one push) per operation instead of one per node.


def try_acquire_many(
    store: StateStore,
    changes: dict[str, str],
    holder: str,
    ttl: float,
    now: datetime | None = None,
) -> tuple[list[Lease], Lease | None]:
    """Take the leases of all ``changes`` (node → change id) in one update, or none of them
    when one is held by a live runner: ``(taken, a lease that blocks)``. Taken leases carry
    ``took_over`` (the expired lease of a runner that died)."""
    moment = _truncate(now or datetime.now(UTC))
    expires = moment + timedelta(seconds=ttl)
    taken: list[Lease] = []

    def mutate(view: StateView) -> dict[str, bytes | None]:
        taken.clear()
        out: dict[str, bytes | None] = {}
        for node, change in sorted(changes.items()):
            path = lease_path(node)
            current = _lease_in(view, path)
            if current is not None and current.holder != holder and not current.expired(moment):
                taken.clear()  # all or nothing: two runners never each hold half of a plan
                return {}
            again = current is not None and current.holder == holder and current.change == change
            ours = Lease(
                node=node,
                holder=holder,
                change=change,
                acquired=current.acquired if again and current is not None else moment,
                expires=expires,
                took_over=current if current is not None and current.holder != holder else None,
            )
            taken.append(ours)
            out[path] = lease_to_yaml(ours)
        return out

    store.sync()
    store.update(mutate, f"leases: {len(changes)} node(s) for {holder}")
    store.push()
    view = store.view()
    won: list[Lease] = []
    blocking: Lease | None = None
    for lease in taken:
        landed = _lease_in(view, lease.path)
        if landed is not None and landed == lease:
            won.append(lease)
    won_nodes = {lease.node for lease in won}
    for node in sorted(changes):
        if node not in won_nodes:
            blocking = blocking or _lease_in(view, lease_path(node))
    return won, blocking


def renew_many(
    store: StateStore, held: list[Lease], ttl: float, now: datetime | None = None
) -> list[Lease]:
    """New expiries for every lease still ours, in one update; ``LeaseLost`` if one is not."""
    expires = _truncate(now or datetime.now(UTC)) + timedelta(seconds=ttl)

    def mutate(view: StateView) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = {}
        for lease in held:
            current = _lease_in(view, lease.path)
            if current is not None and current.holder == lease.holder:
                out[lease.path] = lease_to_yaml(replace(current, expires=expires))
        return out

    store.sync()
    store.update(mutate, f"leases: {len(held)} renewed")
    store.push()
    view = store.view()
    renewed = []
    for lease in held:
        found = _lease_in(view, lease.path)
        if found is None or found.holder != lease.holder or found.expires != expires:
            raise LeaseLost(lease, found)
        renewed.append(found)
    return renewed


def release_many(store: StateStore, held: list[Lease]) -> None:
    """Give back every lease still ours, in one update."""
    if not held:
        return

    def mutate(view: StateView) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = {}
        for lease in held:
            current = _lease_in(view, lease.path)
            if current is not None and current.holder == lease.holder:
                out[lease.path] = None
        return out

    store.sync()
    store.update(mutate, f"leases: {len(held)} released")
    store.push()


class Holding:
    """Leases one process holds: taken all or nothing (waiting up to a timeout), renewed in the
    background until released. Losing one (``runner unlock --force``, or an expiry another
    runner took over) sets ``cancel``, so the work under it stops."""

    def __init__(
        self,
        store: StateStore,
        holder: str,
        ttl: float,
        renew_every: float,
        cancel: threading.Event,
        name: str = "lease-renewer",
    ) -> None:
        self.store = store
        self.holder = holder
        self.ttl = ttl
        self.renew_every = renew_every
        self.cancel = cancel
        self.name = name
        self.leases: list[Lease] = []
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def take(self, wanted: Mapping[str, str], timeout: float) -> tuple[list[Lease], Lease | None]:
        """Every node of ``wanted`` (node → change id), or none: the leases taken (each with
        ``took_over`` when it replaced an expired one), or ``[]`` and the lease that blocked
        when ``timeout`` seconds passed (or ``cancel`` was set) first."""
        deadline = time.monotonic() + timeout
        while True:
            taken, blocked = try_acquire_many(self.store, dict(wanted), self.holder, self.ttl)
            if taken or not wanted:
                self.leases = taken
                self._stop.clear()
                self._renewer = threading.Thread(target=self._renew, name=self.name, daemon=True)
                self._renewer.start()
                return taken, None
            if time.monotonic() >= deadline or self.cancel.is_set():
                return [], blocked
            self.cancel.wait(min(1.0, max(0.05, deadline - time.monotonic())))

    def _renew(self) -> None:
        while not self._stop.wait(self.renew_every):
            try:
                self.leases = renew_many(self.store, self.leases, self.ttl)
            except RunnerError as exc:
                log.error("stopping: %s", exc)
                self.cancel.set()
                return

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        release_many(self.store, self.leases)
        self.leases = []
