"""The terminal progress line, written to a real pseudo-terminal and read back."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import termios
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest

from runner.render.progress import Progress

CLEAR = "\r\x1b[K"
END = "#END#"


class Terminal:
    """A pseudo-terminal: ``stream`` is its program side, everything written there is read
    back from the other side by a thread (so a full buffer never blocks the writer)."""

    def __init__(self, columns: int = 200) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        self.stream: TextIO = open(slave, "w", encoding="utf-8")  # noqa: SIM115
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.master], [], [], 30)
                if not ready:
                    return
                chunk = os.read(self.master, 65536)
            except OSError:  # the program side closed (EIO)
                return
            if not chunk:
                return
            self._chunks.append(chunk)
            if END.encode() in chunk or END.encode() in b"".join(self._chunks[-2:]):
                return

    def text(self) -> str:
        """Everything written so far: ends the stream with a marker and reads up to it."""
        self.stream.write(END)
        self.stream.flush()
        self._reader.join(30)
        text = b"".join(self._chunks).decode("utf-8")
        assert text.endswith(END)
        return text.removesuffix(END)

    def seen(self) -> str:
        return b"".join(self._chunks).decode("utf-8", "replace")

    def close(self) -> None:
        self.stream.close()
        self._reader.join(30)
        os.close(self.master)


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal()
    yield term
    term.close()


def test_each_event_redraws_the_line_in_place_and_close_clears_it(terminal: Terminal) -> None:
    progress = Progress(terminal.stream, interval=0)
    progress.expect(2)
    progress.started("/projects/pay/environments/dev/assets/api", "deploy/build")
    progress.finished("/projects/pay/environments/dev/assets/api", "deploy/build", "success")
    progress.started("/projects/pay/environments/dev/assets/api", "deploy/roll")
    progress.finished("/projects/pay/environments/dev/assets/api", "deploy/roll", "error")
    progress.close()
    progress.started("/late", "step")  # after close: nothing drawn
    api = "/projects/pay/environments/dev/assets/api"
    assert terminal.text() == (
        f"{CLEAR}[0/2] running 0 · ok 0 · failed 0"
        f"{CLEAR}[0/2] running 1 · ok 0 · failed 0 · {api} deploy/build"
        f"{CLEAR}[1/2] running 0 · ok 1 · failed 0 · {api} deploy/build"
        f"{CLEAR}[1/2] running 1 · ok 1 · failed 0 · {api} deploy/roll"
        f"{CLEAR}[2/2] running 0 · ok 1 · failed 1 · {api} deploy/roll"
        f"{CLEAR}"
    )


def test_skipped_steps_are_counted_and_a_missing_total_is_left_out(terminal: Terminal) -> None:
    progress = Progress(terminal.stream, interval=0)
    progress.finished("/a", "one", "skipped")
    progress.close()
    progress.close()  # twice: one clear
    assert terminal.text() == f"{CLEAR}[1] running 0 · ok 0 · failed 0 · skipped 1 · /a one{CLEAR}"


def test_the_line_is_cut_to_the_terminal_width() -> None:
    term = Terminal(columns=30)
    try:
        progress = Progress(term.stream, interval=0)
        progress.started("/projects/pay/environments/prod/assets/api", "deploy")
        progress.close()
        assert term.text() == f"{CLEAR}[0] running 1 · ok 0 · failed{CLEAR}"  # 29 of 30 columns
    finally:
        term.close()


def test_updates_inside_the_throttle_window_are_not_drawn_one_by_one(terminal: Terminal) -> None:
    progress = Progress(terminal.stream, interval=3600)
    progress.expect(3)
    for step in ("a", "b", "c"):
        progress.started("/n", step)
    progress.close()
    assert terminal.text() == f"{CLEAR}[0/3] running 0 · ok 0 · failed 0{CLEAR}"


def test_a_throttled_update_is_drawn_when_the_window_ends(terminal: Terminal) -> None:
    progress = Progress(terminal.stream, interval=0.05)
    progress.expect(2)
    progress.started("/n", "a")
    progress.started("/n", "b")
    # No further event: the timer draws the latest state by itself.
    wanted = f"{CLEAR}[0/2] running 2 · ok 0 · failed 0 · /n b"
    pause = threading.Event()
    for _ in range(3000):  # up to 30 s on a very slow machine; usually a few ms
        if wanted in terminal.seen():
            break
        pause.wait(0.01)
    progress.close()
    assert terminal.text().endswith(wanted + CLEAR)


def test_steps_finishing_on_many_threads_are_all_counted(terminal: Terminal) -> None:
    progress = Progress(terminal.stream, interval=0)
    progress.expect(400)

    def worker(n: int) -> None:
        for i in range(50):
            progress.started(f"/node{n}", f"step{i}")
            progress.finished(f"/node{n}", f"step{i}", "success" if i % 10 else "error")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert progress.line().startswith("[400/400] running 0 · ok 360 · failed 40 · /node")
    progress.close()
    drawn = terminal.text().split(CLEAR)
    assert drawn[-1] == ""
    assert drawn[-2].startswith("[400/400] running 0 · ok 360 · failed 40 · /node")
    assert len(drawn) == 1 + 1 + 800 + 1  # before the first, expect, each event, close


# --- when there is a display at all ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "shown"),
    [
        ({"TERM": "xterm-256color"}, True),
        ({}, True),
        ({"TERM": "xterm", "CI": "false"}, True),
        ({"TERM": "xterm", "CI": "true"}, False),
        ({"TERM": "xterm", "CI": "1"}, False),
        ({"TERM": "xterm", "GITHUB_ACTIONS": "true"}, False),
        ({"TERM": "dumb"}, False),
    ],
)
def test_for_stream_on_a_terminal_depends_on_the_environment(
    terminal: Terminal, environ: dict[str, str], shown: bool
) -> None:
    assert (Progress.for_stream(terminal.stream, environ) is not None) is shown


def test_for_stream_never_on_a_pipe_or_a_file(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    with open(write_end, "w") as pipe, open(tmp_path / "log", "w") as file:
        assert Progress.for_stream(pipe, {"TERM": "xterm"}) is None
        assert Progress.for_stream(file, {"TERM": "xterm"}) is None
    os.close(read_end)


def test_a_stream_that_cannot_encode_the_dot_gets_a_bar(tmp_path: Path) -> None:
    with open(tmp_path / "out", "w", encoding="ascii") as stream:
        progress = Progress(stream, interval=0)
        progress.started("/n", "a")
        progress.close()
    written = (tmp_path / "out").read_bytes().decode()
    assert written == f"{CLEAR}[0] running 1 | ok 0 | failed 0 | /n a{CLEAR}"
