"""The bad-input corpus (SPEC 5): every malformed ops repo is refused with exit code 3, one
``file:line: message`` line per problem, and nothing is executed or committed.

Each case starts from ``MINIMAL`` (a valid ops repo, committed by the ``ops`` fixture), applies
its edits, runs the real CLI as a subprocess and checks the *whole* stderr: every problem line in
order (sorted by file, then line) and the summary line. The expected lines are what a user should
see: the file, and the line of the key (or list item) that is wrong.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.opsrepo import OpsRepoBuilder, Result

CODE = "^[a-z0-9][a-z0-9_-]{0,62}$"
TEMPLATE_REF = "^[a-z0-9][a-z0-9_-]{0,62}(@[A-Za-z0-9][A-Za-z0-9_.-]{0,62})?$"
DURATION = "^[0-9]+(\\.[0-9]+)?(ms|s|m|h)?$"
ASSET_KEYS = "depends_on, description, name, properties, template"
REGULAR_ONLY = "the runner reads regular files only"
ONE_MIB = 1_048_576

TEMPLATE = "templates/web/template.yaml"
PROJECT = "projects/pay/project.yaml"
DEV = "projects/pay/environments/dev/environment.yaml"
PROD = "projects/pay/environments/prod/environment.yaml"
DEV_API = "projects/pay/environments/dev/assets/api.yaml"
PROD_API = "projects/pay/environments/prod/assets/api.yaml"
PROD_DB = "projects/pay/environments/prod/assets/db.yaml"
PROD_CACHE = "projects/pay/environments/prod/assets/cache.yaml"
RELEASE = "projects/pay/workflows/release.yaml"

DEV_ENV = "/projects/pay/environments/dev"
PROD_ENV = "/projects/pay/environments/prod"
PROD_ASSETS = f"{PROD_ENV}/assets"


def template_with(actions: str, head: str = "") -> str:
    """MINIMAL's template with other ``actions`` (written at 2 spaces, as under ``actions:``) and
    extra top-level keys ``head`` right after ``name``. Without ``head``, ``actions:`` is line 11
    and the first action's name line 12, exactly as in MINIMAL."""
    return (
        "name: Web service\n" + head + "properties:\n"
        "  replicas: 2\n"
        '  image: {repository: acme/web, tag: "1.0.0"}\n'
        "schema:\n"
        "  type: object\n"
        "  required: [image]\n"
        "  properties:\n"
        "    replicas: {type: integer, minimum: 1}\n"
        "on_change: deploy\n"
        "actions:\n" + actions
    )


def alias_bomb() -> str:
    """Billion laughs: nine levels of ten aliases each, 10**9 nodes once expanded."""
    lines = ["template: web", "properties:", "  a: &a [" + ", ".join(["lol"] * 10) + "]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"  {name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def padded_asset(size: int) -> str:
    """A valid asset file of exactly ``size`` bytes (the padding is a YAML comment)."""
    head = "template: web\n# "
    return head + "x" * (size - len(head) - 1) + "\n"


@dataclass(frozen=True)
class Case:
    """One broken ops repo: MINIMAL plus ``files`` written, ``remove`` deleted, ``symlinks``
    created (link → target, as written in the link) and ``setup`` run; committed first when
    ``commit``; then ``runner validate`` (with ``--rev rev`` when set)."""

    id: str
    expected: tuple[str, ...]
    files: Mapping[str, str | bytes] = field(default_factory=dict)
    remove: tuple[str, ...] = ()
    symlinks: Mapping[str, str] = field(default_factory=dict)
    setup: Callable[[OpsRepoBuilder], None] | None = None
    commit: bool = False
    rev: str | None = None


MULTI_FILES: dict[str, str | bytes] = {
    # two schema problems in one file: line order is not message order
    PROD_API: """\
        template: Web@
        depends_on: db
        """,
    # line 3: duplicate key
    PROD_DB: """\
        template: web
        properties: {a: 1}
        properties: {b: 2}
        """,
    # uses version v1, whose rev does not exist
    DEV_API: "template: web@v1\n",
    # line 3: unknown group
    PROJECT: """\
        name: Payments
        settings:
          requires_approval_from: [release-manager]
        """,
    # line 3: unknown rev; line 12: unknown on_change action (3 < 12, though "3" > "12")
    TEMPLATE: template_with(
        "  deploy:\n    steps:\n      - {name: build, run: echo build}\n",
        head="versions:\n  v1: {rev: nope}\n",
    ).replace("on_change: deploy", "on_change: deploi"),
}
MULTI_EXPECTED: tuple[str, ...] = (
    f"{PROD_API}:1: template: 'Web@' does not match {TEMPLATE_REF}",
    f"{PROD_API}:2: depends_on: 'db' is not of type 'array'",
    f"{PROD_DB}:3: duplicate key 'properties' (first defined at line 2)",
    f"{PROJECT}:3: unknown group 'release-manager' (groups: release-managers)",
    f"{TEMPLATE}:3: version v1 (rev nope): unknown revision 'nope'",
    f"{TEMPLATE}:12: unknown action 'deploi' (actions: deploy)",
)


def _tag_v1(ops: OpsRepoBuilder) -> None:
    ops.git("tag", "v1")


CASES: list[Case] = [
    # --- YAML syntax ----------------------------------------------------------------------------
    Case(
        "yaml-unclosed-flow-mapping",
        files={DEV_API: 'template: web\nproperties:\n  image: {tag: "1.1.0"\n'},
        expected=(
            # the flow mapping opened on line 3 is never closed; line 4 does not exist
            f"{DEV_API}:3: YAML syntax error: did not find expected ',' or '}}' "
            "(while parsing a flow mapping)",
        ),
    ),
    Case(
        "yaml-bad-indentation",
        files={DEV_API: 'template: web\nproperties:\n  image:\n    tag: "1.1.0"\n   extra: 1\n'},
        expected=(
            f"{DEV_API}:5: YAML syntax error: did not find expected key "
            "(while parsing a block mapping)",
        ),
    ),
    Case(
        "yaml-tab-indentation",
        files={DEV_API: 'template: web\nproperties:\n\timage: {tag: "1.1.0"}\n'},
        expected=(
            f"{DEV_API}:3: YAML syntax error: found character that cannot start any token "
            "(while scanning for the next token)",
        ),
    ),
    Case(
        "yaml-unclosed-quote",
        files={DEV_API: 'template: "web\nproperties: {}\n'},
        expected=(
            # the quote opened on line 1 is never closed; the file has two lines
            f"{DEV_API}:1: YAML syntax error: found unexpected end of stream "
            "(while scanning a quoted scalar)",
        ),
    ),
    Case(
        "yaml-mapping-value-in-scalar",
        files={DEV_API: "template: web: x\n"},
        expected=(
            f"{DEV_API}:1: YAML syntax error: mapping values are not allowed in this context",
        ),
    ),
    # --- duplicate keys -------------------------------------------------------------------------
    Case(
        "duplicate-key-top-level",
        files={DEV_API: 'template: web\nproperties:\n  image: {tag: "1.1.0"}\ntemplate: web\n'},
        expected=(f"{DEV_API}:4: duplicate key 'template' (first defined at line 1)",),
    ),
    Case(
        "duplicate-key-nested",
        files={DEV: "name: Development\nproperties:\n  replicas: 1\n  owner: x\n  replicas: 2\n"},
        expected=(f"{DEV}:5: duplicate key 'replicas' (first defined at line 3)",),
    ),
    # --- schema violations ----------------------------------------------------------------------
    Case(
        "schema-unknown-key-typo",
        files={PROD_API: 'template: web\ndepend_on: [db]\nproperties:\n  image: {tag: "1.0.9"}\n'},
        expected=(f"{PROD_API}:2: unknown key 'depend_on' (allowed: {ASSET_KEYS})",),
    ),
    Case(
        "schema-wrong-type",
        files={PROD_API: 'template: web\ndepends_on: db\nproperties:\n  image: {tag: "1.0.9"}\n'},
        expected=(f"{PROD_API}:2: depends_on: 'db' is not of type 'array'",),
    ),
    Case(
        "schema-bad-code-in-folder-name",
        files={"projects/Pay/project.yaml": "name: Payments again\n"},
        expected=(f"projects/Pay/project.yaml: project code 'Pay' must match {CODE}",),
    ),
    Case(
        "schema-bad-template-reference",
        files={DEV_API: 'template: Web@\nproperties:\n  image: {tag: "1.1.0"}\n'},
        expected=(f"{DEV_API}:1: template: 'Web@' does not match {TEMPLATE_REF}",),
    ),
    Case(
        "schema-outputs-in-properties",
        files={DEV_API: "template: web\nproperties:\n  replicas: 1\n  outputs: {url: x}\n"},
        expected=(f"{DEV_API}:4: properties: the key 'outputs' is reserved for recorded outputs",),
    ),
    Case(
        # a broken project.yaml must not hide (or crash on) the nodes below it
        "schema-error-in-project-with-nodes",
        files={PROJECT: "name: Payments\nsettings: {parallelism: 0}\n"},
        expected=(f"{PROJECT}:2: settings.parallelism: 0 is less than the minimum of 1",),
    ),
    Case(
        "schema-missing-template",
        files={DEV_API: 'name: API\nproperties:\n  image: {tag: "1.1.0"}\n'},
        expected=(f"{DEV_API}:1: 'template' is a required property",),
    ),
    Case(
        "schema-empty-asset-file",
        files={DEV_API: ""},
        expected=(f"{DEV_API}:1: 'template' is a required property",),
    ),
    Case(
        "schema-document-is-a-list",
        files={DEV_API: "- template: web\n"},
        expected=(f"{DEV_API}:1: [{{'template': 'web'}}] is not of type 'object'",),
    ),
    Case(
        "schema-step-with-run-and-action",
        files={
            TEMPLATE: template_with(
                "  deploy:\n"
                "    steps:\n"
                "      - name: build\n"
                "        run: echo build\n"
                "        action: deploy\n"
            )
        },
        expected=(
            f"{TEMPLATE}:14: actions.deploy.steps.0: needs exactly one of run, action, steps; "
            "found run, action",
        ),
    ),
    Case(
        "schema-bad-if",
        files={
            TEMPLATE: template_with(
                "  deploy:\n"
                "    steps:\n"
                "      - name: build\n"
                "        run: echo build\n"
                "        if: on_failure()\n"
            )
        },
        expected=(
            f"{TEMPLATE}:16: actions.deploy.steps.0.if: 'on_failure()' is not one of "
            "['success()', 'failure()', 'always()']",
        ),
    ),
    Case(
        "schema-bad-duration",
        files={
            TEMPLATE: template_with(
                "  deploy:\n"
                "    steps:\n"
                "      - name: build\n"
                "        run: echo build\n"
                "        timeout: 10 minutes\n"
            )
        },
        expected=(
            f"{TEMPLATE}:16: actions.deploy.steps.0.timeout: '10 minutes' does not match "
            f"{DURATION}",
        ),
    ),
    # --- unknown references ---------------------------------------------------------------------
    Case(
        "unknown-template",
        files={DEV_API: 'template: webb\nproperties:\n  image: {tag: "1.1.0"}\n'},
        expected=(f"{DEV_API}:1: unknown template 'webb' (templates: web)",),
    ),
    Case(
        "unknown-template-version",
        files={DEV_API: 'template: web@v9\nproperties:\n  image: {tag: "1.1.0"}\n'},
        expected=(f"{DEV_API}:1: template web has no version 'v9' (versions: none)",),
    ),
    Case(
        "unknown-pinned-rev",
        files={
            TEMPLATE: template_with(
                "  deploy:\n    steps:\n      - {name: build, run: echo build}\n",
                head="versions:\n  v1: {rev: v1}\n  v2: {rev: no-such-tag}\n",
            ),
            PROD_API: "template: web@v1\ndepends_on: [db]\n",  # a good pin: no problem
            PROD_DB: "template: web@v2\n",
        },
        setup=_tag_v1,
        expected=(f"{TEMPLATE}:4: version v2 (rev no-such-tag): unknown revision 'no-such-tag'",),
    ),
    Case(
        "unknown-action-in-on-change",
        files={
            TEMPLATE: template_with(
                "  deploy:\n    steps:\n      - {name: build, run: echo build}\n"
            ).replace("on_change: deploy", "on_change: deploi")
        },
        expected=(f"{TEMPLATE}:10: unknown action 'deploi' (actions: deploy)",),
    ),
    Case(
        "unknown-child-action",
        files={
            TEMPLATE: template_with(
                "  deploy:\n"
                "    steps:\n"
                "      - name: build\n"
                "        run: echo build\n"
                "      - name: smoke\n"
                "        action: healthcheck\n"
            )
        },
        expected=(f"{TEMPLATE}:17: step smoke: unknown action 'healthcheck'",),
    ),
    Case(
        "needs-unknown-step",
        files={
            TEMPLATE: template_with(
                "  deploy:\n"
                "    steps:\n"
                "      - name: build\n"
                "        run: echo build\n"
                "      - name: roll\n"
                "        run: echo roll\n"
                "        needs: [biuld]\n"
            )
        },
        expected=(
            f"{TEMPLATE}:18: step roll: needs unknown step 'biuld' (steps here: build, roll)",
        ),
    ),
    Case(
        "duplicate-step-names",
        files={
            TEMPLATE: template_with(
                "  deploy:\n"
                "    steps:\n"
                "      - name: build\n"
                "        run: echo build\n"
                "      - name: build\n"
                "        run: echo again\n"
            )
        },
        expected=(f"{TEMPLATE}:16: action deploy: duplicate step name 'build' (first at line 14)",),
    ),
    Case(
        "step-needs-cycle",
        files={
            TEMPLATE: template_with(
                "  deploy:\n"
                "    steps:\n"
                "      - name: build\n"
                "        run: echo build\n"
                "        needs: [roll]\n"
                "      - name: roll\n"
                "        run: echo roll\n"
                "        needs: [build]\n"
            )
        },
        expected=(
            f"{TEMPLATE}:16: action deploy: step needs cycle: build → roll → build",
            f"{TEMPLATE}:19: action deploy: step needs cycle: build → roll → build",
        ),
    ),
    Case(
        "asset-depends-on-unknown-node",
        files={PROD_API: "template: web\ndepends_on: [db, cache]\n"},
        expected=(f"{PROD_API}:2: depends_on: unknown node {PROD_ASSETS}/cache",),
    ),
    Case(
        "asset-depends-on-cycle",
        files={
            PROD_DB: "template: web\ndepends_on: [cache]\n",
            PROD_CACHE: "name: Cache\ntemplate: web\ndepends_on: [api]\n",
        },
        expected=tuple(
            f"{file}:{line}: depends_on cycle: {PROD_ASSETS}/api → {PROD_ASSETS}/db → "
            f"{PROD_ASSETS}/cache → {PROD_ASSETS}/api"
            for file, line in ((PROD_API, 2), (PROD_CACHE, 3), (PROD_DB, 2))
        ),
    ),
    Case(
        "environment-depends-on-cycle",
        files={DEV: "name: Development\ndepends_on: [prod]\nproperties: {replicas: 1}\n"},
        expected=tuple(
            f"{file}:{line}: environment depends_on cycle: {DEV_ENV} → {PROD_ENV} → {DEV_ENV}"
            for file, line in ((DEV, 2), (PROD, 3))
        ),
    ),
    Case(
        "child-action-cycle",
        files={
            TEMPLATE: template_with(
                "  deploy:\n"
                "    steps:\n"
                "      - name: build\n"
                "        run: echo build\n"
                "      - name: smoke\n"
                "        action: healthcheck\n"
                "  healthcheck:\n"
                "    steps:\n"
                "      - name: redeploy\n"
                "        action: deploy\n"
            )
        },
        expected=(
            f"{TEMPLATE}:17: child action cycle: deploy → healthcheck → deploy",
            f"{TEMPLATE}:21: child action cycle: deploy → healthcheck → deploy",
        ),
    ),
    Case(
        "converged-properties-fail-template-schema",
        files={DEV: "name: Development\nproperties:\n  replicas: 0\n"},
        expected=(
            f"{DEV_API}:1: converged properties replicas: minimum 1 not satisfied by 0 "
            f"(schema of template web, set by environment {DEV}:3)",
        ),
    ),
    Case(
        "unknown-approval-group",
        files={
            PROD: "name: Production\ntype: production\ndepends_on: [dev]\n"
            "settings:\n  requires_approval_from: [release-manager]\n"
        },
        expected=(f"{PROD}:5: unknown group 'release-manager' (groups: release-managers)",),
    ),
    # --- hostile or broken files ----------------------------------------------------------------
    Case(
        "alias-bomb",
        files={DEV_API: alias_bomb()},
        expected=(f"{DEV_API}:1: aliases expand to more than 100000 nodes (an alias bomb?)",),
    ),
    Case(
        "oversized-file",
        files={DEV_API: padded_asset(ONE_MIB + 1)},
        expected=(
            f"{DEV_API}: file is {ONE_MIB + 1} bytes, over the limit of {ONE_MIB} "
            "(runner.yaml limits.max_file_bytes)",
        ),
    ),
    Case(
        "oversized-file-runner-yaml-limit",
        files={
            "runner.yaml": "parallelism: 2\ngroups: {release-managers: [alice]}\n"
            "limits: {max_file_bytes: 2000}\n",
            DEV_API: padded_asset(2001),
            PROD_DB: padded_asset(2000),  # exactly at the limit: fine
        },
        expected=(
            f"{DEV_API}: file is 2001 bytes, over the limit of 2000 "
            "(runner.yaml limits.max_file_bytes)",
        ),
    ),
    Case(
        "non-utf8",
        files={DEV_API: b"template: web\nname: caf\xe9\n"},
        expected=(f"{DEV_API}:2: not valid UTF-8 (byte 0xe9 at offset 23)",),
    ),
    Case(
        "symlinked-asset-file",
        remove=(PROD_DB,),
        symlinks={PROD_DB: "api.yaml"},
        expected=(f"{PROD_DB}: is a symlink; {REGULAR_ONLY}",),
    ),
    Case(
        "symlinked-asset-file-escaping-the-repo",
        remove=(PROD_DB,),
        symlinks={PROD_DB: "/etc/hostname"},
        expected=(f"{PROD_DB}: is a symlink; {REGULAR_ONLY}",),
    ),
    Case(
        "symlinked-asset-file-committed",
        remove=(PROD_DB,),
        symlinks={PROD_DB: "api.yaml"},
        commit=True,
        rev="HEAD",
        expected=(f"{PROD_DB}: is a symlink; {REGULAR_ONLY}",),
    ),
    Case(
        "symlinked-project-folder",
        symlinks={"projects/pay2": "pay"},
        expected=(f"projects/pay2: is a symlink; {REGULAR_ONLY}",),
    ),
    Case(
        "symlinked-project-folder-committed",
        symlinks={"projects/pay2": "pay"},
        commit=True,
        rev="HEAD",
        expected=(f"projects/pay2: is a symlink; {REGULAR_ONLY}",),
    ),
    Case(
        "misplaced-yml-extension",
        files={"projects/pay/environments/dev/assets/worker.yml": "template: web\n"},
        expected=(
            "projects/pay/environments/dev/assets/worker.yml: rename to .yaml "
            "(the runner reads .yaml files only)",
        ),
    ),
    Case(
        "asset-file-outside-the-layout",
        files={"projects/pay/environments/dev/worker.yaml": "template: web\n"},
        expected=(
            "projects/pay/environments/dev/worker.yaml: unexpected file: an environment folder "
            "holds environment.yaml and assets/",
        ),
    ),
    Case(
        "environment-folder-without-environment-yaml",
        files={"projects/pay/environments/qa/assets/api.yaml": "template: web\n"},
        expected=(
            "projects/pay/environments/qa/assets/api.yaml: "
            "projects/pay/environments/qa/environment.yaml is missing",
        ),
    ),
    # --- tags -----------------------------------------------------------------------------------
    Case(
        "unknown-tag",
        files={DEV_API: "template: web\nproperties:\n  image: !foo {tag: x}\n"},
        expected=(f"{DEV_API}:3: unknown tag !foo",),
    ),
    Case(
        "append-on-a-scalar",
        files={DEV_API: "template: web\nproperties:\n  regions: !append eu-west-2\n"},
        expected=(f"{DEV_API}:3: !append needs a list, found a scalar",),
    ),
    Case(
        "secret-with-a-bad-name",
        files={DEV_API: "template: web\nproperties:\n  token: !secret api-token\n"},
        expected=(f"{DEV_API}:3: !secret needs a secret name matching [A-Za-z_][A-Za-z0-9_]*",),
    ),
    # --- schedules and workflows ----------------------------------------------------------------
    Case(
        "bad-cron",
        files={
            "schedules.yaml": "- name: nightly\n"
            '  cron: "0 25 * * *"\n'
            f"  target: {PROD_ENV}\n"
            "  action: deploy\n"
        },
        expected=("schedules.yaml:2: cron '0 25 * * *': hour: '25' is outside 0-23",),
    ),
    Case(
        "unknown-time-zone-in-schedule",
        files={
            "schedules.yaml": "- name: nightly\n"
            '  cron: "0 2 * * *"\n'
            "  timezone: Australia/Melbun\n"
            f"  target: {PROD_ENV}\n"
            "  action: deploy\n"
        },
        expected=("schedules.yaml:3: unknown time zone 'Australia/Melbun'",),
    ),
    Case(
        "unknown-time-zone-in-runner-yaml",
        files={
            "runner.yaml": "parallelism: 2\ntimezone: Mars/Olympus\n"
            "groups: {release-managers: [alice]}\n"
        },
        expected=("runner.yaml:2: unknown time zone 'Mars/Olympus'",),
    ),
    Case(
        "workflow-unknown-node",
        files={
            RELEASE: "name: Release\n"
            "steps:\n"
            f"  - {{name: dev, change: {{target: {DEV_ENV}, action: deploy}}}}\n"
            "  - name: qa\n"
            "    needs: [dev]\n"
            "    change:\n"
            "      target: /projects/pay/environments/qa\n"
            "      action: deploy\n"
        },
        expected=(f"{RELEASE}:7: step qa: unknown node /projects/pay/environments/qa",),
    ),
    # --- several problems at once ---------------------------------------------------------------
    Case("several-problems-working-tree", files=MULTI_FILES, expected=MULTI_EXPECTED),
    Case(
        "several-problems-committed",
        files=MULTI_FILES,
        commit=True,
        rev="HEAD",
        expected=MULTI_EXPECTED,
    ),
]


def apply_case(ops: OpsRepoBuilder, case: Case) -> None:
    for path in case.remove:
        ops.remove(path)
    for path, text in case.files.items():
        ops.write(path, text)
    for link, target in case.symlinks.items():
        os.symlink(target, ops.root / link)
    if case.setup is not None:
        case.setup(ops)
    if case.commit:
        ops.commit("broken")


def summary(count: int, label: str) -> str:
    return f"{count} problem{'s' if count != 1 else ''} ({label})"


def label_of(ops: OpsRepoBuilder, rev: str | None) -> str:
    return "working tree" if rev is None else ops.git("rev-parse", rev)[:12]


def run_unchanged(ops: OpsRepoBuilder, *args: str) -> Result:
    """Run the CLI and check that it wrote nothing: refs and the work tree are as they were."""
    before = ops.snapshot_state()
    result = ops.runner(*args)
    assert ops.snapshot_state() == before, "the command changed refs or the work tree"
    return result


def rev_args(rev: str | None) -> tuple[str, ...]:
    return () if rev is None else ("--rev", rev)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused(ops: OpsRepoBuilder, case: Case) -> None:
    apply_case(ops, case)
    result = run_unchanged(ops, "validate", *rev_args(case.rev))
    expected = [*case.expected, summary(len(case.expected), label_of(ops, case.rev))]
    assert result.stderr.splitlines() == expected
    assert result.stderr.endswith("\n")
    assert result.stdout == ""
    assert result.exit_code == 3


def test_cases_cover_the_corpus() -> None:
    assert len(CASES) >= 35
    assert len({c.id for c in CASES}) == len(CASES)


# --- the same problems at a commit and in the working tree ------------------------------------


def test_committed_and_working_tree_report_the_same_problems(ops: OpsRepoBuilder) -> None:
    for path, text in MULTI_FILES.items():
        ops.write(path, text)
    head = ops.commit("broken")
    at_head = run_unchanged(ops, "validate", "--rev", "HEAD")
    on_disk = run_unchanged(ops, "validate")
    count = len(MULTI_EXPECTED)
    assert at_head.stderr.splitlines() == [*MULTI_EXPECTED, summary(count, head[:12])]
    assert on_disk.stderr.splitlines() == [*MULTI_EXPECTED, summary(count, "working tree")]
    assert (at_head.exit_code, on_disk.exit_code) == (3, 3)


def test_rev_reads_the_commit_not_the_working_tree(ops: OpsRepoBuilder) -> None:
    """A broken commit fixed in the working tree (and the other way round): each source
    reports only its own problems."""
    ops.write(PROD_API, "template: web\ndepends_on: db\n")
    head = ops.commit("broken")
    ops.write(PROD_API, "template: web\ndepends_on: [db]\n")
    ops.write(DEV_API, "template: webb\n")

    at_head = run_unchanged(ops, "validate", "--rev", "HEAD")
    assert at_head.stderr.splitlines() == [
        f"{PROD_API}:2: depends_on: 'db' is not of type 'array'",
        summary(1, head[:12]),
    ]
    assert at_head.exit_code == 3

    on_disk = run_unchanged(ops, "validate")
    assert on_disk.stderr.splitlines() == [
        f"{DEV_API}:1: unknown template 'webb' (templates: web)",
        summary(1, "working tree"),
    ]
    assert on_disk.exit_code == 3


# --- other formats and commands ---------------------------------------------------------------


@pytest.fixture
def multi(ops: OpsRepoBuilder) -> OpsRepoBuilder:
    for path, text in MULTI_FILES.items():
        ops.write(path, text)
    return ops


def split(line: str) -> tuple[str, int, str]:
    file, line_no, message = line.split(":", 2)
    return file, int(line_no), message.removeprefix(" ")


def test_validate_json(multi: OpsRepoBuilder) -> None:
    result = run_unchanged(multi, "validate", "--format", "json")
    assert result.exit_code == 3
    assert result.stderr == ""
    body: dict[str, Any] = json.loads(result.stdout)
    assert body["valid"] is False
    assert body["source"] == "working tree"
    assert body["problems"] == [
        {"file": file, "line": line, "message": message}
        for file, line, message in map(split, MULTI_EXPECTED)
    ]


def test_validate_github_annotations(multi: OpsRepoBuilder) -> None:
    result = run_unchanged(multi, "validate", "--format", "github")
    assert result.exit_code == 3
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        f"::error file={file},line={line}::{message}"
        for file, line, message in map(split, MULTI_EXPECTED)
    ]


def test_github_annotation_without_a_line(ops: OpsRepoBuilder) -> None:
    ops.write("projects/pay/environments/dev/assets/worker.yml", "template: web\n")
    result = run_unchanged(ops, "validate", "--format", "github")
    assert result.exit_code == 3
    assert result.stdout == (
        "::error file=projects/pay/environments/dev/assets/worker.yml::"
        "rename to .yaml (the runner reads .yaml files only)\n"
    )


@pytest.mark.parametrize("rev", [None, "HEAD"], ids=["working-tree", "rev-head"])
def test_properties_on_a_broken_repo(ops: OpsRepoBuilder, rev: str | None) -> None:
    for path, text in MULTI_FILES.items():
        ops.write(path, text)
    if rev is not None:
        ops.commit("broken")
    result = run_unchanged(ops, "properties", f"{DEV_ENV}/assets/api", *rev_args(rev))
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.splitlines() == [*MULTI_EXPECTED, "6 problems: nothing was run"]
