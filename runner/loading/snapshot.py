"""An ops repo read at one revision (or from the working tree): the whole model plus problems."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from runner.errors import InvalidRepository, Problem
from runner.gitrepo import GitRepo, TreeEntry, blob_id
from runner.loading import build
from runner.loading.documents import Document, ParseCache, read_documents, read_one
from runner.loading.source import GitSource, OpsRepo, Source, WorkTreeSource
from runner.loading.yamlfile import Mapping
from runner.model import (
    Action,
    Asset,
    Environment,
    Layer,
    Project,
    Schedule,
    Settings,
    Template,
    Workflow,
)


@dataclass(frozen=True)
class Snapshot:
    label: str  # a short sha, or "working tree"
    commit: str | None
    settings: Settings
    repo_properties: Layer
    templates: dict[str, Template]
    pinned: dict[tuple[str, str], Template]  # (template, version) → the template at that rev
    projects: dict[str, Project]  # by code
    environments: dict[str, Environment]  # by node path
    assets: dict[str, Asset]  # by node path
    workflows: dict[str, Workflow]  # by project/code
    schedules: tuple[Schedule, ...]
    blobs: dict[str, str]  # file → blob id, for every file the model was built from
    template_trees: dict[str, str]  # template → digest of its files other than template.yaml
    problems: list[Problem] = field(default_factory=list)
    broken: frozenset[str] = frozenset()  # files that had problems: references to them stay quiet

    def template_of(self, asset: Asset) -> Template | None:
        if asset.version is None:
            return self.templates.get(asset.template.value)
        return self.pinned.get((asset.template.value, asset.version))

    def actions_of(self, asset: Asset) -> dict[str, Action]:
        """The actions a node can run: its project's, and its template's (which win)."""
        project = self.projects.get(asset.project)
        found = dict(project.actions) if project is not None else {}
        template = self.template_of(asset)
        if template is not None:
            found.update(template.actions)
        return found

    def input_key(self, path: str) -> str:
        """What an asset's effective inputs are made of, by content: the blob ids of its layer
        files and of its template (or the pinned commit). Equal keys mean equal inputs, so a
        node whose key did not move needs no converging to know it did not change."""
        asset = self.assets[path]
        template = self.template_of(asset)
        parts = [path, self.blobs.get(asset.file, ""), self.blobs.get("properties.yaml", "")]
        parts.append(self.blobs.get(f"projects/{asset.project}/project.yaml", ""))
        if asset.environment is not None:
            env_file = f"projects/{asset.project}/environments/{asset.environment}/environment.yaml"
            parts.append(self.blobs.get(env_file, ""))
        if template is None:
            parts.append("no template")
        elif template.commit is not None:
            parts.append(f"{template.code}@{template.version} {template.commit}")
        else:
            parts.append(self.blobs.get(template.file, ""))
            parts.append(self.template_trees.get(template.code, ""))
        return blob_id(" ".join(parts).encode())

    def node_paths(self) -> Iterator[str]:
        yield from (p.path for p in self.projects.values())
        yield from self.environments
        yield from self.assets

    def has_node(self, path: str) -> bool:
        if path in self.assets or path in self.environments:
            return True
        parts = path.split("/")
        return len(parts) == 3 and parts[1] == "projects" and parts[2] in self.projects


def cache_for(git: GitRepo | None) -> ParseCache:
    if git is None:
        return ParseCache(None)
    return ParseCache(git.git_dir / "runner-cache" / "parse.pickle")


def source_for(ops: OpsRepo, rev: str | None) -> Source:
    if rev is None:
        return WorkTreeSource(ops.root)
    git = ops.require_git()
    return GitSource(git, git.resolve(rev), ops.prefix)


def load(ops: OpsRepo, rev: str | None, cache: ParseCache | None = None) -> Snapshot:
    """Read and build the model; problems are collected, never raised. With a ``cache`` given,
    saving it is the caller's job (after the checks have added to it)."""
    own = cache is None
    cache = cache if cache is not None else cache_for(ops.git)
    snapshot = build_snapshot(source_for(ops, rev), ops, cache)
    if own:
        cache.save()
    return snapshot


def build_snapshot(source: Source, ops: OpsRepo, cache: ParseCache) -> Snapshot:
    entries = list(source.entries())
    first = [e for e in entries if e.path == "runner.yaml"]
    docs, problems = read_documents(source, first, cache, Settings().max_file_bytes)
    settings = Settings()
    for doc in docs:
        if doc.ok:
            settings = build.settings(doc.path, doc.value)
    rest = [e for e in entries if e.path != "runner.yaml"]
    more, more_problems = read_documents(source, rest, cache, settings.max_file_bytes)
    docs += more
    problems += more_problems
    broken = {p.file for p in problems}

    repo_properties = Layer("repo", "properties.yaml", Mapping(1))
    templates: dict[str, Template] = {}
    projects: dict[str, Project] = {}
    environments: dict[str, Environment] = {}
    assets: dict[str, Asset] = {}
    workflows: dict[str, Workflow] = {}
    schedules: list[Schedule] = []
    for doc in docs:
        if not doc.ok:
            continue
        parts = doc.path.split("/")
        if doc.kind == "properties":
            repo_properties = Layer("repo", doc.path, doc.value)
        elif doc.kind == "template":
            templates[parts[1]] = build.template(
                parts[1], doc.path, doc.value, properties=doc.properties
            )
        elif doc.kind == "project":
            projects[parts[1]] = build.project(parts[1], doc.path, doc.value, doc.properties)
        elif doc.kind == "environment":
            env = build.environment(parts[1], parts[3], doc.path, doc.value, doc.properties)
            environments[env.path] = env
        elif doc.kind == "asset":
            env_code = parts[3] if parts[2] == "environments" else None
            code = parts[-1][: -len(".yaml")]
            a = build.asset(parts[1], env_code, code, doc.path, doc.value, doc.properties)
            assets[a.path] = a
        elif doc.kind == "workflow":
            wf = build.workflow(parts[1], parts[3][: -len(".yaml")], doc.path, doc.value)
            workflows[wf.qualified_name] = wf
        elif doc.kind == "schedules":
            schedules += build.schedules(parts[1] if len(parts) > 1 else None, doc.path, doc.value)

    problems += _orphans(docs, projects, environments, broken)
    pinned, pin_problems = _pinned_templates(ops, templates, assets, cache, settings)
    problems += pin_problems
    return Snapshot(
        label=source.label,
        commit=source.commit,
        settings=settings,
        repo_properties=repo_properties,
        templates=templates,
        pinned=pinned,
        projects=projects,
        environments=environments,
        assets=assets,
        workflows=workflows,
        schedules=tuple(schedules),
        blobs={d.path: d.oid for d in docs},
        template_trees=_template_trees(source, entries),
        problems=problems,
        broken=frozenset(broken),
    )


def _template_trees(source: Source, entries: list[TreeEntry]) -> dict[str, str]:
    """What a template's scripts and other files are, by content: a step may run them."""
    found: dict[str, list[str]] = {}
    for entry in entries:
        parts = entry.path.split("/")
        if parts[0] != "templates" or len(parts) < 3 or entry.kind == "dir":
            continue
        if parts[2] == "template.yaml" and len(parts) == 3:
            continue
        oid = entry.oid or blob_id(source.read(entry)) if entry.kind == "file" else entry.oid
        found.setdefault(parts[1], []).append(f"{entry.path} {entry.kind} {oid}")
    return {code: blob_id("\n".join(sorted(lines)).encode()) for code, lines in found.items()}


def _orphans(
    docs: list[Document],
    projects: dict[str, Project],
    environments: dict[str, Environment],
    broken: set[str],
) -> list[Problem]:
    """Files inside a project or environment folder that has no project.yaml/environment.yaml."""
    found = []
    for doc in docs:
        parts = doc.path.split("/")
        if parts[0] != "projects" or doc.kind == "project":
            continue
        project_file = f"projects/{parts[1]}/project.yaml"
        if parts[1] not in projects and project_file not in broken:
            found.append(Problem(doc.path, 0, f"{project_file} is missing"))
            continue
        if parts[2] == "environments" and doc.kind != "environment":
            env_file = f"projects/{parts[1]}/environments/{parts[3]}/environment.yaml"
            env_path = f"/projects/{parts[1]}/environments/{parts[3]}"
            if env_path not in environments and env_file not in broken:
                found.append(Problem(doc.path, 0, f"{env_file} is missing"))
    return found


def _pinned_templates(
    ops: OpsRepo,
    templates: dict[str, Template],
    assets: dict[str, Asset],
    cache: ParseCache,
    settings: Settings,
) -> tuple[dict[tuple[str, str], Template], list[Problem]]:
    """Read each template version some asset uses at its pinned rev."""
    wanted = sorted({(a.template.value, a.version) for a in assets.values() if a.version})
    pinned: dict[tuple[str, str], Template] = {}
    problems: list[Problem] = []
    for code, version in wanted:
        template = templates.get(code)
        if template is None or version not in template.versions:
            continue  # reported by checks, at the asset
        pin = template.versions[version]
        where = f"version {version} (rev {pin.rev})"
        git = ops.git
        commit = git.try_resolve(pin.rev) if git is not None else None
        if git is None or commit is None:
            problems.append(
                Problem(template.file, pin.pos.line, f"{where}: unknown revision {pin.rev!r}")
            )
            continue
        path = f"{ops.prefix}/{template.file}" if ops.prefix else template.file
        found = git.read_path(commit, path)
        if found is None:
            problems.append(
                Problem(
                    template.file,
                    pin.pos.line,
                    f"{where}: {template.file} does not exist at that revision",
                )
            )
            continue
        oid, data = found
        at_rev: list[Problem] = []
        doc = read_one(
            template.file,
            oid,
            "template",
            lambda data=data: data,  # type: ignore[misc]
            cache,
            settings.max_file_bytes,
            at_rev,
        )
        problems += [
            Problem(template.file, pin.pos.line, f"{where}: line {p.line}: {p.message}")
            for p in at_rev
        ]
        if doc is not None and doc.ok:
            pinned[(code, version)] = build.template(
                code, template.file, doc.value, version, commit, doc.properties
            )
    return pinned, problems


def read_settings(ops: OpsRepo) -> Settings:
    """runner.yaml alone, from the working tree (commands that only need settings)."""
    path = ops.root / "runner.yaml"
    if not path.is_file():
        return Settings()
    problems: list[Problem] = []
    doc = read_one(
        "runner.yaml",
        "",
        "runner",
        path.read_bytes,
        ParseCache(None),
        Settings().max_file_bytes,
        problems,
    )
    if problems or doc is None:
        raise InvalidRepository(problems)
    return build.settings("runner.yaml", doc.value)
