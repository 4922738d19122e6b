"""From a Source to checked YAML documents: layout, size, encoding, symlinks, YAML, schemas.

Parsing and schema-checking a blob depend only on its bytes, so the results are cached by blob id
(``ParseCache``, under ``.git/``): never stale, safe to delete.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import __version__
from runner.errors import Problem
from runner.gitrepo import TreeEntry, blob_id
from runner.loading.schemacheck import SchemaCheck
from runner.loading.source import Source
from runner.loading.yamlfile import Mapping, YamlError, parse
from runner.resources import data_dir

if TYPE_CHECKING:
    import jsonschema

CODE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
KINDS = (
    "runner",
    "properties",
    "schedules",
    "template",
    "project",
    "environment",
    "asset",
    "workflow",
)
CACHE_VERSION = 1


@dataclass(frozen=True)
class Document:
    path: str
    kind: str
    oid: str
    value: Any
    ok: bool  # False: it has schema problems (reported); the model skips it without cascading
    properties: Any = None  # the ``properties`` mapping, or pickled bytes of it (see Layer)


# --- layout -------------------------------------------------------------------------------------

_TOP = {"runner.yaml": "runner", "properties.yaml": "properties", "schedules.yaml": "schedules"}


def classify(path: str) -> tuple[str | None, str | None]:
    """``(kind, None)`` for a file the loader reads, ``(None, problem)`` for a misplaced one,
    ``(None, None)`` for a file it ignores (scripts, docs)."""
    parts = path.split("/")
    yaml_like = path.endswith((".yaml", ".yml"))
    if len(parts) == 1:
        if path in _TOP:
            return _TOP[path], None
        stem = path.rsplit(".", 1)[0]
        if path.endswith(".yml") and f"{stem}.yaml" in _TOP:
            return None, f"rename to {stem}.yaml (the runner reads .yaml files only)"
        return None, None
    if parts[0] == "templates":
        if len(parts) == 3 and parts[2] in ("template.yaml", "template.yml"):
            if parts[2] == "template.yml":
                return None, "rename to template.yaml (the runner reads .yaml files only)"
            return _code_or_problem("template", parts[1], "template")
        return None, None
    # projects/...
    if len(parts) < 3:
        return None, None
    project = parts[1]
    rest = parts[2:]
    if rest == ["project.yaml"]:
        return _code_or_problem("project", project, "project")
    if rest == ["schedules.yaml"]:
        return _code_or_problem("project", project, "schedules")
    if rest[0] == "assets" and len(rest) == 2 and yaml_like:
        return _asset_like(project, None, rest[1])
    if rest[0] == "workflows" and len(rest) == 2 and yaml_like:
        if not rest[1].endswith(".yaml"):
            return None, "rename to .yaml (the runner reads .yaml files only)"
        return _code_or_problem("project", project, "workflow")
    if rest[0] == "environments" and len(rest) >= 3:
        env = rest[1]
        if rest[2:] == ["environment.yaml"]:
            kind, problem = _code_or_problem("project", project, "environment")
            return (
                (kind, problem) if problem else _code_or_problem("environment", env, "environment")
            )
        if rest[2] == "assets" and len(rest) == 4 and yaml_like:
            return _asset_like(project, env, rest[3])
        if len(rest) == 3 and yaml_like:
            return None, "unexpected file: an environment folder holds environment.yaml and assets/"
        return None, None
    if len(rest) == 1 and yaml_like:
        return None, (
            "unexpected file: a project folder holds project.yaml, schedules.yaml, assets/, "
            "environments/ and workflows/"
        )
    return None, None


def _in_layout(path: str) -> bool:
    """Inside the folders the runner reads (where a symlink could smuggle in a file)."""
    return path.startswith(("projects/", "templates/")) or path in _TOP


def _code_or_problem(what: str, code: str, kind: str) -> tuple[str | None, str | None]:
    if CODE.match(code):
        return kind, None
    return None, f"{what} code {code!r} must match {CODE.pattern}"


def _asset_like(project: str, env: str | None, name: str) -> tuple[str | None, str | None]:
    if not name.endswith(".yaml"):
        return None, "rename to .yaml (the runner reads .yaml files only)"
    for what, code in (("project", project), ("environment", env), ("asset", name[:-5])):
        if code is not None and not CODE.match(code):
            return None, f"{what} code {code!r} must match {CODE.pattern}"
    return "asset", None


# --- schemas ------------------------------------------------------------------------------------


@cache
def validator(kind: str) -> SchemaCheck:
    """The compiled validator of a file kind (compiled once per process)."""
    schema = json.loads((data_dir("schemas") / f"{kind}.schema.json").read_text("utf-8"))
    return SchemaCheck(schema)


@cache
def schemas_fingerprint() -> str:
    """What cached results depend on besides the blobs: the schemas and the code that parses,
    checks and converges. Any change to them starts a new cache."""
    package = Path(__file__).resolve().parent.parent
    sources = [
        *sorted(data_dir("schemas").glob("*.json")),
        *sorted((package / "loading").glob("*.py")),
        *sorted((package / "properties").glob("*.py")),
        package / "model.py",
        package / "scheduling.py",  # cron and time checks
        package / "durations.py",
    ]
    digest = blob_id(b"".join(p.read_bytes() for p in sources))
    return f"{CACHE_VERSION}-{__version__}-{digest[:12]}"


def line_at(value: Any, path: Iterable[Any]) -> int:
    """The line of the deepest mapping key on ``path`` inside a loaded document."""
    line = value.line if isinstance(value, Mapping) else 1
    node = value
    for part in path:
        if isinstance(node, Mapping) and isinstance(part, str) and part in node:
            line = node.line_of(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            if isinstance(node, Mapping):
                line = node.line
        else:
            break
    return line


def schema_problems(kind: str, value: Any) -> list[tuple[int, str]]:
    """``(line, message)`` for every way ``value`` breaks the schema of ``kind``."""
    found: list[tuple[int, str]] = []
    for error in validator(kind).errors(value):
        best = error
        if error.context and error.validator != "oneOf":
            import jsonschema

            best = jsonschema.exceptions.best_match(error.context)
        where = ".".join(str(p) for p in best.absolute_path)
        message = _message(best)
        found.append((_error_line(value, best), f"{where}: {message}" if where else message))
    return sorted(set(found))


def _error_line(value: Any, error: jsonschema.ValidationError) -> int:
    """The line of the offending key where the error names one (an unknown key, a reserved
    key), else of the deepest key on the error's path."""
    path = list(error.absolute_path)
    instance: Any = error.instance
    schema: Any = error.schema
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        extra = sorted(set(instance) - set(schema.get("properties", {})))
        if extra:
            return min(line_at(value, [*path, key]) for key in extra)
    if error.validator == "propertyNames" or (
        error.validator == "not"
        and isinstance(instance, str)
        and error.validator_value == {"const": "outputs"}
    ):
        return line_at(value, [*path, instance])
    return line_at(value, path)


def _message(error: jsonschema.ValidationError) -> str:
    schema: Any = error.schema
    if error.validator == "additionalProperties":
        instance: Any = error.instance
        extra = sorted(set(instance) - set(schema.get("properties", {})))
        allowed = ", ".join(sorted(schema.get("properties", {})))
        if extra:
            names = ", ".join(repr(e) for e in extra)
            return f"unknown key {names} (allowed: {allowed})"
    if error.validator == "pattern":
        return f"{_short(error.instance)} does not match {schema['pattern']}"
    if error.validator == "oneOf" and isinstance(error.instance, dict):
        branches: Any = error.validator_value
        if all(set(b) == {"required"} and len(b["required"]) == 1 for b in branches):
            keys = [b["required"][0] for b in branches]
            found = [k for k in keys if k in error.instance]
            return f"needs exactly one of {', '.join(keys)}; found {', '.join(found) or 'none'}"
    if error.validator == "not" and error.validator_value == {"const": "outputs"}:
        return "the key 'outputs' is reserved for recorded outputs"
    return error.message


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- the cache ----------------------------------------------------------------------------------


class ParseCache:
    """Parsed and schema-checked documents by ``kind:blob-id``, pickled in one file; also the
    converged-property check of each asset by its input key (``converged:<key>``)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, Any] | None = None
        self._dirty = False

    def _load(self) -> dict[str, Any]:
        if self._entries is None:
            self._entries = {}
            if self.path is not None and self.path.is_file():
                try:
                    with self.path.open("rb") as fh:
                        stored = pickle.load(fh)  # noqa: S301 - our own file under .git/
                    if stored.get("version") == schemas_fingerprint():
                        self._entries = stored["entries"]
                except Exception:
                    self._entries = {}
        return self._entries

    def get(self, key: str) -> Any:
        return self._load().get(key)

    def put(self, key: str, entry: Any) -> None:
        self._load()[key] = entry
        self._dirty = True

    def save(self) -> None:
        if not self._dirty or self.path is None or self._entries is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".parse-")
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(
                    {"version": schemas_fingerprint(), "entries": self._entries},
                    fh,
                    protocol=pickle.HIGHEST_PROTOCOL,
                )
            os.replace(tmp, self.path)
        except OSError:
            return  # read-only .git: run without a cache
        self._dirty = False


# --- reading ------------------------------------------------------------------------------------


def read_documents(
    source: Source, entries: Iterable[TreeEntry], cache: ParseCache, max_bytes: int
) -> tuple[list[Document], list[Problem]]:
    """The ops-repo files among ``entries``, parsed and schema-checked, plus every problem."""
    documents: list[Document] = []
    problems: list[Problem] = []
    for entry in entries:
        if entry.kind == "dir":
            continue
        if entry.kind not in ("file", "dir") and _in_layout(entry.path):
            problems.append(
                Problem(entry.path, 0, f"is a {entry.kind}; the runner reads regular files only")
            )
            continue
        kind, misplaced = classify(entry.path)
        if misplaced is not None:
            problems.append(Problem(entry.path, 0, misplaced))
            continue
        if kind is None:
            continue
        if entry.kind != "file":
            problems.append(
                Problem(entry.path, 0, f"is a {entry.kind}; the runner reads regular files only")
            )
            continue
        document = read_one(
            entry.path, entry.oid, kind, partial(source.read, entry), cache, max_bytes, problems
        )
        if document is not None:
            documents.append(document)
    return documents, problems


def read_one(
    path: str,
    oid: str,
    kind: str,
    read: Callable[[], bytes],
    cache: ParseCache,
    max_bytes: int,
    problems: list[Problem],
) -> Document | None:
    """One file, from the cache when its blob id (computed from the bytes when ``oid`` is '')
    was seen before."""
    data: bytes | None = None
    if not oid:
        data = read()
        oid = blob_id(data)
    key = f"{kind}:{oid}"
    cached = cache.get(key)
    if cached is None:
        if data is None:
            data = read()
        if len(data) > max_bytes:
            problems.append(_too_big(path, len(data), max_bytes))
            return None
        cached, live = _check(kind, data)
        cache.put(key, cached)
    else:
        live = None
    size, value, found, properties = cached
    if live is not None:
        properties = live  # just parsed: no need to unpickle what was pickled for the cache
    if size > max_bytes:
        problems.append(_too_big(path, size, max_bytes))
        return None
    problems.extend(Problem(path, line, message) for line, message in found)
    if value is None:
        return None
    return Document(path, kind, oid, value, ok=not found, properties=properties)


def _too_big(path: str, size: int, max_bytes: int) -> Problem:
    return Problem(
        path,
        0,
        f"file is {size} bytes, over the limit of {max_bytes} (runner.yaml limits.max_file_bytes)",
    )


_SPLIT_KINDS = ("asset", "environment", "project", "template")


def _check(kind: str, data: bytes) -> tuple[tuple[int, Any, list[tuple[int, str]], Any], Any]:
    """Parse and schema-check one blob: ``(size, value, problems, properties)``. For node and
    template files the ``properties`` mapping is split off and pickled on its own, so a cached
    document can be used without building its property tree. Second: the live properties
    mapping, for this process."""
    size = len(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        message = f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        return (size, None, [(line, message)], None), None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        value = parse(text)
    except YamlError as exc:
        return (size, None, [(exc.line, exc.message)], None), None
    if value is None:
        value = [] if kind == "schedules" else Mapping(1)
    found = schema_problems(kind, value)
    properties = mapping = None
    if kind in _SPLIT_KINDS and isinstance(value, Mapping) and not found:
        mapping = value.pop("properties", None)
        if mapping is not None:
            properties = pickle.dumps(mapping, protocol=pickle.HIGHEST_PROTOCOL)
    return (size, value, found, properties), mapping
