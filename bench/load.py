"""B1: validate + converge a whole generated ops repo, cold and warm, against a parse-only floor.

Builds (once, under bench/out/) a synthetic ops repo — by default 100 projects x 10 environments
x 10 assets = 10,000 assets — then times, as whole processes from start to exit:

* baseline: read every YAML blob at HEAD with pygit2 and parse it with libyaml (CSafeLoader);
* cold: ``runner validate --rev HEAD`` with the parse cache deleted (every check, every asset's
  converged properties checked against its template schema);
* warm: the same with the parse cache (keyed by blob id, under .git/) in place.

Targets: cold <= 2.5 s, warm <= 0.8 s, cold / baseline <= 1.5, peak RSS <= 400 MB.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import BENCH, best_of, python
from generate import generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--environments", type=int, default=10)
    parser.add_argument("--assets", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3, help="best of N")
    args = parser.parse_args(argv)

    size = f"{args.projects}x{args.environments}x{args.assets}"
    repo = BENCH / "out" / f"repo-{size}"
    if not (repo / ".git").exists():
        shutil.rmtree(repo, ignore_errors=True)
        print(f"generating {size} into {repo} ...", flush=True)
        generate(repo, args.projects, args.environments, args.assets, 5, 0)
    cache = repo / ".git" / "runner-cache"

    def drop_cache() -> None:
        shutil.rmtree(cache, ignore_errors=True)

    baseline = best_of(
        args.runs,
        python(
            "-c",
            f"import sys; sys.path.insert(0, {str(BENCH)!r}); "
            f"from _baseline import parse_only; parse_only({str(repo)!r})",
        ),
    )
    validate = python("-m", "runner", "--repo", str(repo), "validate", "--rev", "HEAD")
    cold = best_of(args.runs, validate, before=drop_cache)
    warm = best_of(args.runs, validate)
    assets = args.projects * args.environments * args.assets
    print(f"B1 validate + converge, {assets} assets (best of {args.runs}, process start to exit)")
    print(f"  baseline parse-only  {baseline.seconds:6.2f} s  {baseline.max_rss_mb:6.0f} MB")
    print(
        f"  cold                 {cold.seconds:6.2f} s  {cold.max_rss_mb:6.0f} MB   target <= 2.5 s"
    )
    print(
        f"  warm (cache)         {warm.seconds:6.2f} s  {warm.max_rss_mb:6.0f} MB   target <= 0.8 s"
    )
    print(
        f"  ratio cold/baseline  {cold.seconds / baseline.seconds:6.2f}              target <= 1.5"
    )
    print(f"  ratio warm/baseline  {warm.seconds / baseline.seconds:6.2f}")
    if cold.exit_code != 0 or warm.exit_code != 0:
        print("  validate did not exit 0", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
