"""A one-line progress display for ``apply`` on a terminal.

``[12/40] running 3 · ok 9 · failed 0 · /projects/pay/environments/prod/assets/api deploy/roll``
is redrawn in place (carriage return, clear to end of line) on standard error as steps start and
finish, and cleared when the run ends, so what is left on the screen is the summary alone.

Only on a terminal a person watches: never in CI (``CI``/``GITHUB_ACTIONS``), never on a pipe or
a file, never on a ``dumb`` terminal, where carriage returns would litter the log. Steps finish
on the executor's worker threads, so every method takes a lock; redraws are throttled, and an
update that arrives inside the throttle window is drawn by a timer at its end, so the line never
stays stale while a long step runs.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import TextIO

OK = ("success",)
FAILED = ("error", "cancelled", "aborted")
INTERVAL = 0.1  # seconds between redraws at most
_CLEAR = "\r\x1b[K"  # back to column 0, erase to the end of the line


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


class Progress:
    """Counts of planned, running, succeeded and failed steps, drawn as one status line."""

    def __init__(self, stream: TextIO, total: int = 0, interval: float = INTERVAL) -> None:
        self._stream = stream
        self._interval = interval
        self._lock = threading.Lock()
        self._total = total
        self._running: set[tuple[str, str]] = set()
        self._ok = 0
        self._failed = 0
        self._skipped = 0  # skipped, or any status neither ok nor failed
        self._last = ""
        self._drawn_at = float("-inf")
        self._timer: threading.Timer | None = None
        self._closed = False
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        self._sep = " · " if encoding.startswith("utf") else " | "

    @classmethod
    def for_stream(cls, stream: TextIO, environ: Mapping[str, str]) -> Progress | None:
        """A display on ``stream`` when a person is watching it, else None."""
        if _flag(environ, "GITHUB_ACTIONS") or _flag(environ, "CI"):
            return None
        if environ.get("TERM", "") == "dumb":
            return None
        try:
            if not stream.isatty():
                return None
        except (AttributeError, ValueError):  # no isatty, or a closed stream
            return None
        return cls(stream)

    # --- events (any thread) ------------------------------------------------------------------

    def expect(self, steps: int) -> None:
        """Add ``steps`` to the total (the steps of the DAG about to run)."""
        with self._lock:
            self._total += steps
            self._changed()

    def started(self, node: str, step: str) -> None:
        with self._lock:
            self._running.add((node, step))
            self._last = f"{node} {step}"
            self._changed()

    def finished(self, node: str, step: str, status: str) -> None:
        with self._lock:
            self._running.discard((node, step))
            if status in OK:
                self._ok += 1
            elif status in FAILED:
                self._failed += 1
            else:
                self._skipped += 1
            self._last = f"{node} {step}"
            self._changed()

    def close(self) -> None:
        """Erase the line; later events draw nothing. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._write(_CLEAR)

    def line(self) -> str:
        """The status line as it would be drawn now, without control characters."""
        with self._lock:
            return self._line()

    # --- drawing (under the lock) -------------------------------------------------------------

    def _line(self) -> str:
        done = self._ok + self._failed + self._skipped
        count = f"[{done}/{self._total}]" if self._total else f"[{done}]"
        parts = [
            f"{count} running {len(self._running)}",
            f"ok {self._ok}",
            f"failed {self._failed}",
        ]
        if self._skipped:
            parts.append(f"skipped {self._skipped}")
        if self._last:
            parts.append(self._last)
        return self._sep.join(parts)

    def _changed(self) -> None:
        if self._closed:
            return
        wait = self._drawn_at + self._interval - time.monotonic()
        if wait <= 0:
            self._draw()
        elif self._timer is None:
            self._timer = threading.Timer(wait, self._on_timer)
            self._timer.daemon = True
            self._timer.start()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            if not self._closed:
                self._draw()

    def _draw(self) -> None:
        self._drawn_at = time.monotonic()
        self._write(_CLEAR + self._line()[: self._width() - 1])

    def _width(self) -> int:
        try:
            return os.get_terminal_size(self._stream.fileno()).columns or 80
        except (AttributeError, OSError, ValueError):
            return 80

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # the terminal went away: the run goes on regardless
            self._closed = True
