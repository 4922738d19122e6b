"""Build a synthetic ops repo as a git repository, for benchmarks.

The repository is written straight into the object database with pygit2 (blobs, trees bottom-up,
one commit on ``main``) and is byte-for-byte reproducible for a given set of parameters and seed:
the author, committer and time are fixed, so the commit sha is stable too.

Layout (codes are predictable so benchmarks can address files directly)::

    runner.yaml
    properties.yaml
    templates/<template>/template.yaml          web, worker, database, cache, queue, template-5...
    projects/proj-<p>/project.yaml
    projects/proj-<p>/environments/env-<e>/environment.yaml
    projects/proj-<p>/environments/env-<e>/assets/asset-<a>.yaml

``env-<e>`` depends on ``env-<e-1>``; the last environment is ``production`` and the one before
it ``staging``. Assets use the templates round-robin over all assets, so with the defaults each of
the 5 templates is used by 2,000 assets. Some assets ``depends_on`` a lower-numbered asset of the
same environment; some hold a ``!secret`` reference (names in :data:`SECRET_NAMES`); a few
extend a list with ``!append``.

Without ``--checkout`` only the git objects are written: the repository has a ``.git`` folder and
an empty working tree (``git status`` then reports every file as deleted). With ``--checkout``
the working tree and index are written too.

Usage::

    python bench/generate.py --out DIR [--projects 100] [--environments 10] [--assets 10]
                             [--templates 5] [--seed 0] [--checkout]

Library use::

    repo = generate(Path(out), projects=2, environments=3, assets=4, templates=5, seed=0)
    sha = commit_change(repo, asset_path(0, 1, 2), new_text, "Bump api")
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pygit2
from pygit2.enums import CheckoutStrategy, FileMode

BRANCH = "main"
BRANCH_REF = f"refs/heads/{BRANCH}"
AUTHOR_NAME = "Bench Generator"
AUTHOR_EMAIL = "bench@example.com"
EPOCH = 1_700_000_000  # fixed commit time: 2023-11-14T22:13:20Z
CHANGE_TIME_STEP = 60  # each commit_change commit is this many seconds after its parent

TEMPLATE_NAMES = ("web", "worker", "database", "cache", "queue")
SECRET_NAMES = ("DB_PASSWORD", "API_TOKEN", "REGISTRY_PASSWORD", "SIGNING_KEY")

_TEAMS = (
    "payments", "billing", "identity", "search", "catalog", "checkout", "ledger", "shipping",
    "inventory", "pricing", "reporting", "messaging", "platform", "risk", "onboarding", "support",
)  # fmt: skip
_TIERS = ("frontend", "backend", "data", "batch", "edge")
_REGIONS = ("eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-southeast-2")
_LOG_LEVELS = ("debug", "info", "warning", "error")
_ENV_VAR_NAMES = (
    "LOG_LEVEL", "LOG_FORMAT", "HTTP_PORT", "METRICS_PORT", "WORKERS", "TIMEOUT_SECONDS",
    "CACHE_TTL", "FEATURE_NEW_CHECKOUT", "FEATURE_DARK_MODE", "MAX_CONNECTIONS", "RETRY_LIMIT",
    "UPSTREAM_URL", "TRACING_ENABLED", "SAMPLE_RATE", "QUEUE_NAME", "BATCH_SIZE",
)  # fmt: skip
_LABEL_KEYS = ("tier", "component", "cost-center", "criticality", "data-class", "on-call")
_VOLUME_NAMES = ("data", "cache", "tmp", "config", "logs")


@dataclass(frozen=True)
class Stats:
    """What one generation wrote."""

    files: int
    bytes: int
    blobs: int
    commit: str
    seconds: float


# ---------------------------------------------------------------------------------------------
# Codes and paths


def template_names(count: int) -> list[str]:
    """The template codes used for ``count`` templates."""
    return [TEMPLATE_NAMES[i] if i < len(TEMPLATE_NAMES) else f"template-{i}" for i in range(count)]


def project_code(p: int) -> str:
    return f"proj-{p}"


def env_code(e: int) -> str:
    return f"env-{e}"


def asset_code(a: int) -> str:
    return f"asset-{a}"


def asset_path(p: int, e: int, a: int) -> str:
    """Path inside the repo of asset ``a`` of environment ``e`` of project ``p``."""
    return f"projects/{project_code(p)}/environments/{env_code(e)}/assets/{asset_code(a)}.yaml"


def environment_path(p: int, e: int) -> str:
    return f"projects/{project_code(p)}/environments/{env_code(e)}/environment.yaml"


def project_path(p: int) -> str:
    return f"projects/{project_code(p)}/project.yaml"


def template_path(name: str) -> str:
    return f"templates/{name}/template.yaml"


# ---------------------------------------------------------------------------------------------
# File contents


def _q(value: str) -> str:
    """A double-quoted YAML scalar (values here never contain quotes or backslashes)."""
    return f'"{value}"'


def runner_yaml() -> str:
    return """\
# Repo settings for the synthetic benchmark ops repo.
state: {branch: runner-state, remote: null}
parallelism: 8
fail_fast: true
timezone: UTC
groups:
  release-managers: [alice, bob]
  platform: [carol, dave, erin]
allow_parallel: {runs_of_same_node: false, runs_of_same_workflow: false}
paused: null
leases: {ttl: 60s, renew_every: 20s}
limits: {max_file_bytes: 1048576}
"""


def properties_yaml() -> str:
    return """\
# Repo-wide base properties (layer 2).
organisation: example
region: eu-west-1
registry: registry.example.com
labels:
  managed-by: gitops-runner
  repo: synthetic-bench
monitoring:
  enabled: true
  interval: 30s
  endpoints: [/metrics]
logging:
  format: json
  retention_days: 14
tags: [synthetic, benchmark]
"""


def _steps_yaml(lines: list[str], steps: list[dict[str, str]], indent: str) -> None:
    for step in steps:
        first = True
        for key, value in step.items():
            lines.append(f"{indent}{'- ' if first else '  '}{key}: {value}")
            first = False


def template_yaml(name: str, index: int, rng: random.Random) -> str:
    """A template with default properties, a schema and 3-4 actions of 2-5 steps each."""
    port = 8000 + index * 10
    lines = [
        f"name: {name.replace('-', ' ').title()} service",
        f"description: Synthetic template {index} ({name}) for benchmarks",
        "properties:",
        "  replicas: 2",
        f"  port: {port}",
        "  image:",
        f"    repository: registry.example.com/base/{name}",
        '    tag: "latest"',
        "    pull_policy: IfNotPresent",
        "  resources:",
        "    requests: {cpu: 100m, memory: 128Mi}",
        '    limits: {cpu: "1", memory: 512Mi}',
        "  env:",
        "    - {name: RUNTIME, value: synthetic}",
        f"    - {{name: SERVICE_KIND, value: {name}}}",
        "  labels:",
        f"    template: {name}",
        "  health:",
        "    path: /healthz",
        "    interval: 10s",
        "    failure_threshold: 3",
        "schema:",
        "  type: object",
        "  required: [image, replicas, resources]",
        "  properties:",
        "    image:",
        "      type: object",
        "      required: [repository, tag]",
        "      properties:",
        "        repository: {type: string}",
        "        tag: {type: string}",
        "        pull_policy: {enum: [Always, IfNotPresent, Never]}",
        "    replicas: {type: integer, minimum: 0, maximum: 100}",
        "    port: {type: integer, minimum: 1, maximum: 65535}",
        "    resources:",
        "      type: object",
        "      properties:",
        "        requests: {type: object}",
        "        limits: {type: object}",
        "    env:",
        "      type: array",
        "      items:",
        "        type: object",
        "        required: [name]",
        "        properties:",
        '          name: {type: string, pattern: "^[A-Z_][A-Z0-9_]*$"}',
        "          value: {type: string}",
        "    labels:",
        "      type: object",
        "      additionalProperties: {type: string}",
        "on_create: deploy",
        "on_change: deploy",
        "on_delete: destroy",
        "check: drift-check",
        "actions:",
    ]
    has_healthcheck = index % 2 == 0  # 3 or 4 actions
    deploy: list[dict[str, str]] = [
        {"name": "render", "run": "echo render ${{ node.path }}"},
        {
            "name": "rollout",
            "run": "echo rollout ${{ properties.image.repository }} ${{ properties.image.tag }}",
            "timeout": "5m",
            "retries": "{attempts: 3, backoff: 1s}",
        },
    ]
    if rng.random() < 0.7:
        deploy.append(
            {
                "name": "record",
                "run": 'echo deployed_tag=${{ properties.image.tag }} >> "$RUNNER_OUTPUTS"',
            }
        )
    if has_healthcheck:
        deploy.append({"name": "verify", "action": "healthcheck"})
    deploy.append({"name": "notify-failure", "if": "failure()", "run": "echo deploy failed"})
    destroy = [
        {"name": "drain", "run": "echo drain ${{ node.path }}", "timeout": "2m"},
        {"name": "delete", "run": "echo delete ${{ node.path }}"},
    ]
    drift = [
        {"name": "fetch-live", "run": "echo fetch ${{ node.path }}"},
        {"name": "compare", "run": "echo compare ${{ properties.replicas }}"},
    ]
    if rng.random() < 0.5:
        drift.append({"name": "report", "run": "echo report", "if": "always()"})
    actions: list[tuple[str, str, list[dict[str, str]], str]] = [
        ("deploy", "Render, roll out and verify", deploy, "sequential"),
        ("destroy", "Drain and delete", destroy, "sequential"),
        ("drift-check", "Compare live state with the converged properties", drift, "sequential"),
    ]
    if has_healthcheck:
        probes = [
            {"name": f"probe-{i}", "run": "echo probe ${{ properties.health.path }}"}
            for i in range(rng.randint(2, 4))
        ]
        actions.append(("healthcheck", "Probe the service", probes, "parallel"))
    for action, description, steps, run_as in actions:
        lines.append(f"  {action}:")
        lines.append(f"    description: {description}")
        lines.append(f"    run_as: {run_as}")
        lines.append("    steps:")
        _steps_yaml(lines, steps, "      ")
    lines.append("")
    return "\n".join(lines)


def project_yaml(p: int, rng: random.Random) -> str:
    team = _TEAMS[p % len(_TEAMS)]
    return f"""\
name: {team.title()} {p}
description: Synthetic project {p} owned by team {team}
properties:
  owner: team-{team}
  cost_center: {_q(f"cc-{1000 + p}")}
  labels:
    team: {team}
    project: {project_code(p)}
  alerts:
    channel: "#{team}-alerts"
    severity_threshold: {rng.choice(("warning", "error", "critical"))}
settings:
  parallelism: {rng.choice((2, 4, 8))}
  fail_fast: true
"""


def environment_yaml(p: int, e: int, environments: int, rng: random.Random) -> str:
    if e == environments - 1:
        kind = "production"
    elif e == environments - 2:
        kind = "staging"
    else:
        kind = "development"
    depends = f"depends_on: [{env_code(e - 1)}]\n" if e > 0 else ""
    replicas = {"development": 1, "staging": 2, "production": 4}[kind] + rng.randint(0, 2)
    region = _REGIONS[(p + e) % len(_REGIONS)]
    extra = ""
    if rng.random() < 0.3:
        extra = "  env: !append\n    - {name: ENVIRONMENT_TIER, value: " + kind + "}\n"
    return f"""\
name: Environment {e} of {project_code(p)}
description: Synthetic {kind} environment
type: {kind}
{depends}properties:
  replicas: {replicas}
  region: {region}
  domain: {env_code(e)}.{project_code(p)}.example.com
  labels:
    environment: {env_code(e)}
    stage: {kind}
  logging:
    level: {"info" if kind == "production" else "debug"}
{extra}settings:
  parallelism: {rng.choice((2, 4))}
  self_heal: {"true" if kind == "production" else "false"}
"""


def asset_yaml(
    p: int, e: int, a: int, template: str, rng: random.Random, lines: list[str] | None = None
) -> str:
    """One asset file, about 0.5-1.5 KB."""
    out: list[str] = [] if lines is None else lines
    out.clear()
    code = asset_code(a)
    team = _TEAMS[p % len(_TEAMS)]
    out.append(f"name: {template.title()} {a} of {env_code(e)}")
    out.append(f"description: Synthetic {template} asset {a} of {project_code(p)}/{env_code(e)}")
    out.append(f"template: {template}")
    if a > 0 and rng.random() < 0.4:
        deps = sorted(rng.sample(range(a), k=min(a, rng.randint(1, 2))))
        out.append("depends_on: [" + ", ".join(asset_code(d) for d in deps) + "]")
    out.append("properties:")
    out.append("  image:")
    out.append(f"    repository: registry.example.com/{project_code(p)}/{code}")
    out.append(f"    tag: {_q(f'{rng.randint(1, 4)}.{rng.randint(0, 60)}.{rng.randint(0, 20)}')}")
    if rng.random() < 0.5:
        out.append(f"  replicas: {rng.randint(1, 12)}")
    cpu = rng.choice((100, 250, 500, 1000))
    mem = rng.choice((128, 256, 512, 1024))
    out.append("  resources:")
    out.append("    requests:")
    out.append(f"      cpu: {cpu}m")
    out.append(f"      memory: {mem}Mi")
    out.append("    limits:")
    out.append(f"      cpu: {_q(str(max(1, cpu * 2 // 1000)))}")
    out.append(f"      memory: {mem * 2}Mi")
    append = rng.random() < 0.1
    out.append("  env: !append" if append else "  env:")
    for name in rng.sample(_ENV_VAR_NAMES, k=rng.randint(3, 9)):
        if name == "LOG_LEVEL":
            value = rng.choice(_LOG_LEVELS)
        elif name.startswith(("FEATURE_", "TRACING")):
            value = rng.choice(("true", "false"))
        elif name == "UPSTREAM_URL":
            value = f"https://{asset_code(rng.randrange(10))}.{env_code(e)}.example.com"
        else:
            value = str(rng.randint(1, 5000))
        out.append(f"    - name: {name}")
        out.append(f"      value: {_q(value)}")
    out.append("  labels:")
    out.append(f"    app: {code}")
    out.append(f"    team: {team}")
    for key in rng.sample(_LABEL_KEYS, k=rng.randint(1, 4)):
        if key == "tier":
            value = rng.choice(_TIERS)
        elif key == "cost-center":
            value = f"cc-{1000 + p}"
        else:
            value = f"{key}-{rng.randint(1, 9)}"
        out.append(f"    {key}: {_q(value)}")
    if rng.random() < 0.3:
        out.append("  database:")
        out.append(f"    host: db-{a}.{env_code(e)}.{project_code(p)}.internal")
        out.append(f"    port: {rng.choice((5432, 3306))}")
        out.append(f"    name: {project_code(p).replace('-', '_')}_{a}")
        out.append(f"    user: svc_{a}")
        out.append("    password: !secret DB_PASSWORD")
    elif rng.random() < 0.15:
        out.append(f"  api_token: !secret {rng.choice(SECRET_NAMES[1:])}")
    if rng.random() < 0.5:
        out.append("  ports:")
        out.append(f"    - {{name: http, port: {rng.choice((80, 8080, 8443))}, protocol: TCP}}")
        if rng.random() < 0.5:
            out.append(f"    - {{name: metrics, port: {rng.choice((9090, 9100))}, protocol: TCP}}")
    if rng.random() < 0.4:
        out.append("  volumes:")
        for vol in rng.sample(_VOLUME_NAMES, k=rng.randint(1, 3)):
            out.append(f"    - name: {vol}")
            out.append(f"      mount_path: /var/lib/{code}/{vol}")
            out.append(f"      size: {rng.choice((1, 5, 10, 50))}Gi")
    if rng.random() < 0.3:
        out.append("  health:")
        out.append(f"    path: /{code}/healthz")
        out.append(f"    interval: {rng.choice((5, 10, 30))}s")
    out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Git objects


def _signature(when: int) -> pygit2.Signature:
    return pygit2.Signature(AUTHOR_NAME, AUTHOR_EMAIL, when, 0)


def _write_tree(
    repo: pygit2.Repository, entries: Iterable[tuple[str, pygit2.Oid, int]]
) -> pygit2.Oid:
    builder = repo.TreeBuilder()
    for name, oid, mode in entries:
        builder.insert(name, oid, mode)
    return builder.write()


def _prepare_dir(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out} exists and is not a directory")
        if any(out.iterdir()):
            raise FileExistsError(f"{out} is not empty")


def generate_with_stats(
    out: Path,
    projects: int = 100,
    environments: int = 10,
    assets: int = 10,
    templates: int = 5,
    seed: int = 0,
    *,
    checkout: bool = False,
) -> tuple[pygit2.Repository, Stats]:
    """Like :func:`generate`, also returning what was written."""
    if min(projects, environments, assets, templates) < 1:
        raise ValueError("projects, environments, assets and templates must each be at least 1")
    started = time.perf_counter()
    out = Path(out)
    _prepare_dir(out)
    repo = pygit2.init_repository(str(out), bare=False, initial_head=BRANCH)
    rng = random.Random(seed)
    blob_ids: set[pygit2.Oid] = set()
    n_files = 0
    n_bytes = 0

    def blob(text: str) -> pygit2.Oid:
        nonlocal n_files, n_bytes
        data = text.encode()
        oid = repo.create_blob(data)
        blob_ids.add(oid)
        n_files += 1
        n_bytes += len(data)
        return oid

    tree_mode = FileMode.TREE
    blob_mode = FileMode.BLOB

    names = template_names(templates)
    template_entries = []
    for i, name in enumerate(names):
        sub = _write_tree(repo, [("template.yaml", blob(template_yaml(name, i, rng)), blob_mode)])
        template_entries.append((name, sub, tree_mode))

    buf: list[str] = []
    project_entries = []
    global_asset = 0
    for p in range(projects):
        env_entries = []
        for e in range(environments):
            env_blob = blob(environment_yaml(p, e, environments, rng))
            asset_entries = []
            for a in range(assets):
                template = names[global_asset % templates]
                global_asset += 1
                text = asset_yaml(p, e, a, template, rng, buf)
                asset_entries.append((f"{asset_code(a)}.yaml", blob(text), blob_mode))
            env_tree = _write_tree(
                repo,
                [
                    ("assets", _write_tree(repo, asset_entries), tree_mode),
                    ("environment.yaml", env_blob, blob_mode),
                ],
            )
            env_entries.append((env_code(e), env_tree, tree_mode))
        project_tree = _write_tree(
            repo,
            [
                ("environments", _write_tree(repo, env_entries), tree_mode),
                ("project.yaml", blob(project_yaml(p, rng)), blob_mode),
            ],
        )
        project_entries.append((project_code(p), project_tree, tree_mode))

    root = _write_tree(
        repo,
        [
            ("projects", _write_tree(repo, project_entries), tree_mode),
            ("properties.yaml", blob(properties_yaml()), blob_mode),
            ("runner.yaml", blob(runner_yaml()), blob_mode),
            ("templates", _write_tree(repo, template_entries), tree_mode),
        ],
    )
    sig = _signature(EPOCH)
    message = (
        f"Synthetic ops repo: {projects} projects x {environments} environments x "
        f"{assets} assets, {templates} templates, seed {seed}\n"
    )
    commit = repo.create_commit(BRANCH_REF, sig, sig, message, root, [])
    repo.set_head(BRANCH_REF)
    if checkout:
        repo.checkout_head(strategy=CheckoutStrategy.FORCE)  # type: ignore[no-untyped-call]
    stats = Stats(
        files=n_files,
        bytes=n_bytes,
        blobs=len(blob_ids),
        commit=str(commit),
        seconds=time.perf_counter() - started,
    )
    return repo, stats


def generate(
    out: Path,
    projects: int = 100,
    environments: int = 10,
    assets: int = 10,
    templates: int = 5,
    seed: int = 0,
    *,
    checkout: bool = False,
) -> pygit2.Repository:
    """Create a synthetic ops repo at ``out`` (missing or empty) with one commit on ``main``.

    Deterministic: the same arguments give the same commit sha. With ``checkout`` the working
    tree and index are written as well.
    """
    repo, _ = generate_with_stats(
        out, projects, environments, assets, templates, seed, checkout=checkout
    )
    return repo


def _replace_in_tree(
    repo: pygit2.Repository, tree: pygit2.Tree | None, parts: list[str], blob_id: pygit2.Oid
) -> pygit2.Oid:
    builder = repo.TreeBuilder(tree) if tree is not None else repo.TreeBuilder()
    name, rest = parts[0], parts[1:]
    existing = tree[name] if tree is not None and name in tree else None
    if not rest:
        if existing is not None and existing.type_str == "tree":
            raise IsADirectoryError(f"{name} is a folder")
        mode = existing.filemode if existing is not None else FileMode.BLOB
        builder.insert(name, blob_id, mode)
    else:
        subtree: pygit2.Tree | None = None
        if existing is not None:
            if existing.type_str != "tree":
                raise NotADirectoryError(f"{name} is a file")
            subtree = repo[existing.id].peel(pygit2.Tree)
        builder.insert(name, _replace_in_tree(repo, subtree, rest, blob_id), FileMode.TREE)
    return builder.write()


def _check_path(repo: pygit2.Repository, tree: pygit2.Tree, parts: list[str]) -> None:
    for depth, name in enumerate(parts):
        if name not in tree:
            return
        entry = tree[name]
        is_last = depth == len(parts) - 1
        if is_last and entry.type_str == "tree":
            raise IsADirectoryError(f"{'/'.join(parts)} is a folder")
        if not is_last:
            if entry.type_str != "tree":
                raise NotADirectoryError(f"{'/'.join(parts[: depth + 1])} is a file")
            tree = repo[entry.id].peel(pygit2.Tree)


def commit_change(repo: pygit2.Repository, path_in_repo: str, new_text: str, message: str) -> str:
    """Commit ``new_text`` as ``path_in_repo`` (replaced or added) on ``main``; return the sha.

    Only git objects are written: a checked-out working tree is left as it was. The commit's
    time is its parent's plus one minute, so a sequence of changes stays reproducible.
    """
    parts = [part for part in path_in_repo.strip("/").split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise ValueError(f"bad path in repo: {path_in_repo!r}")
    parent = repo.references[BRANCH_REF].peel(pygit2.Commit)
    _check_path(repo, parent.tree, parts)  # fail before writing any object
    blob_id = repo.create_blob(new_text.encode())
    tree_id = _replace_in_tree(repo, parent.tree, parts, blob_id)
    sig = _signature(parent.commit_time + CHANGE_TIME_STEP)
    if not message.endswith("\n"):
        message += "\n"
    commit = repo.create_commit(BRANCH_REF, sig, sig, message, tree_id, [parent.id])
    return str(commit)


def read_text(repo: pygit2.Repository, path_in_repo: str, rev: str = BRANCH) -> str:
    """The text of one file at ``rev`` (default: the tip of ``main``)."""
    tree = repo.revparse_single(rev).peel(pygit2.Tree)
    return repo[tree[path_in_repo].id].peel(pygit2.Blob).data.decode()


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate a synthetic ops repo as a git repo.")
    parser.add_argument("--out", type=Path, required=True, help="target folder (missing or empty)")
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--environments", type=int, default=10)
    parser.add_argument("--assets", type=int, default=10, help="assets per environment")
    parser.add_argument("--templates", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkout", action="store_true", help="also write the working tree")
    args = parser.parse_args(argv)
    try:
        _, stats = generate_with_stats(
            args.out,
            args.projects,
            args.environments,
            args.assets,
            args.templates,
            args.seed,
            checkout=args.checkout,
        )
    except (FileExistsError, ValueError) as exc:
        print(f"generate: {exc}", file=sys.stderr)
        return 2
    print(
        f"{stats.files} files, {stats.blobs} blobs, {stats.bytes} bytes "
        f"({stats.bytes / max(stats.files, 1):.0f} B/file), commit {stats.commit[:12]}, "
        f"{stats.seconds:.2f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
