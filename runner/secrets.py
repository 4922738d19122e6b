"""Secret values: where they come from (SecretStore) and how they are kept out of text (Masker).

A secret ``NAME`` comes from the environment variable ``RUNNER_SECRET_<NAME>``, else from the
secrets file (``--secrets-file``: a YAML mapping ``NAME: value``). Errors name the secret or the
file and line, never a value. Every value a store can hand out is masked as ``***`` in logs,
plans, state commits and messages, together with its shell-quoted and JSON-escaped forms; a
:class:`MaskingStream` does the same for a log arriving in chunks, so a secret split across two
chunks is still masked.
"""

from __future__ import annotations

import codecs
import json
import re
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from runner.errors import InvalidArgument, InvalidInput

__all__ = ["ENV_PREFIX", "Masker", "MaskingStream", "MissingSecret", "SecretStore"]

ENV_PREFIX = "RUNNER_SECRET_"
_STR_TAG = "tag:yaml.org,2002:str"


class MissingSecret(InvalidInput):
    """A step needs a secret that neither the environment nor the secrets file has."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"secret {name!r} is not set: set {ENV_PREFIX}{name} or add {name} to the secrets file"
        )
        self.name = name


class SecretStore:
    """Secret values by name: ``RUNNER_SECRET_<NAME>`` in ``environ`` first, then the file.

    The file is read (and checked) here, so a bad file fails before anything runs.
    """

    def __init__(self, environ: Mapping[str, str], secrets_file: Path | None = None) -> None:
        self._environ = {
            key[len(ENV_PREFIX) :]: value
            for key, value in environ.items()
            if key.startswith(ENV_PREFIX) and len(key) > len(ENV_PREFIX)
        }
        self._file = {} if secrets_file is None else _read_secrets_file(secrets_file)

    def get(self, name: str) -> str:
        if name in self._environ:
            return self._environ[name]
        if name in self._file:
            return self._file[name]
        raise MissingSecret(name)

    def names(self) -> list[str]:
        return sorted(self._environ.keys() | self._file.keys())

    def known_values(self) -> list[str]:
        """Every value this store could hand out (environment and file), for masking."""
        return sorted({*self._environ.values(), *self._file.values()})


def _read_secrets_file(path: Path) -> dict[str, str]:
    """``NAME: value`` pairs from a YAML file; InvalidArgument lists every problem by line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise InvalidArgument(f"{path}: cannot read the secrets file: {reason}") from None
    try:
        root = yaml.compose(text, Loader=yaml.CSafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        # libyaml's problems are fixed strings: they never quote the text (a value) at fault.
        problem = exc.problem or "bad syntax"
        raise InvalidArgument(f"{where}: secrets file is not valid YAML: {problem}") from None
    except yaml.YAMLError:
        raise InvalidArgument(f"{path}: secrets file is not valid YAML") from None
    if root is None:
        return {}
    if not isinstance(root, yaml.MappingNode):
        line = root.start_mark.line + 1
        raise InvalidArgument(f"{path}:{line}: the secrets file must be a mapping of NAME: value")
    values: dict[str, str] = {}
    problems: list[str] = []
    for key, value in root.value:
        line = key.start_mark.line + 1
        if not (isinstance(key, yaml.ScalarNode) and key.tag == _STR_TAG and key.value):
            problems.append(f"{path}:{line}: a secret name must be a non-empty string")
            continue
        name = key.value
        if name in values:
            problems.append(f"{path}:{line}: secret {name!r} is defined twice")
        elif not (isinstance(value, yaml.ScalarNode) and value.tag == _STR_TAG):
            problems.append(
                f"{path}:{value.start_mark.line + 1}: secret {name!r} must be a string"
                " (quote it, so YAML does not turn it into a number, boolean or null)"
            )
        values[name] = value.value if isinstance(value, yaml.ScalarNode) else ""
    if problems:
        raise InvalidArgument("\n".join(problems))
    return values


class Masker:
    """Replaces every secret, and its shell-quoted and JSON-escaped forms, with ``***``.

    Longest first: where two secrets start at the same place the longer one is masked; where
    they overlap, the one starting first wins and the rest of the other stays as text.
    """

    MASK = "***"

    def __init__(self, secrets: Iterable[str]) -> None:
        patterns: set[str] = set()
        for secret in secrets:
            if secret:
                patterns.update(_forms(secret))
        self.patterns = sorted(patterns, key=lambda p: (-len(p), p))
        self.regex = re.compile("|".join(map(re.escape, self.patterns))) if patterns else None
        self.longest = len(self.patterns[0]) if self.patterns else 0
        self._by_first: dict[str, list[str]] = {}
        for pattern in self.patterns:
            if len(pattern) > 1:
                self._by_first.setdefault(pattern[0], []).append(pattern)

    def mask(self, text: str) -> str:
        return text if self.regex is None else self.regex.sub(self.MASK, text)

    def stream(self) -> MaskingStream:
        return MaskingStream(self)

    def _could_start_at(self, text: str, pos: int) -> bool:
        """True when ``text[pos:]`` is a proper prefix of some pattern (more may complete it)."""
        rest = len(text) - pos
        return any(
            len(pattern) > rest and text.startswith(pattern[:rest], pos)
            for pattern in self._by_first.get(text[pos], ())
        )

    def _hold_from(self, text: str) -> int:
        """Where the tail that could still become (part of) a match begins."""
        for pos in range(max(0, len(text) - self.longest + 1), len(text)):
            if self._could_start_at(text, pos):
                return pos
        return len(text)


def _forms(secret: str) -> set[str]:
    """The secret as it may appear in text: as is, shell-quoted, JSON-escaped."""
    return {
        secret,
        shlex.quote(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }


class MaskingStream:
    """Masks bytes arriving in chunks; the output joined equals ``mask`` of the whole text."""

    def __init__(self, masker: Masker) -> None:
        self._masker = masker
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""

    def feed(self, data: bytes) -> str:
        """The text that is safe to emit now; a tail that could start a secret is held back."""
        text = self._pending + self._decoder.decode(data)
        regex = self._masker.regex
        if regex is None:
            self._pending = ""
            return text
        hold = self._masker._hold_from(text)
        # A match starting before ``hold`` is final: every pattern that could start there fits
        # in ``text``, so more data cannot make a longer one match.
        pieces: list[str] = []
        pos = 0
        for match in regex.finditer(text):
            if match.start() >= hold:
                break
            pieces += (text[pos : match.start()], self._masker.MASK)
            pos = match.end()
        if pos < hold:
            pieces.append(text[pos:hold])
            pos = hold
        self._pending = text[pos:]
        return "".join(pieces)

    def close(self) -> str:
        """Everything still held back, masked."""
        text = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return self._masker.mask(text)
