"""B5: committing change records to the state branch.

In a fresh repository (a temporary folder), times:

* one ``StateStore.update`` per record: 1,000 change records of about 1 KB of YAML each, under
  ``changes/<date>/<id>.yaml`` (one date, so the folder grows to 1,000 entries), each update a
  commit built from trees plus a compare-and-swap of ``refs/heads/runner-state``;
* the same 1,000 records in updates of 50 records each (20 commits);
* the floor: the same 1,000 records as 1,000 commits written by one ``git fast-import`` stream
  (no compare-and-swap, no reading back, one process doing nothing else);
* 1,000 lease acquire/release pairs (``try_acquire`` then ``release``, 2,000 updates) over 100
  nodes;
* pushing the 1,000 record commits to a bare repository, from nothing, with ``StateStore.push``.

Target: 1,000 records in <= 1 s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.gitrepo import GitRepo
from runner.state.leases import release, try_acquire
from runner.state.store import StateStore, StateView

DATE = "2026-03-01"
TARGET_SECONDS = 1.0
BATCH = 50


def record(i: int) -> tuple[str, bytes]:
    """A change record of about 1 KB, at its path on the state branch."""
    change = f"20260301T1000{i // 60 % 60:02}Z-{i:06x}"
    steps = "".join(
        f"  - id: deploy/step-{s}\n"
        f"    status: success\n"
        f"    started: '2026-03-01T10:00:{s:02}.000+00:00'\n"
        f"    finished: '2026-03-01T10:00:{s + 1:02}.000+00:00'\n"
        f"    attempts: 1\n"
        f"    exit_code: 0\n"
        for s in range(5)
    )
    text = (
        f"id: {change}\n"
        f"node: /projects/p{i % 100}/environments/prod/assets/api-{i}\n"
        f"action: deploy\n"
        f"commit: {i:040x}\n"
        f"status: success\n"
        f"reasons: [properties changed, template web 1.2.0 -> 1.3.0]\n"
        f"started: '2026-03-01T10:00:00.000+00:00'\n"
        f"finished: '2026-03-01T10:00:06.000+00:00'\n"
        f"steps:\n{steps}"
    )
    return f"changes/{DATE}/{change}.yaml", text.encode()


def writes(files: Mapping[str, bytes]) -> Callable[[StateView], Mapping[str, bytes | None]]:
    def mutate(view: StateView) -> Mapping[str, bytes | None]:
        return files

    return mutate


def fresh(folder: Path) -> GitRepo:
    subprocess.run(["git", "init", "-q", "-b", "main", str(folder)], check=True)
    return GitRepo.open(folder)


def one_per_update(repo: GitRepo, records: list[tuple[str, bytes]]) -> float:
    store = StateStore(repo)
    start = time.perf_counter()
    for path, data in records:
        store.update(writes({path: data}), f"record {path}")
    return time.perf_counter() - start


def batched(repo: GitRepo, records: list[tuple[str, bytes]]) -> float:
    store = StateStore(repo)
    start = time.perf_counter()
    for first in range(0, len(records), BATCH):
        store.update(writes(dict(records[first : first + BATCH])), f"records from {first}")
    return time.perf_counter() - start


def fast_import(folder: Path, records: list[tuple[str, bytes]]) -> float:
    """The same records as one commit each, in one ``git fast-import`` stream (each commit on the
    branch continues from the one before, with its tree)."""
    chunks: list[bytes] = []
    for path, data in records:
        message = f"record {path}".encode()
        chunks.append(b"commit refs/heads/runner-state\n")
        chunks.append(b"committer gitops-runner <runner@localhost> 1772359200 +0000\n")
        chunks.append(b"data %d\n%s\n" % (len(message), message))
        chunks.append(b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(data), data))
    stream = b"".join(chunks)
    start = time.perf_counter()
    subprocess.run(["git", "fast-import", "--quiet"], cwd=folder, input=stream, check=True)
    return time.perf_counter() - start


def leases(repo: GitRepo, pairs: int) -> float:
    store = StateStore(repo)
    start = time.perf_counter()
    for i in range(pairs):
        ours, _ = try_acquire(store, f"/projects/p{i % 100}", "bench:1:aa", f"c-{i}", 60)
        assert ours is not None
        release(store, ours)
    return time.perf_counter() - start


def push(folder: Path, repo: GitRepo) -> float:
    bare = folder / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    repo.raw.remotes.create("origin", str(bare))
    store = StateStore(repo, remote="origin")
    start = time.perf_counter()
    store.push()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3, help="best of N")
    args = parser.parse_args(argv)
    records = [record(i) for i in range(args.records)]
    size = sum(len(data) for _, data in records) / len(records)
    print(f"B5: {len(records)} change records of {size:.0f} bytes each (best of {args.runs})")

    single, batch, floor, lease, pushed = [], [], [], [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="b5-") as tmp:
            root = Path(tmp)
            repo = fresh(root / "single")
            single.append(one_per_update(repo, records))
            pushed.append(push(root, repo))
            batch.append(batched(fresh(root / "batched"), records))
            fresh(root / "floor")
            floor.append(fast_import(root / "floor", records))
            lease.append(leases(fresh(root / "leases"), len(records)))

    n = len(records)
    one, fifty, base = min(single), min(batch), min(floor)
    verdict = "meets" if one <= TARGET_SECONDS else "misses"
    print(
        f"  one update per record   {one:7.3f} s  {n / one:7.0f} records/s  "
        f"{one / base:5.1f}x fast-import  ({verdict} the target of <= {TARGET_SECONDS:.0f} s)"
    )
    print(
        f"  {BATCH} records per update  {fifty:7.3f} s  {n / fifty:7.0f} records/s  "
        f"{fifty / base:5.1f}x fast-import"
    )
    print(f"  git fast-import floor   {base:7.3f} s  {n / base:7.0f} records/s")
    print(
        f"  lease acquire+release   {min(lease):7.3f} s  {n / min(lease):7.0f} pairs/s "
        f"({n} pairs, 2 updates each)"
    )
    print(f"  push {n} commits to a bare repository  {min(pushed):7.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
