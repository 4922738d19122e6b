"""Run a step's shell command: the only module of the package that starts processes.

A command runs as ``/bin/sh -c COMMAND`` in a new session (so in its own process group), with
stdin from ``/dev/null``, stdout and stderr merged into one pipe, and exactly the environment it
is given. Output is handed to a callback in chunks as it arrives. On a timeout or a cancel the
whole group gets SIGTERM, then SIGKILL after ``kill_grace`` seconds. A step's process group never
outlives the step: once the shell has exited, whatever is left of its group is killed (after a
short grace to drain the pipe), so a background ``sleep 100 &`` cannot hold the run open.

One thread per call and no helper threads or processes: the loop polls the pipe and, on Linux,
a pidfd of the child, so a short command costs little more than ``subprocess.run``.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["ProcessResult", "ProcessRunner", "SubprocessRunner", "kill_group"]

CHUNK = 64 * 1024
CANCEL_POLL = 0.05  # seconds between looks at the cancel event while a command runs


@dataclass(frozen=True)
class ProcessResult:
    """How a command ended. ``exit_code`` is None when we killed it (timeout or cancel), and
    minus the signal number when it died of a signal we did not send."""

    exit_code: int | None
    timed_out: bool
    cancelled: bool
    duration: float  # seconds, from start to reaped

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class ProcessRunner(Protocol):
    """What the executor needs to run one command (tests use ``tests.support.fakerunner``)."""

    def run(
        self,
        command: str,
        *,
        cwd: Path,
        env: Mapping[str, str],
        timeout: float | None,
        output: Callable[[bytes], None],
        cancel: threading.Event,
    ) -> ProcessResult: ...


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Send ``sig`` to process group ``pgid``; False when the group is already gone."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


class SubprocessRunner:
    """The real :class:`ProcessRunner`. Safe to call from several threads at once."""

    def __init__(self, kill_grace: float = 5.0, *, drain_grace: float = 0.2) -> None:
        self.kill_grace = kill_grace
        self.drain_grace = drain_grace  # how long to read after the shell exits, pipe still open

    def run(
        self,
        command: str,
        *,
        cwd: Path,
        env: Mapping[str, str],
        timeout: float | None,
        output: Callable[[bytes], None],
        cancel: threading.Event,
    ) -> ProcessResult:
        """Run ``command`` to the end; a cancel already set means it never starts."""
        start = time.monotonic()
        if cancel.is_set():
            return ProcessResult(None, timed_out=False, cancelled=True, duration=0.0)
        proc = subprocess.Popen(  # noqa: S602 - running the step's shell command is the point
            command,
            shell=True,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child = _Child(proc, output)
        try:
            deadline = None if timeout is None else start + timeout
            ended = child.wait_exit(deadline, cancel)
            timed_out = cancelled = False
            if not ended:
                cancelled = cancel.is_set()
                timed_out = not cancelled
                kill_group(proc.pid, signal.SIGTERM)
                child.wait_exit(time.monotonic() + self.kill_grace, None)
            if child.exited:
                child.drain(time.monotonic() + self.drain_grace)
            # The shell is reaped only after this, so its pid still names the group.
            kill_group(proc.pid, signal.SIGKILL)
            child.drain(time.monotonic() + max(self.drain_grace, 1.0))
            returncode = proc.wait()
        finally:
            child.close()
        return ProcessResult(
            None if (timed_out or cancelled) else returncode,
            timed_out=timed_out,
            cancelled=cancelled,
            duration=time.monotonic() - start,
        )


class _Child:
    """A started shell: its output pipe, and a way to learn it exited without reaping it."""

    def __init__(self, proc: subprocess.Popen[bytes], output: Callable[[bytes], None]) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.output = output
        self.pipe = proc.stdout
        self.fd = proc.stdout.fileno()
        self.exited = False
        self.eof = False
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLIN)
        self.pidfd: int | None = None
        if hasattr(os, "pidfd_open"):
            try:
                self.pidfd = os.pidfd_open(proc.pid)
            except OSError:  # an old kernel or a seccomp filter: fall back to waitid polling
                self.pidfd = None
            else:
                self.poller.register(self.pidfd, select.POLLIN)
        self._backoff = 0.0005

    def wait_exit(self, deadline: float | None, cancel: threading.Event | None) -> bool:
        """Read output until the shell exits (True), the deadline passes or cancel is set."""
        while not self.exited:
            if cancel is not None and cancel.is_set():
                return False
            wait = None if cancel is None else CANCEL_POLL
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                wait = left if wait is None else min(wait, left)
            self._pump(wait)
        return True

    def drain(self, deadline: float) -> None:
        """Read output until end of file or the deadline."""
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._pump(left)

    def _pump(self, wait: float | None) -> None:
        """Wait up to ``wait`` seconds (None: no limit) for output or the exit, and take it."""
        if self.pidfd is None and not self.exited:
            # No pidfd: nothing wakes us when the shell exits, so look every little while.
            cap = CANCEL_POLL
            if self.eof:
                cap, self._backoff = self._backoff, min(self._backoff * 2, CANCEL_POLL)
            wait = cap if wait is None else min(wait, cap)
        ms = -1 if wait is None else max(0, int(wait * 1000 + 0.999))
        for fd, _event in self.poller.poll(ms):
            if fd == self.fd:
                self._read()
            elif fd == self.pidfd:
                self.exited = True
                self.poller.unregister(fd)
        if self.pidfd is None and not self.exited:
            self.exited = _has_exited(self.proc.pid)

    def _read(self) -> None:
        data = os.read(self.fd, CHUNK)
        if data:
            self.output(data)
        else:
            self.eof = True
            self.poller.unregister(self.fd)

    def close(self) -> None:
        """Kill and reap whatever is left (after an exception too) and close our descriptors."""
        if self.proc.returncode is None:
            kill_group(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.pipe.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


def _has_exited(pid: int) -> bool:
    """True when ``pid`` has exited; it stays a zombie (not reaped) so its group id stays ours."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None
