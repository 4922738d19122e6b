"""Secrets during `runner apply`: a step gets the real value, nothing else ever shows it.

SPEC 2.3/2.4: `!secret NAME` is a reference, resolved only when a step runs, from
`RUNNER_SECRET_<NAME>` or `--secrets-file`. `${{ secrets.NAME }}` (and a property holding a
secret) becomes a reference to an environment variable, so the value is never on a command line;
every log line is masked, a value split across two output chunks included; outputs, records,
errors, plans and every other command's output show `***` instead.

One ops repo, one run: project `ops` holds `token: !secret TOKEN` (from the environment) and
`db.password: !secret DB_PASSWORD` (from a secrets file). Asset `api` receives them and prints
them every way a step can; asset `worker` fails with the secret on stderr. Then everything the
runner wrote or printed is searched for both values.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.functional.test_apply_failures import (
    Lab,
    git,
    make_repo,
    node,
    processes_with,
    state_records,
    step,
    steps_of,
)
from tests.support.opsrepo import Result

TOKEN = "s3cr3t-value-xyz"  # RUNNER_SECRET_TOKEN
DB_PASSWORD = "p4ss-from-file-qrs"  # in the --secrets-file
SECRETS = (TOKEN, DB_PASSWORD)
ENV = {"RUNNER_SECRET_TOKEN": TOKEN}

OUT = "${{ properties.out }}"


def sha256_to(name: str, what: str) -> str:
    """Shell: write the sha256 of ``what`` (a shell word) to ``<out>/<name>``."""
    return f"printf %s {what} | sha256sum | cut -d' ' -f1 > {OUT}/{name}"


API_STEPS: list[dict[str, Any]] = [
    {
        "name": "receive",  # the step gets the real values, however it asks for them
        "run": "; ".join(
            [
                sha256_to("secrets.token", "${{ secrets.TOKEN }}"),
                sha256_to("properties.token", "${{ properties.token }}"),
                sha256_to("properties.db.password", "${{ properties.db.password }}"),
                sha256_to("secrets.db_password", "${{ secrets.DB_PASSWORD }}"),
                f'{OUT}/python -c "import json, os, sys; '
                "p = json.load(open(os.environ['RUNNER_PROPERTIES'])); "
                "sys.stdout.write(p['token'])\" | sha256sum | cut -d' ' -f1 "
                f"> {OUT}/file.token",
                f'echo "$RUNNER_PROPERTIES" > {OUT}/properties.path',
                f'stat -c %a "$RUNNER_PROPERTIES" > {OUT}/properties.mode',
            ]
        ),
    },
    {
        "name": "hold",  # keeps running while the test looks at every command line
        "run": f"echo $$ > {OUT}/hold.pid; t=${{{{ secrets.TOKEN }}}}; sleep 1.5",
    },
    {
        "name": "echo",
        "run": 'echo "token=${{ secrets.TOKEN }} prop=${{ properties.token }} '
        'db=${{ properties.db.password }}"; echo "on stderr: ${{ secrets.TOKEN }}" >&2',
    },
    {
        "name": "split",  # the value in two writes 0.2 s apart: two chunks for the runner
        "run": 't=${{ secrets.TOKEN }}; printf %s "$t" | head -c 7; sleep 0.2; '
        'printf "%s\\n" "$t" | tail -c +8',
    },
    {
        "name": "outputs",
        "run": 't=${{ secrets.TOKEN }}; echo "api_key=$t" >> "$RUNNER_OUTPUTS"; '
        'printf \'{"json_key": "%s"}\\n\' "$t" >> "$RUNNER_OUTPUTS"; '
        'echo "endpoint=https://api.internal" >> "$RUNNER_OUTPUTS"',
    },
]
WORKER_STEPS: list[dict[str, Any]] = [
    {"name": "login", "run": 'echo "cannot log in as ${{ secrets.TOKEN }}" >&2; exit 1'},
    # A whole mapping holding a secret cannot go on a command line: the step errors.
    {"name": "describe", "run": "echo ${{ properties.db }}", "if": "always()"},
]

PROJECT = """\
name: Ops
properties:
  token: !secret TOKEN
  db: {host: db.internal, password: !secret DB_PASSWORD}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> SecretRun:
    tmp_path = tmp_path_factory.mktemp("secrets")
    lab = make_repo(
        tmp_path,
        {"app": API_STEPS, "broken": WORKER_STEPS},
        {"api": {"template": "app"}, "worker": {"template": "broken"}},
        settings={"parallelism": 1},
    )
    (lab.out / "python").symlink_to(sys.executable)
    lab.repo.write("projects/ops/project.yaml", PROJECT)
    lab.repo.commit("secrets")
    secrets_file = tmp_path / "secrets.yaml"
    secrets_file.write_text(f'DB_PASSWORD: "{DB_PASSWORD}"\n')
    return SecretRun(lab, secrets_file)


class SecretRun:
    """The one apply all tests look at, started on first use."""

    def __init__(self, lab: Lab, secrets_file: Path) -> None:
        self.lab = lab
        self.secrets_file = secrets_file
        self.outputs: list[Result] = []  # every command's output, to search
        self.plans = [
            self.cli("plan"),
            self.cli("plan", "--format", "json"),
            self.cli("plan", "--format", "markdown"),
            self.cli("plan", "--output", str(lab.out / "plan.json")),
        ]
        self.command_lines: list[bytes] = []
        self.step_command_line = b""
        self.apply = self._apply()

    def cli(self, *args: str) -> Result:
        result = self.lab.runner(*args, env=ENV)
        self.outputs.append(result)
        return result

    def _apply(self) -> Result:
        args = ["apply", "--keep-going", "--secrets-file", str(self.secrets_file)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner", *args],
            cwd=self.lab.repo.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **ENV},
        )
        try:
            pid_file = self.lab.out / "hold.pid"
            deadline = time.monotonic() + 30
            while not pid_file.exists() or not pid_file.read_text().strip():
                assert time.monotonic() < deadline, "the `hold` step never started"
                time.sleep(0.05)
            self.command_lines = _all_command_lines()
            step_pid = int(pid_file.read_text())
            self.step_command_line = Path(f"/proc/{step_pid}/cmdline").read_bytes()
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            proc.kill()
            proc.wait()
        result = Result(proc.returncode, stdout, stderr)
        self.outputs.append(result)
        return result


def _all_command_lines() -> list[bytes]:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes())
            except OSError:
                continue
    return lines


def leaks(text: str | bytes) -> list[str]:
    """Which secret values ``text`` shows."""
    data = text.encode() if isinstance(text, str) else text
    return [s for s in SECRETS if s.encode() in data]


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# --- the step gets the real values --------------------------------------------------------


def test_the_step_receives_the_real_secret_values(run: SecretRun) -> None:
    out = run.lab.out
    assert (out / "secrets.token").read_text().strip() == sha(TOKEN)
    assert (out / "properties.token").read_text().strip() == sha(TOKEN)
    assert (out / "properties.db.password").read_text().strip() == sha(DB_PASSWORD)
    assert (out / "secrets.db_password").read_text().strip() == sha(DB_PASSWORD)
    assert (out / "file.token").read_text().strip() == sha(TOKEN)


def test_the_properties_file_is_private_and_removed_after_the_run(run: SecretRun) -> None:
    assert (run.lab.out / "properties.mode").read_text().strip() == "600"
    assert not Path((run.lab.out / "properties.path").read_text().strip()).exists()


def test_the_run_went_as_expected(run: SecretRun) -> None:
    assert run.apply.exit_code == 1, run.apply.stderr
    api = run.lab.record("api")
    assert api["status"] == "success"
    worker = run.lab.record("worker")
    assert steps_of(worker) == {"login": "error", "describe": "error"}
    assert "${{ properties.db }}" in step(worker, "describe")["error"]


# --- the values never show ----------------------------------------------------------------


def test_no_command_line_shows_a_secret_while_a_step_runs(run: SecretRun) -> None:
    assert b"RUNNER_SECRET_TOKEN" in run.step_command_line  # the shell got a reference
    assert leaks(run.step_command_line) == []
    assert [line for line in run.command_lines if leaks(line)] == []
    assert processes_with(TOKEN) == []


def test_logs_mask_secrets_on_stdout_stderr_and_split_across_two_writes(run: SecretRun) -> None:
    api = run.lab.record("api")["id"]
    echo = run.cli("changes", "logs", api, "--step", "echo").stdout
    assert "token=*** prop=*** db=***" in echo
    assert "on stderr: ***" in echo
    split = run.cli("changes", "logs", api, "--step", "split").stdout
    assert split == "==> split <==\n***\n"
    worker = run.lab.record("worker")["id"]
    login = run.cli("changes", "logs", worker, "--step", "login").stdout
    assert "cannot log in as ***" in login


def test_outputs_holding_a_secret_are_recorded_masked(run: SecretRun) -> None:
    outputs = step(run.lab.record("api"), "outputs")["outputs"]
    assert outputs == {"api_key": "***", "json_key": "***", "endpoint": "https://api.internal"}
    recorded = git(
        run.lab.repo.root,
        "show",
        "runner-state:outputs/projects/ops/environments/dev/assets/api.yaml",
    )
    assert "endpoint: https://api.internal" in recorded
    assert leaks(recorded) == []


def test_no_command_prints_a_secret(run: SecretRun) -> None:
    lab = run.lab
    api, worker = lab.record("api")["id"], lab.record("worker")["id"]
    for args in [
        ("changes", "list"),
        ("changes", "list", "--format", "json"),
        ("changes", "show", worker),
        ("changes", "show", api, "--format", "json"),
        ("changes", "show", worker, "--format", "yaml"),
        ("changes", "logs", api),
        ("changes", "logs", worker),
        ("properties", node("api"), "--format", "yaml"),
        ("properties", node("api"), "--explain"),
        ("properties", node("api"), "--explain", "--format", "json"),
        ("plan", "--format", "json"),  # after the run: outputs recorded
    ]:
        run.cli(*args)
    assert [r.exit_code for r in run.plans] == [0] * len(run.plans)
    assert "token" in run.plans[1].stdout  # the plans did show the properties, masked
    for result in run.outputs:
        assert leaks(result.stdout) == [], result.stdout
        assert leaks(result.stderr) == [], result.stderr
    assert leaks((lab.out / "plan.json").read_bytes()) == []


def test_no_commit_or_object_in_the_repository_holds_a_secret(run: SecretRun) -> None:
    root = run.lab.repo.root
    assert len(state_records(root)) == 2
    history = git(root, "log", "-p", "--format=%H %an <%ae>%n%B", "runner-state")
    assert "logs/" in history
    assert leaks(history) == []
    # Every object, reachable or not (a commit that lost a race included).
    objects = subprocess.run(
        ["git", "cat-file", "--batch-all-objects", "--batch"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout
    assert leaks(objects) == []


# --- a secret where a name goes -----------------------------------------------------------


def test_an_output_named_after_a_secret_is_masked_too(tmp_path: Path) -> None:
    steps = [
        {
            "name": "outputs",
            "run": 't=${{ secrets.TOKEN }}; printf \'{"%s": "1"}\\n\' "$t" >> "$RUNNER_OUTPUTS"',
        }
    ]
    lab = make_repo(tmp_path, {"app": steps}, {"api": {"template": "app"}})

    applied = lab.runner("apply", env=ENV)

    assert applied.exit_code == 0, applied.stderr
    history = git(lab.repo.root, "log", "-p", "runner-state")
    assert leaks(history) == []
    assert leaks(lab.runner("properties", node("api"), "--format", "json").stdout) == []
