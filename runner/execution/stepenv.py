"""What a running step sees (SPEC 2.4): its command with ``${{ … }}`` substituted and
shell-quoted, its environment, the properties file and the outputs file.

Secrets never reach a command line: ``${{ secrets.NAME }}`` (and a property holding a secret
reference) become a quoted reference to an environment variable that holds the value.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.loading.yamlfile import SecretRef
from runner.secrets import MissingSecret, SecretStore

_EXPR = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")
_SECRET_ENV = "RUNNER_SECRET_"  # noqa: S105 - a variable-name prefix, not a secret


class StepSetupError(Exception):
    """A step cannot start (a missing secret, an unknown expression): the step errors with this
    message, which never holds a secret value."""


@dataclass(frozen=True)
class NodeContext:
    """Per node and change: what every step of it shares."""

    node: str
    action: str
    change_id: str
    commit: str
    properties: dict[str, Any]  # converged, secret references unresolved
    workdir: Path  # the ops root inside the run's checkout
    scratch: Path  # private folder for this change: properties file, outputs files


@dataclass(frozen=True)
class Launch:
    command: str
    env: dict[str, str]
    cwd: Path
    outputs_file: Path


def resolve_secrets(value: Any, store: SecretStore) -> Any:
    if isinstance(value, SecretRef):
        return store.get(value.name)
    if isinstance(value, dict):
        return {k: resolve_secrets(v, store) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_secrets(v, store) for v in value]
    return value


def write_properties_file(context: NodeContext, store: SecretStore) -> Path:
    """The converged properties as JSON, secrets resolved, readable by this user only."""
    path = context.scratch / "properties.json"
    resolved = resolve_secrets(context.properties, store)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(resolved, fh, ensure_ascii=False)
    return path


def prepare(
    context: NodeContext,
    step_name: str,
    command: str,
    step_env: tuple[tuple[str, str], ...],
    outputs: Mapping[str, Mapping[str, str]],
    store: SecretStore,
    properties_file: Path,
    base_env: Mapping[str, str],
) -> Launch:
    """The command and environment of one step; raises StepSetupError."""
    needed: dict[str, str] = {}

    def secret_ref(name: str) -> str:
        try:
            needed[f"{_SECRET_ENV}{name}"] = store.get(name)
        except MissingSecret as exc:
            raise StepSetupError(str(exc)) from None
        return f'"${_SECRET_ENV}{name}"'

    def substitute(match: re.Match[str]) -> str:
        expr = match.group(1)
        head, _, rest = expr.partition(".")
        if head == "secrets" and rest:
            return secret_ref(rest)
        if head == "node" and rest == "path":
            return shlex.quote(context.node)
        if head == "properties" and rest:
            value = _lookup(context.properties, rest.split("."), expr)
            if isinstance(value, SecretRef):
                return secret_ref(value.name)
            if _has_secret(value):
                raise StepSetupError(
                    f"${{{{ {expr} }}}} holds secrets; read it from $RUNNER_PROPERTIES"
                )
            return shlex.quote(value if isinstance(value, str) else json.dumps(value))
        if head == "outputs" and rest:
            step, _, key = rest.rpartition(".")
            if step not in outputs or key not in outputs[step]:
                raise StepSetupError(f"${{{{ {expr} }}}}: no such output (yet)")
            return shlex.quote(outputs[step][key])
        raise StepSetupError(f"unknown expression ${{{{ {expr} }}}}")

    text = _EXPR.sub(substitute, command)
    outputs_file = context.scratch / f"outputs-{step_name.replace('/', '__')}.txt"
    outputs_file.write_text("", "utf-8")
    env = dict(base_env)
    env.update(step_env)
    env.update(needed)
    env.update(
        {
            "RUNNER_PROPERTIES": str(properties_file),
            "RUNNER_NODE": context.node,
            "RUNNER_ACTION": context.action,
            "RUNNER_STEP": step_name,
            "RUNNER_CHANGE_ID": context.change_id,
            "RUNNER_COMMIT": context.commit,
            "RUNNER_OUTPUTS": str(outputs_file),
        }
    )
    return Launch(text, env, context.workdir, outputs_file)


def _lookup(values: Any, keys: list[str], expr: str) -> Any:
    node = values
    for key in keys:
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            raise StepSetupError(f"${{{{ {expr} }}}}: no such property")
    return node


def _has_secret(value: Any) -> bool:
    if isinstance(value, SecretRef):
        return True
    if isinstance(value, dict):
        return any(_has_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_secret(v) for v in value)
    return False


def read_outputs(path: Path) -> dict[str, str]:
    """``key=value`` lines and JSON-object lines a step wrote to ``$RUNNER_OUTPUTS``."""
    found: dict[str, str] = {}
    try:
        text = path.read_text("utf-8", errors="replace")
    except OSError:
        return found
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(doc, dict):
                found.update(
                    {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in doc.items()}
                )
        elif "=" in line:
            key, _, value = line.partition("=")
            found[key.strip()] = value
    return found


def base_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What a step inherits from the runner's own environment: never the secrets it holds."""
    return {k: v for k, v in environ.items() if not k.startswith(_SECRET_ENV)}
