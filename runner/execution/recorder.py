"""Keeping the state branch up to date while steps run.

Change records are committed before the first step starts; afterwards step updates and logs are
batched and committed at most ``interval`` seconds behind (and once more at the end), each
commit a compare-and-swap on the state branch.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from runner.secrets import Masker, MaskingStream
from runner.state.records import ChangeRecord, change_to_yaml
from runner.state.store import StateStore, StateView


class Recorder:
    def __init__(self, store: StateStore, masker: Masker, interval: float = 1.5) -> None:
        self.store = store
        self.masker = masker
        self.interval = interval
        self._records: dict[str, ChangeRecord] = {}
        self._dirty: set[str] = set()
        self._logs: dict[str, bytearray] = {}  # path → masked log text appended since start
        self._dirty_logs: set[str] = set()
        self._extra: dict[str, bytes | None] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- what changed -------------------------------------------------------------------------

    def put(self, record: ChangeRecord) -> None:
        with self._lock:
            self._records[record.id] = record
            self._dirty.add(record.id)

    def get(self, change_id: str) -> ChangeRecord:
        with self._lock:
            return self._records[change_id]

    def put_file(self, path: str, data: bytes | None) -> None:
        with self._lock:
            self._extra[path] = data

    def log_stream(self, path: str) -> LogWriter:
        return LogWriter(self, path, self.masker.stream())

    def _append_log(self, path: str, text: str) -> None:
        if not text:
            return
        with self._lock:
            self._logs.setdefault(path, bytearray()).extend(text.encode("utf-8"))
            self._dirty_logs.add(path)

    # --- committing ---------------------------------------------------------------------------

    def flush(self, message: str = "runner: progress") -> None:
        with self._lock:  # take what changed; serialise outside the lock (steps keep running)
            records = [self._records[i] for i in self._dirty]
            logs = {p: bytes(self._logs[p]) for p in self._dirty_logs}
            extra = dict(self._extra)
            self._dirty.clear()
            self._dirty_logs.clear()
            self._extra.clear()
        changes: dict[str, bytes | None] = {r.path: change_to_yaml(r) for r in records}
        changes.update(logs)
        changes.update(extra)
        if changes:

            def mutate(view: StateView) -> Mapping[str, bytes | None]:
                return changes

            try:
                self.store.update(mutate, message)
            except Exception:
                with self._lock:  # try them again at the next flush; newer writes still win
                    self._dirty.update(r.id for r in records)
                    self._dirty_logs.update(logs)
                    for path, data in extra.items():
                        self._extra.setdefault(path, data)
                raise

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="recorder", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def stop(self, message: str) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.flush(message)


class LogWriter:
    """A step's output, masked as it streams, appended to its log on the state branch."""

    def __init__(self, recorder: Recorder, path: str, stream: MaskingStream) -> None:
        self.recorder = recorder
        self.path = path
        self.stream = stream

    def write(self, data: bytes) -> None:
        self.recorder._append_log(self.path, self.stream.feed(data))

    def note(self, text: str) -> None:
        self.recorder._append_log(self.path, self.recorder.masker.mask(text))

    def close(self) -> None:
        self.recorder._append_log(self.path, self.stream.close())
