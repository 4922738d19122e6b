"""Build real ops repos in temporary folders and run the real CLI against them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

MINIMAL: dict[str, str] = {
    "runner.yaml": """\
        parallelism: 2
        groups: {release-managers: [alice]}
        """,
    "properties.yaml": """\
        org: acme
        regions: [eu-west-1]
        """,
    "templates/web/template.yaml": """\
        name: Web service
        properties:
          replicas: 2
          image: {repository: acme/web, tag: "1.0.0"}
        schema:
          type: object
          required: [image]
          properties:
            replicas: {type: integer, minimum: 1}
        on_change: deploy
        actions:
          deploy:
            steps:
              - name: build
                run: echo build
              - name: roll
                run: echo roll
        """,
    "projects/pay/project.yaml": """\
        name: Payments
        properties: {owner: team-pay}
        """,
    "projects/pay/environments/dev/environment.yaml": """\
        name: Development
        properties: {replicas: 1}
        """,
    "projects/pay/environments/prod/environment.yaml": """\
        name: Production
        type: production
        depends_on: [dev]
        properties: {replicas: 4}
        """,
    "projects/pay/environments/dev/assets/api.yaml": """\
        template: web
        properties:
          image: {tag: "1.1.0"}
        """,
    "projects/pay/environments/prod/assets/api.yaml": """\
        template: web
        depends_on: [db]
        properties:
          image: {tag: "1.0.9"}
        """,
    "projects/pay/environments/prod/assets/db.yaml": """\
        template: web
        """,
}


@dataclass(frozen=True)
class Result:
    exit_code: int
    stdout: str
    stderr: str


class OpsRepoBuilder:
    """A git repository in a temporary folder, written and committed with the git CLI."""

    def __init__(self, root: Path, files: dict[str, str] | None = None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        for path, text in (MINIMAL if files is None else files).items():
            self.write(path, text)

    @classmethod
    def existing(cls, root: Path) -> OpsRepoBuilder:
        """A builder over a repository made some other way (``runner init``)."""
        builder = cls.__new__(cls)
        builder.root = root
        return builder

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=self.root, check=True, capture_output=True, text=True
        )
        return done.stdout.strip()

    def write(self, path: str, text: str | bytes) -> Path:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(textwrap.dedent(text), "utf-8")
        return target

    def remove(self, path: str) -> None:
        (self.root / path).unlink()

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def runner(
        self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> Result:
        return run_cli(*args, cwd=cwd or self.root, env=env)

    def snapshot_state(self) -> tuple[str, str]:
        """Everything a command could have written: refs and the work tree's status."""
        refs = self.git("for-each-ref", "--format=%(refname) %(objectname)")
        status = self.git("status", "--porcelain", "--untracked-files=all")
        return refs, status


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Result:
    done = subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    return Result(done.returncode, done.stdout, done.stderr)
