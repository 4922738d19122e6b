"""Errors, problems and exit codes.

Exception tree (each class carries the exit code the CLI maps it to)::

    RunnerError                  70  internal: a bug or an environment we cannot work in
    ├── InvalidInput              3  bad repository or arguments
    │   ├── InvalidRepository     3  one or more Problems (file:line: message) in the ops repo
    │   ├── InvalidArgument       3  a command-line value that cannot be used
    │   └── UnknownRevision       3  a --rev/--base/--head that git cannot resolve
    └── Blocked                   4  a lock held too long, a paused repo, a refused approval

A failed step is a *result*, never an exception. Messages never contain secret values: secrets
are carried as references (``SecretRef``) until a step runs.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1
    CHANGES = 2
    INVALID = 3
    BLOCKED = 4
    INTERNAL = 70
    SIGINT = 130
    SIGTERM = 143


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the ops repo, at a file (relative to the ops root) and line."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}: {self.message}"
        return f"{self.file}: {self.message}"


class RunnerError(Exception):
    exit_code: ExitCode = ExitCode.INTERNAL


class InvalidInput(RunnerError):
    exit_code = ExitCode.INVALID


class InvalidArgument(InvalidInput):
    pass


class UnknownRevision(InvalidInput):
    def __init__(self, rev: str) -> None:
        super().__init__(f"unknown revision {rev!r}")
        self.rev = rev


class InvalidRepository(InvalidInput):
    """The ops repo has problems; ``problems`` is sorted and never empty."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


class Blocked(RunnerError):
    exit_code = ExitCode.BLOCKED
