"""Running a step's command (runner.process) with real /bin/sh processes, and the FakeRunner."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from runner.process import ProcessResult, ProcessRunner, SubprocessRunner, kill_group
from tests.support.fakerunner import FakeRunner

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


class Recorder:
    """An output callback that keeps every chunk."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def __call__(self, data: bytes) -> None:
        self.chunks.append(data)

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def text(self) -> str:
        return self.data.decode()


def run(
    command: str,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = 10.0,
    kill_grace: float = 1.0,
    out: Recorder | None = None,
    cancel: threading.Event | None = None,
) -> tuple[ProcessResult, Recorder]:
    out = out if out is not None else Recorder()
    runner: ProcessRunner = SubprocessRunner(kill_grace=kill_grace)
    result = runner.run(
        command,
        cwd=cwd or Path.cwd(),
        env=ENV if env is None else env,
        timeout=timeout,
        output=out,
        cancel=cancel or threading.Event(),
    )
    return result, out


def alive(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie waiting for its reaper does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def gone(pid: int, within: float = 2.0) -> bool:
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_stdout_and_stderr_are_merged_in_order() -> None:
    result, out = run("echo out; echo err >&2; printf tail; exit 3")
    assert out.data == b"out\nerr\ntail"
    assert result.exit_code == 3
    assert not result.timed_out
    assert not result.cancelled
    assert 0 < result.duration < 5


@pytest.mark.parametrize("code", [0, 1, 2, 127, 255])
def test_exit_code(code: int) -> None:
    result, _ = run(f"exit {code}")
    assert result == ProcessResult(code, False, False, result.duration)
    assert result.ok is (code == 0)


def test_unknown_command_is_exit_127_with_the_shell_message() -> None:
    result, out = run("no-such-command-xyz")
    assert result.exit_code == 127
    assert "no-such-command-xyz" in out.text


def test_killed_by_a_signal_we_did_not_send_is_minus_the_signal() -> None:
    result, _ = run("kill -9 $$")
    assert result.exit_code == -9
    assert not result.timed_out


def test_output_is_streamed_while_the_command_runs(tmp_path: Path) -> None:
    """The command waits for a file the callback creates on seeing the first line."""
    flag = tmp_path / "flag"
    out = Recorder()

    def on_output(data: bytes) -> None:
        out(data)
        if b"first" in data:
            flag.touch()

    runner = SubprocessRunner()
    result = runner.run(
        f"echo first; while [ ! -e {flag} ]; do sleep 0.01; done; echo second",
        cwd=tmp_path,
        env=ENV,
        timeout=5,
        output=on_output,
        cancel=threading.Event(),
    )
    assert result.exit_code == 0
    assert out.chunks == [b"first\n", b"second\n"]


def test_environment_is_exactly_the_one_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_TEST_LEAK", "must not be seen")
    result, out = run("env", env={"ONLY": "x y", "PATH": ENV["PATH"]})
    assert result.exit_code == 0
    seen = dict(line.split("=", 1) for line in out.text.splitlines())
    assert seen.pop("ONLY") == "x y"
    assert seen.pop("PATH") == ENV["PATH"]
    assert set(seen) <= {"PWD"}  # dash exports the working directory it starts in


def test_empty_environment(tmp_path: Path) -> None:
    result, out = run("/usr/bin/env", env={}, cwd=tmp_path)
    assert out.text == f"PWD={tmp_path}\n"  # only what dash itself exports
    assert result.exit_code == 0


def test_working_directory(tmp_path: Path) -> None:
    result, out = run("pwd -P", cwd=tmp_path)
    assert out.text == f"{tmp_path.resolve()}\n"
    assert result.exit_code == 0


def test_stdin_is_dev_null() -> None:
    result, out = run("cat; echo done")
    assert out.text == "done\n"
    assert result.exit_code == 0


def test_missing_working_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        run("true", cwd=tmp_path / "missing")


def test_large_output_arrives_whole_and_in_order() -> None:
    result, out = run("seq 1 600000")  # about 4.5 MB
    assert result.exit_code == 0
    assert out.data == b"".join(b"%d\n" % n for n in range(1, 600001))


def test_timeout_kills_the_whole_group_including_a_background_grandchild() -> None:
    result, out = run("sleep 100 & echo $!; wait", timeout=0.3, kill_grace=2)
    assert result.timed_out
    assert not result.cancelled
    assert result.exit_code is None
    assert 0.3 <= result.duration < 2
    assert gone(int(out.text))


def test_a_grandchild_holding_the_pipe_does_not_hold_the_step() -> None:
    """The shell exits at once; its background child keeps stdout open and is killed."""
    result, out = run("sleep 100 & echo $!; exit 5", timeout=None)
    assert result.exit_code == 5
    assert not result.timed_out
    assert result.duration < 2
    assert gone(int(out.text))


def test_leftover_processes_of_the_group_are_killed_when_the_step_ends() -> None:
    result, out = run("sleep 100 >/dev/null 2>&1 & echo $!")
    assert result.exit_code == 0
    assert result.duration < 1
    assert gone(int(out.text))


def test_a_command_that_closes_its_output_is_still_waited_for() -> None:
    result, out = run("echo bye; exec >&- 2>&-; sleep 0.3; exit 4")
    assert out.text == "bye\n"
    assert result.exit_code == 4
    assert result.duration >= 0.3


def test_a_command_that_closes_its_output_still_times_out() -> None:
    result, _ = run("exec >&- 2>&-; sleep 100", timeout=0.3)
    assert result.timed_out
    assert result.exit_code is None
    assert result.duration < 2


def test_a_group_that_ignores_sigterm_gets_sigkill_after_the_grace() -> None:
    result, out = run("trap '' TERM; sleep 100 & echo $!; wait", timeout=0.2, kill_grace=0.3)
    assert result.timed_out
    assert result.exit_code is None
    assert 0.5 <= result.duration < 3
    assert gone(int(out.text))


def test_cancel_stops_the_command() -> None:
    cancel = threading.Event()
    out = Recorder()

    def on_output(data: bytes) -> None:
        out(data)
        cancel.set()

    runner = SubprocessRunner(kill_grace=1)
    result = runner.run(
        "echo $$; sleep 100 & wait",
        cwd=Path.cwd(),
        env=ENV,
        timeout=None,
        output=on_output,
        cancel=cancel,
    )
    assert result.cancelled
    assert not result.timed_out
    assert result.exit_code is None
    assert result.duration < 2
    assert gone(int(out.text))


def test_cancel_set_before_the_start_runs_nothing(tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    result, out = run("touch ran", cwd=tmp_path, cancel=cancel)
    assert result == ProcessResult(None, timed_out=False, cancelled=True, duration=0.0)
    assert not (tmp_path / "ran").exists()
    assert out.chunks == []


def test_an_output_callback_that_raises_kills_the_command() -> None:
    pids: list[int] = []

    def on_output(data: bytes) -> None:
        pids.append(int(data))
        raise RuntimeError("disk full")

    runner = SubprocessRunner()
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="disk full"):
        runner.run(
            "echo $$; exec sleep 100",
            cwd=Path.cwd(),
            env=ENV,
            timeout=None,
            output=on_output,
            cancel=threading.Event(),
        )
    assert time.monotonic() - start < 2
    assert gone(pids[0])


def test_parallel_runs_from_threads() -> None:
    results: dict[int, tuple[ProcessResult, Recorder]] = {}

    def one(n: int) -> None:
        results[n] = run(f"echo {n}; exit {n}")

    threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {n: (r.exit_code, out.text) for n, (r, out) in results.items()} == {
        n: (n, f"{n}\n") for n in range(8)
    }


def test_kill_group_of_a_missing_group_is_false() -> None:
    result, out = run("echo $$")
    assert result.exit_code == 0
    assert gone(int(out.text))
    assert kill_group(int(out.text), 0) is False


# The FakeRunner the executor tests use


def fake_run(
    fake: ProcessRunner,
    command: str,
    *,
    timeout: float | None = None,
    cancel: threading.Event | None = None,
) -> tuple[ProcessResult, Recorder]:
    out = Recorder()
    result = fake.run(
        command,
        cwd=Path("."),
        env={"RUNNER_NODE": "/projects/pay"},
        timeout=timeout,
        output=out,
        cancel=cancel or threading.Event(),
    )
    return result, out


def test_fake_runner_answers_with_the_longest_matching_script() -> None:
    fake = FakeRunner({"deploy": (0, b"deployed\n", 0.0), "deploy.sh --prod": (3, b"no\n", 0)})
    result, out = fake_run(fake, "./scripts/deploy.sh --prod")
    assert (result.exit_code, out.data) == (3, b"no\n")
    result, out = fake_run(fake, "./scripts/deploy.sh")
    assert (result.exit_code, out.data) == (0, b"deployed\n")
    result, out = fake_run(fake, "./scripts/other.sh")
    assert (result.exit_code, out.data) == (0, b"")
    assert fake.calls == [
        ("./scripts/deploy.sh --prod", {"RUNNER_NODE": "/projects/pay"}),
        ("./scripts/deploy.sh", {"RUNNER_NODE": "/projects/pay"}),
        ("./scripts/other.sh", {"RUNNER_NODE": "/projects/pay"}),
    ]


def test_fake_runner_without_a_default_refuses_unknown_commands() -> None:
    fake = FakeRunner({}, default=None)
    with pytest.raises(LookupError, match="no script for 'build'"):
        fake_run(fake, "build")


def test_fake_runner_times_out_when_the_delay_is_longer() -> None:
    fake = FakeRunner({"slow": (0, b"", 10.0), "quick": (0, b"", 0.05)})
    result, _ = fake_run(fake, "slow", timeout=0.05)
    assert (result.exit_code, result.timed_out, result.cancelled) == (None, True, False)
    result, _ = fake_run(fake, "quick", timeout=1)
    assert (result.exit_code, result.timed_out, result.cancelled) == (0, False, False)
    assert result.duration >= 0.05


def test_fake_runner_honours_cancel() -> None:
    fake = FakeRunner({"slow": (0, b"", 10.0)})
    cancel = threading.Event()
    threading.Timer(0.05, cancel.set).start()
    result, _ = fake_run(fake, "slow", cancel=cancel)
    assert (result.exit_code, result.timed_out, result.cancelled) == (None, False, True)
    assert result.duration < 1


def test_without_pidfd_the_exit_is_found_by_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Old kernels and macOS have no pidfd_open: the same behaviour through waitid polling."""
    monkeypatch.delattr(os, "pidfd_open", raising=False)
    result, out = run("echo hi; exit 3")
    assert (result.exit_code, out.text) == (3, "hi\n")
    result, out = run("echo bye; exec >&- 2>&-; sleep 0.2; exit 4")
    assert (result.exit_code, out.text) == (4, "bye\n")
    result, out = run("sleep 100 & echo $!; exit 5", timeout=None)
    assert result.exit_code == 5
    assert gone(int(out.text))
    result, out = run("sleep 100 & echo $!; wait", timeout=0.2)
    assert (result.exit_code, result.timed_out) == (None, True)
    assert gone(int(out.text))
