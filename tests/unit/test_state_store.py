"""The state-branch store (SPEC 4): commits without a checkout, compare-and-swap of the branch
tip, push with replay, and leases. Real git repositories and real processes throughout."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runner import gitrepo
from runner.errors import Blocked, InvalidArgument, RunnerError
from runner.gitrepo import GitRepo
from runner.state.leases import (
    Lease,
    LeaseLost,
    force_unlock,
    read_lease,
    release,
    renew,
    try_acquire,
)
from runner.state.store import Mutation, StateStore, StateView
from tests.support.opsrepo import OpsRepoBuilder

REF = "refs/heads/runner-state"
T0 = datetime(2026, 3, 1, 10, 0, 0, tzinfo=UTC)


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def untouched(repo: Path) -> tuple[str, str, str, str]:
    """What a state-branch write must leave alone: HEAD, other refs, work tree and index."""
    listed = git(repo, "for-each-ref", "--format=%(refname) %(objectname)").splitlines()
    refs = "\n".join(line for line in listed if not line.startswith(f"{REF} "))
    status = git(repo, "status", "--porcelain", "--untracked-files=all")
    index = hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest()
    return git(repo, "rev-parse", "HEAD"), refs, status, index


def assert_sound_linear_history(repo: Path, branch: str, commits: int) -> None:
    assert git(repo, "rev-list", "--count", branch) == str(commits)
    assert git(repo, "rev-list", "--min-parents=2", branch) == ""
    fsck = subprocess.run(
        ["git", "fsck", "--strict", "--no-dangling"], cwd=repo, capture_output=True, text=True
    )
    said = [line for line in (fsck.stdout + fsck.stderr).splitlines() if "unborn" not in line]
    assert (fsck.returncode, said) == (0, [])


def run_together(argvs: list[list[str]], folder: Path) -> list[str]:
    """Start processes that wait for a go signal once ready, start them all at once, and return
    their outputs."""
    go = folder / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER_PRELUDE + script, str(go), str(i), *rest],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, (script, *rest) in enumerate(argvs)
    ]
    deadline = time.monotonic() + 60
    while len(list(folder.glob("ready-*"))) < len(procs) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        outputs.append(out.strip())
    return outputs


WORKER_PRELUDE = """\
import sys, time
from pathlib import Path
from runner.gitrepo import GitRepo
from runner.state.store import StateStore
from runner.state.leases import try_acquire
go, me = Path(sys.argv[1]), sys.argv[2]
def wait_for_go():
    (go.parent / f"ready-{me}").touch()
    while not go.exists():
        time.sleep(0.001)
"""

RECORDS = """
repo, count, remote = Path(sys.argv[3]), int(sys.argv[4]), sys.argv[5] or None
store = StateStore(GitRepo.open(repo), remote=remote)
wait_for_go()
for i in range(count):
    def mutate(view, i=i):
        seen = int(view.read("count") or b"0")
        return {f"records/{me}-{i:03}.yaml": f"id: {me}-{i}\\n".encode(),
                "count": str(seen + 1).encode()}
    store.update(mutate, f"record {me}-{i}")
    store.push()
"""

LEASE = """
repo, remote = Path(sys.argv[3]), sys.argv[4] or None
store = StateStore(GitRepo.open(repo), remote=remote)
wait_for_go()
ours, blocking = try_acquire(store, "/projects/pay", f"holder-{me}", f"change-{me}", ttl=600)
print("won" if ours else f"blocked by {blocking.holder}")
"""


@pytest.fixture
def repo(ops: OpsRepoBuilder) -> GitRepo:
    return GitRepo.open(ops.root)


def add(path: str, text: str) -> Mutation:
    def mutate(view: StateView) -> dict[str, bytes | None]:
        return {path: text.encode()}

    return mutate


# -- commits without a checkout -------------------------------------------------------------


def test_commit_files_adds_replaces_and_removes_nested_paths(ops: OpsRepoBuilder) -> None:
    ops.git("config", "user.name", "State Writer")
    ops.git("config", "user.email", "state@example.com")
    repo = GitRepo.open(ops.root)
    before = untouched(ops.root)
    first = repo.commit_files(
        None, {"a/b/c.yaml": b"c", "a/d.yaml": b"d", "top.yaml": b"t"}, "first"
    )
    second = repo.commit_files(
        first, {"a/b/c.yaml": None, "a/d.yaml": b"D", "x/y/z.yaml": b"z", "gone": None}, "second"
    )

    assert repo.list_tree(first, "") == ["a/b/c.yaml", "a/d.yaml", "top.yaml"]
    assert repo.list_tree(second, "") == ["a/d.yaml", "top.yaml", "x/y/z.yaml"]
    assert repo.list_tree(second, "a") == ["a/d.yaml"]
    assert repo.list_tree(second, "a/b") == []
    assert repo.read_file(second, "a/d.yaml") == b"D"
    assert repo.read_file(second, "a/b/c.yaml") is None
    assert repo.parents(first) == []
    assert repo.parents(second) == [first]
    # The emptied folder a/b is gone; the untouched file keeps its blob.
    assert git(ops.root, "ls-tree", "-r", "-t", "--name-only", second).split() == [
        "a", "a/d.yaml", "top.yaml", "x", "x/y", "x/y/z.yaml",
    ]  # fmt: skip
    assert git(ops.root, "rev-parse", f"{first}:top.yaml") == git(
        ops.root, "rev-parse", f"{second}:top.yaml"
    )
    assert git(ops.root, "log", "-1", "--format=%an <%ae>|%s", second) == (
        "State Writer <state@example.com>|second"
    )
    assert repo.read_ref(REF) is None
    assert untouched(ops.root) == before


def test_commit_files_can_empty_the_tree_and_start_from_another_tree(repo: GitRepo) -> None:
    first = repo.commit_files(None, {"a/b.yaml": b"b"}, "first")
    emptied = repo.commit_files(first, {"a/b.yaml": None}, "emptied")
    assert repo.list_tree(emptied, "") == []
    assert repo.tree_id(emptied) == "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

    based = repo.commit_files(emptied, {"c.yaml": b"c"}, "based", base_tree=repo.tree_id(first))
    assert repo.list_tree(based, "") == ["a/b.yaml", "c.yaml"]
    assert repo.changed_files(first, based) == {"c.yaml": b"c"}
    assert repo.changed_files(based, emptied) == {"a/b.yaml": None, "c.yaml": None}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"a/../b": b"x"}, "'a/../b': not a usable path inside a tree"),
        ({"/abs": b"x"}, "'/abs': not a usable path inside a tree"),
        ({".git/config": b"x"}, "'.git/config': not a usable path inside a tree"),
        ({"a": b"x", "a/b": b"y"}, "'a/b': a file and a folder at once in one commit"),
    ],
)
def test_commit_files_refuses_unusable_paths(
    repo: GitRepo, changes: dict[str, bytes | None], message: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        repo.commit_files(None, changes, "bad")
    assert str(caught.value) == message


# -- compare-and-swap --------------------------------------------------------------------------


def test_compare_and_swap_moves_a_ref_only_from_the_expected_value(
    ops: OpsRepoBuilder, repo: GitRepo
) -> None:
    one = repo.commit_files(None, {"n": b"1"}, "one")
    two = repo.commit_files(one, {"n": b"2"}, "two")

    assert repo.compare_and_swap(REF, None, one) is True
    assert repo.compare_and_swap(REF, None, two) is False
    assert repo.compare_and_swap(REF, two, one) is False
    assert repo.read_ref(REF) == one
    assert repo.compare_and_swap(REF, one, two) is True
    assert git(ops.root, "rev-parse", "runner-state") == two
    assert not (ops.root / ".git" / f"{REF}.lock").exists()

    git(ops.root, "pack-refs", "--all")  # the value now lives in packed-refs only
    assert not (ops.root / ".git" / REF).exists()
    assert repo.compare_and_swap(REF, one, one) is False
    assert repo.compare_and_swap(REF, two, one) is True
    assert git(ops.root, "rev-parse", "runner-state") == one


def test_compare_and_swap_waits_for_a_held_lock_and_breaks_a_stale_one(
    ops: OpsRepoBuilder, repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = repo.commit_files(None, {"n": b"1"}, "one")
    lock = ops.root / ".git" / f"{REF}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("")
    monkeypatch.setattr(gitrepo, "LOCK_WAIT", 0.2)
    with pytest.raises(Blocked) as caught:
        repo.compare_and_swap(REF, None, one)
    assert str(caught.value) == f"{lock}: held by another writer for over 0s"

    old = time.time() - 60
    os.utime(lock, (old, old))
    assert repo.compare_and_swap(REF, None, one) is True
    assert not lock.exists()


# -- the store -------------------------------------------------------------------------------


def test_update_commits_on_the_tip_and_skips_empty_or_unchanged_updates(
    ops: OpsRepoBuilder, repo: GitRepo
) -> None:
    store = StateStore(repo)
    assert (store.ref, store.tip()) == (REF, None)
    assert store.update(lambda view: {}, "nothing") is None

    first = store.update(add("changes/a.yaml", "a: 1\n"), "record a")
    assert first is not None
    assert store.tip() == first
    assert store.update(add("changes/a.yaml", "a: 1\n"), "same again") == first

    seen: list[StateView] = []

    def remove_a(view: StateView) -> dict[str, bytes | None]:
        seen.append(view)
        return {"changes/a.yaml": None, "changes/b.yaml": b"b: 2\n"}

    second = store.update(remove_a, "replace a by b")
    assert [v.tip for v in seen] == [first]
    assert seen[0].exists("changes/a.yaml")
    assert seen[0].list("changes") == ["changes/a.yaml"]
    assert store.list("changes") == ["changes/b.yaml"]
    assert store.read("changes/a.yaml") is None
    assert store.read("changes/a.yaml", at=first) == b"a: 1\n"
    assert git(ops.root, "log", "--format=%s", "runner-state").splitlines() == [
        "replace a by b",
        "record a",
    ]
    assert second == store.tip()


def test_four_processes_appending_concurrently_lose_and_duplicate_nothing(
    ops: OpsRepoBuilder, tmp_path: Path
) -> None:
    before = untouched(ops.root)
    run_together([[RECORDS, str(ops.root), "25", ""] for _ in range(4)], tmp_path)

    store = StateStore(GitRepo.open(ops.root))
    expected = sorted(f"records/{p}-{i:03}.yaml" for p in range(4) for i in range(25))
    assert store.list("records") == expected
    assert store.read("count") == b"100"  # every update saw every earlier one
    assert_sound_linear_history(ops.root, "runner-state", 100)
    assert untouched(ops.root) == before


def clone(tmp_path: Path, name: str, remote: Path | str) -> Path:
    builder = OpsRepoBuilder(tmp_path / name)
    builder.commit("initial")
    builder.git("remote", "add", "origin", str(remote))
    return builder.root


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    return bare


def test_a_push_that_loses_the_race_replays_its_own_records_on_the_new_tip(
    tmp_path: Path, remote: Path
) -> None:
    a = StateStore(GitRepo.open(clone(tmp_path, "a", remote)), remote="origin")
    b = StateStore(GitRepo.open(clone(tmp_path, "b", remote)), remote="origin")

    def record(name: str) -> Mutation:
        def mutate(view: StateView) -> dict[str, bytes | None]:
            seen = int(view.read("count") or b"0")
            return {f"records/{name}.yaml": b"x", "count": str(seen + 1).encode()}

        return mutate

    b.update(record("b1"), "b1")
    b.push()
    local_a = a.update(record("a1"), "a1")  # made before a has seen b1: diverged
    a.push()

    assert a.tip() != local_a
    assert a.list("records") == ["records/a1.yaml", "records/b1.yaml"]
    assert a.read("count") == b"2"
    assert git(remote, "rev-parse", "runner-state") == a.tip()
    assert git(remote, "log", "--format=%s", "runner-state").splitlines() == ["a1", "b1"]

    b.sync()  # behind: a fast-forward
    assert b.tip() == a.tip()
    b.push()  # nothing to send
    assert git(remote, "rev-parse", "runner-state") == a.tip()


def test_push_ref_is_a_fast_forward_compare_and_swap(tmp_path: Path, remote: Path) -> None:
    repo = GitRepo.open(clone(tmp_path, "a", remote))
    one = repo.commit_files(None, {"n": b"1"}, "one")
    two = repo.commit_files(one, {"n": b"2"}, "two")
    elsewhere = repo.commit_files(None, {"n": b"3"}, "unrelated")

    assert repo.fetch_ref("origin", REF) is None
    assert repo.push_ref("origin", REF, None, one) is True
    assert repo.push_ref("origin", REF, None, two) is False  # the remote has it by now
    assert repo.push_ref("origin", REF, one, elsewhere) is False  # not a fast-forward
    assert repo.push_ref("origin", REF, one, two) is True
    assert git(remote, "rev-parse", "runner-state") == two
    assert repo.read_ref("refs/remotes/origin/runner-state") == two
    assert repo.fetch_ref("origin", REF) == two
    assert repo.is_ancestor(one, two)
    assert not repo.is_ancestor(two, one)
    assert repo.read_ref(REF) is None  # pushing moved no local branch
    assert_sound_linear_history(remote, "runner-state", 2)

    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(RunnerError) as caught:
        repo.push_ref(str(plain), REF, None, one)
    assert str(caught.value).startswith(f"{plain}: not a git repository to push to: ")


def test_a_diverged_sync_carries_other_local_commits_over_and_the_remote_wins_a_conflict(
    tmp_path: Path, remote: Path
) -> None:
    a_clone = GitRepo.open(clone(tmp_path, "a", remote))
    a_this = StateStore(a_clone, remote="origin")
    a_other = StateStore(a_clone, remote="origin")  # another process sharing the clone
    b = StateStore(GitRepo.open(clone(tmp_path, "b", remote)), remote="origin")

    def write(**files: str) -> Mutation:
        def mutate(view: StateView) -> dict[str, bytes | None]:
            return {f"{k.replace('_', '/')}.yaml": v.encode() for k, v in files.items()}

        return mutate

    b.update(write(records_b="b", leases_x="holder: b"), "b")
    b.push()
    a_other.update(write(records_other="o"), "other")
    a_other.update(write(records_lost="l", leases_x="holder: other"), "other's lease")
    a_this.update(write(records_this="t"), "this")
    a_this.push()

    # "other" is carried over; "other's lease" touched a file b changed too: b wins, and that
    # commit is left out whole (its record without its lease would be half a decision)
    assert git(remote, "log", "--format=%s", "runner-state").splitlines() == ["this", "other", "b"]
    assert a_this.list("records") == [
        "records/b.yaml", "records/other.yaml", "records/this.yaml",
    ]  # fmt: skip
    assert a_this.read("leases/x.yaml") == b"holder: b"
    a_other.push()  # nothing left to send: what it decided on a stale view stays lost
    assert a_this.read("records/lost.yaml") is None
    assert a_this.read("leases/x.yaml") == b"holder: b"
    assert git(remote, "rev-parse", "runner-state") == a_clone.read_ref(REF)


def test_two_clones_pushing_concurrently_both_end_on_the_remote(
    tmp_path: Path, remote: Path
) -> None:
    clones = [clone(tmp_path, name, remote) for name in ("a", "b")]
    run_together([[RECORDS, str(c), "10", "origin"] for c in clones], tmp_path)

    reader = StateStore(GitRepo.open(clone(tmp_path, "reader", remote)), remote="origin")
    reader.sync()
    expected = sorted(f"records/{p}-{i:03}.yaml" for p in range(2) for i in range(10))
    assert reader.list("records") == expected
    assert reader.read("count") == b"20"
    assert_sound_linear_history(remote, "runner-state", 20)
    assert git(remote, "for-each-ref", "--format=%(refname)") == REF  # no temporary refs left


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A bare repository served by ``git daemon`` (push enabled): libgit2's network transport,
    where the server, not this code, checks each update against the old value."""
    served = tmp_path / "served"
    subprocess.run(["git", "init", "-q", "--bare", str(served / "remote.git")], check=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = ["git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack"]
    argv += [f"--base-path={served}", "--listen=127.0.0.1", f"--port={port}", str(served)]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.skip("git daemon is not available")
                time.sleep(0.05)
        yield f"git://127.0.0.1:{port}/remote.git", served / "remote.git"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_clones_pushing_concurrently_over_the_git_protocol_lose_nothing(
    tmp_path: Path, daemon: tuple[str, Path]
) -> None:
    url, bare = daemon
    clones = [clone(tmp_path, name, url) for name in ("a", "b", "c")]
    run_together([[RECORDS, str(c), "8", "origin"] for c in clones], tmp_path)

    expected = sorted(f"records/{p}-{i:03}.yaml" for p in range(3) for i in range(8))
    assert git(bare, "ls-tree", "-r", "--name-only", "runner-state", "records/").split() == (
        expected
    )
    assert git(bare, "show", "runner-state:count") == "24"
    assert_sound_linear_history(bare, "runner-state", 24)


# -- leases ----------------------------------------------------------------------------------


def test_lease_file_is_stable_yaml(ops: OpsRepoBuilder, repo: GitRepo) -> None:
    store = StateStore(repo)
    ours, blocking = try_acquire(store, "/projects/pay", "host:1:aa", "c-1", 60, now=T0)
    assert blocking is None
    assert ours == Lease("/projects/pay", "host:1:aa", "c-1", T0, T0 + timedelta(seconds=60))
    assert store.read("leases/projects/pay.yaml") == (
        b"acquired: '2026-03-01T10:00:00.000+00:00'\n"
        b"change: c-1\n"
        b"expires: '2026-03-01T10:01:00.000+00:00'\n"
        b"holder: host:1:aa\n"
        b"node: /projects/pay\n"
    )
    assert read_lease(store, "/projects/pay") == ours
    assert git(ops.root, "log", "-1", "--format=%s", "runner-state") == (
        "lease /projects/pay: taken by host:1:aa for c-1"
    )


def test_lease_blocks_expires_and_is_taken_over(repo: GitRepo) -> None:
    store = StateStore(repo)
    first, _ = try_acquire(store, "/projects/pay", "a", "c-a", 60, now=T0)
    assert first is not None
    assert first.took_over is None

    again, _ = try_acquire(store, "/projects/pay", "a", "c-a", 60, now=T0 + timedelta(seconds=10))
    assert again is not None
    assert again.acquired == T0
    assert again.took_over is None

    mine, blocking = try_acquire(
        store, "/projects/pay", "b", "c-b", 60, now=T0 + timedelta(seconds=30)
    )
    assert (mine, blocking) == (None, read_lease(store, "/projects/pay"))
    assert blocking is not None
    assert blocking.holder == "a"

    late = T0 + timedelta(seconds=71)
    taken, blocking = try_acquire(store, "/projects/pay", "b", "c-b", 60, now=late)
    assert blocking is None
    assert taken is not None
    assert (taken.holder, taken.change, taken.acquired) == ("b", "c-b", late)
    assert taken.took_over == again  # the dead holder's lease, so its change can be aborted
    assert try_acquire(store, "/projects/other", "a", "c-a", 60, now=late)[0] is not None


def test_lease_renew_release_and_force_unlock(repo: GitRepo) -> None:
    store = StateStore(repo)
    lease, _ = try_acquire(store, "/projects/pay", "a", "c-a", 60, now=T0)
    assert lease is not None

    renewed = renew(store, lease, 60, now=T0 + timedelta(seconds=20))
    assert renewed == Lease("/projects/pay", "a", "c-a", T0, T0 + timedelta(seconds=80))

    release(store, Lease("/projects/pay", "b", "c-b", T0, T0))  # not b's: nothing happens
    assert read_lease(store, "/projects/pay") == renewed
    release(store, renewed)
    assert read_lease(store, "/projects/pay") is None
    assert store.list("leases") == []
    with pytest.raises(LeaseLost) as caught:
        renew(store, renewed, 60)
    assert str(caught.value) == "lease on /projects/pay lost by a: now released"

    stolen, _ = try_acquire(store, "/projects/pay", "b", "c-b", 60, now=T0)
    assert force_unlock(store, "/projects/pay") == stolen
    assert force_unlock(store, "/projects/pay") is None
    assert read_lease(store, "/projects/pay") is None


def test_renew_after_a_takeover_is_refused(repo: GitRepo) -> None:
    store = StateStore(repo)
    lease, _ = try_acquire(store, "/projects/pay", "a", "c-a", 60, now=T0)
    assert lease is not None
    try_acquire(store, "/projects/pay", "b", "c-b", 60, now=T0 + timedelta(minutes=5))
    with pytest.raises(LeaseLost) as caught:
        renew(store, lease, 60, now=T0 + timedelta(minutes=5))
    assert str(caught.value) == "lease on /projects/pay lost by a: now held by b"


def test_processes_racing_for_one_lease_have_exactly_one_winner(
    ops: OpsRepoBuilder, tmp_path: Path
) -> None:
    outputs = run_together([[LEASE, str(ops.root), ""] for _ in range(4)], tmp_path)
    winner = outputs.index("won")
    assert sorted(outputs) == sorted(["won"] + [f"blocked by holder-{winner}"] * 3)
    lease = read_lease(StateStore(GitRepo.open(ops.root)), "/projects/pay")
    assert lease is not None
    assert lease.holder == f"holder-{winner}"


def test_clones_racing_for_one_lease_through_the_remote_have_exactly_one_winner(
    tmp_path: Path, remote: Path
) -> None:
    clones = [clone(tmp_path, name, remote) for name in ("a", "b", "c")]
    outputs = run_together([[LEASE, str(c), "origin"] for c in clones], tmp_path)
    winner = outputs.index("won")
    assert sorted(outputs) == sorted(["won"] + [f"blocked by holder-{winner}"] * 2)
    reader = StateStore(GitRepo.open(clone(tmp_path, "reader", remote)), remote="origin")
    reader.sync()
    lease = read_lease(reader, "/projects/pay")
    assert lease is not None
    assert lease.holder == f"holder-{winner}"
