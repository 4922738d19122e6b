"""Timing helpers shared by the benchmarks: wall time and peak memory of a whole process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Measured:
    seconds: float
    max_rss_mb: float
    exit_code: int


def run_process(argv: list[str], cwd: Path | None = None) -> Measured:
    """Process start to exit, with the child's peak resident memory."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.stderr is not None:
        err = proc.stderr.read().decode(errors="replace")
        if proc.returncode not in (0, 2) and err:
            print(err, file=sys.stderr)
        proc.stderr.close()
    return Measured(seconds, usage.ru_maxrss / 1024, proc.returncode)


def best_of(runs: int, argv: list[str], before: object = None) -> Measured:
    results = []
    for _ in range(runs):
        if callable(before):
            before()
        results.append(run_process(argv))
    return min(results, key=lambda m: m.seconds)


def python(*args: str) -> list[str]:
    return [sys.executable, *args]
