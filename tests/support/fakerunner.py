"""A scripted :class:`runner.process.ProcessRunner` for executor tests: no processes at all."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from runner.process import ProcessResult

Script = tuple[int | None, bytes, float]  # (exit code, output, delay in seconds)


class FakeRunner:
    """Answers each command with the script whose key is the longest substring of it.

    ``scripts`` maps a command substring to ``(exit_code, output, delay)``; the output is sent
    at once, then the call takes ``delay`` seconds unless the timeout is shorter (``timed_out``)
    or ``cancel`` is set first (``cancelled``). A command no key matches gets ``default``, or
    raises ``LookupError`` when ``default`` is None. ``calls`` records ``(command, env)`` in the
    order the calls started; it is safe to call from several threads.
    """

    def __init__(
        self,
        scripts: Mapping[str, Script] | None = None,
        *,
        default: Script | None = (0, b"", 0.0),
    ) -> None:
        self.scripts = dict(scripts or {})
        self.default = default
        self.calls: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()

    @property
    def commands(self) -> list[str]:
        with self._lock:
            return [command for command, _env in self.calls]

    def script_for(self, command: str) -> Script:
        keys = [key for key in self.scripts if key in command]
        if keys:
            return self.scripts[max(keys, key=len)]
        if self.default is None:
            raise LookupError(f"FakeRunner has no script for {command!r}")
        return self.default

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
        with self._lock:
            self.calls.append((command, dict(env)))
        exit_code, data, delay = self.script_for(command)
        start = time.monotonic()
        if cancel.is_set():
            return ProcessResult(None, timed_out=False, cancelled=True, duration=0.0)
        if data:
            output(data)
        limit = delay if timeout is None else min(delay, timeout)
        if cancel.wait(limit) if limit > 0 else cancel.is_set():
            return ProcessResult(None, False, True, time.monotonic() - start)
        if timeout is not None and delay > timeout:
            return ProcessResult(None, True, False, time.monotonic() - start)
        return ProcessResult(exit_code, False, False, time.monotonic() - start)
