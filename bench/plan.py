"""B2 and B3: ``runner plan`` for a one-asset change and for a template change, as JSON.

Uses the synthetic ops repo of B1 (bench/out/repo-100x10x10: 10,000 assets, 5 templates; built
once if missing) and adds two change commits to it, each a child of the generated commit:

* B2: one asset file changed (its image tag bumped), planned cold (parse cache deleted) and warm;
* B3: a default property of template ``web`` changed (used by every fifth asset: 2,000 of them),
  planned warm.

The change commits are made once with ``commit_change`` and kept as the branches ``bench-b2`` and
``bench-b3``; ``main`` is put back where it was, so B1 and reruns see the same repository. Each
figure is a whole process, ``python -m runner --repo R plan --base <parent> --head <change>
--format json``, from start to exit. The baseline is what the question costs without us:
``git diff --name-only <parent> <change>`` plus an interpreter start (``python -c pass``).

Targets: B2 warm <= 0.5 s, B2 cold <= 3 s, B3 warm <= 1.5 s.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pygit2

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import BENCH, Measured, best_of, python
from generate import (
    BRANCH_REF,
    asset_path,
    commit_change,
    generate,
    read_text,
    template_path,
)

B2_BRANCH = "bench-b2"
B3_BRANCH = "bench-b3"
B2_FILE = asset_path(0, 0, 0)  # asset-0 of proj-0/env-0: template web
B3_TEMPLATE = "web"  # template index 0: assets 0, 5, 10, ... in generation order
B3_TEMPLATES = 5  # templates in the generated repo
_TAG = re.compile(r'^(    tag: "\d+\.\d+\.)(\d+)(")$', re.MULTILINE)
_THRESHOLD = "    failure_threshold: 3\n"  # under properties.health; set by no asset


@dataclass(frozen=True)
class Change:
    """A change commit and its parent, the plan's head and base."""

    name: str
    parent: str
    head: str


def bump_tag(text: str) -> str:
    """The asset's ``image.tag`` with its patch number plus one."""
    new, count = _TAG.subn(lambda m: f"{m[1]}{int(m[2]) + 1}{m[3]}", text, count=1)
    if count != 1:
        raise ValueError("no image tag found in the asset")
    return new


def raise_threshold(text: str) -> str:
    """The template's default ``health.failure_threshold`` raised from 3 to 5."""
    if text.count(_THRESHOLD) != 1:
        raise ValueError("no default health.failure_threshold found in the template")
    return text.replace(_THRESHOLD, "    failure_threshold: 5\n")


def _branch(repo: pygit2.Repository, name: str) -> pygit2.Commit | None:
    ref = repo.references.get(f"refs/heads/{name}")
    return None if ref is None else ref.peel(pygit2.Commit)


def ensure_change(repo: pygit2.Repository, branch: str, path: str, edit: str) -> Change:
    """The change commit kept on ``branch``; made as a child of ``main`` the first time."""
    found = _branch(repo, branch)
    if found is None:
        tip = repo.references[BRANCH_REF].target
        text = read_text(repo, path, str(tip))
        new = bump_tag(text) if edit == "tag" else raise_threshold(text)
        sha = commit_change(repo, path, new, f"bench: {branch}: change {path}")
        repo.branches.local.create(branch, repo[sha].peel(pygit2.Commit))
        repo.references[BRANCH_REF].set_target(tip, "bench: main back where it was")
        found = _branch(repo, branch)
        assert found is not None
    return Change(branch, str(found.parent_ids[0]), str(found.id))


def plan_argv(repo: Path, change: Change) -> list[str]:
    return python(
        "-m", "runner", "--repo", str(repo), "plan",
        "--base", change.parent, "--head", change.head, "--format", "json",
    )  # fmt: skip


def plan_summary(repo: Path, change: Change) -> dict[str, int]:
    """The JSON plan's counts: ``nodes``, ``created``, ``modified``, ``deleted``, ``steps``."""
    out = subprocess.run(plan_argv(repo, change), capture_output=True, check=True, text=True)
    summary = json.loads(out.stdout)["summary"]
    return {key: value for key, value in summary.items() if isinstance(value, int)}


def baseline(runs: int, repo: Path, change: Change) -> float:
    diff = ["git", "-C", str(repo), "diff", "--name-only", change.parent, change.head]
    return best_of(runs, diff).seconds + best_of(runs, python("-c", "pass")).seconds


def line(label: str, m: Measured, base: float, target: str) -> str:
    return (
        f"  {label:<22}{m.seconds:6.2f} s  {m.max_rss_mb:6.0f} MB  "
        f"x{m.seconds / base:5.1f} baseline   {target}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="best of N")
    parser.add_argument("--small", action="store_true", help="a 10x10x10 repo, for a quick check")
    args = parser.parse_args(argv)

    projects, environments, assets = (10, 10, 10) if args.small else (100, 10, 10)
    size = f"{projects}x{environments}x{assets}"
    repo_dir = BENCH / "out" / f"repo-{size}"
    if not (repo_dir / ".git").exists():
        shutil.rmtree(repo_dir, ignore_errors=True)
        print(f"generating {size} into {repo_dir} ...", flush=True)
        generate(repo_dir, projects, environments, assets, B3_TEMPLATES, 0)
    repo = pygit2.Repository(str(repo_dir))
    b2 = ensure_change(repo, B2_BRANCH, B2_FILE, "tag")
    b3 = ensure_change(repo, B3_BRANCH, template_path(B3_TEMPLATE), "threshold")
    cache = repo_dir / ".git" / "runner-cache"

    def drop_cache() -> None:
        shutil.rmtree(cache, ignore_errors=True)

    total = projects * environments * assets
    b3_expected = len(range(0, total, B3_TEMPLATES))  # round-robin: template 0 is every fifth
    b2_base = baseline(args.runs, repo_dir, b2)
    b3_base = baseline(args.runs, repo_dir, b3)
    b2_cold = best_of(args.runs, plan_argv(repo_dir, b2), before=drop_cache)
    b2_warm = best_of(args.runs, plan_argv(repo_dir, b2))
    plan_summary(repo_dir, b3)  # the B3 head's template file into the cache, as on a CI runner
    b3_warm = best_of(args.runs, plan_argv(repo_dir, b3))
    b2_plan = plan_summary(repo_dir, b2)
    b3_plan = plan_summary(repo_dir, b3)

    print(f"B2/B3 plan --format json, {total} assets (best of {args.runs}, process start to exit)")
    print(f"  B2: {B2_FILE} image tag bumped ({b2.head[:12]})")
    print(f"  baseline (diff+py)    {b2_base:6.2f} s")
    print(line("cold", b2_cold, b2_base, "target <= 3 s"))
    print(line("warm (cache)", b2_warm, b2_base, "target <= 0.5 s"))
    print(
        f"  plan: {b2_plan['nodes']} node(s), {b2_plan['modified']} modified, "
        f"{b2_plan['steps']} steps   expected 1 modified"
    )
    print(f"  B3: template {B3_TEMPLATE} default health.failure_threshold 3 -> 5 ({b3.head[:12]})")
    print(f"  baseline (diff+py)    {b3_base:6.2f} s")
    print(line("warm (cache)", b3_warm, b3_base, "target <= 1.5 s"))
    print(
        f"  plan: {b3_plan['nodes']} node(s), {b3_plan['modified']} modified, "
        f"{b3_plan['steps']} steps   expected {b3_expected} modified"
    )
    failed = [
        label for label, m in (("B2 cold", b2_cold), ("B2 warm", b2_warm), ("B3", b3_warm))
        if m.exit_code != 0
    ]  # fmt: skip
    if failed:
        print(f"  plan did not exit 0: {', '.join(failed)}", file=sys.stderr)
        return 1
    wrong = (b2_plan["nodes"], b2_plan["modified"]) != (1, 1) or (
        b3_plan["nodes"],
        b3_plan["modified"],
    ) != (b3_expected, b3_expected)
    if wrong:
        print("  a plan reported the wrong nodes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
