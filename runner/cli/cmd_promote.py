"""``runner promote SOURCE_ENV TARGET_ENV``."""

from __future__ import annotations

import json
from typing import Any

import click

from runner.cli import Context, cli
from runner.cli.options import format_option
from runner.operations.promote import Copied, PromoteRequest, Promotion, promote
from runner.render import plan_json, plan_markdown, plan_text
from runner.render.plan_markdown import code
from runner.render.values import masked, scalar


@cli.command("promote")
@click.argument("source_env")
@click.argument("target_env")
@click.option(
    "--keys",
    default=None,
    metavar="KEY,...",
    help="Dotted keys to copy (default: every key the source asset files set).",
)
@click.option(
    "--branch",
    default=None,
    help="The new branch (default: promote/<project>-<source>-to-<target>-<yyyymmddHHMM>).",
)
@format_option("text", "json", "markdown")
@click.pass_obj
def promote_command(
    obj: Context, source_env: str, target_env: str, keys: str | None, branch: str | None, fmt: str
) -> None:
    """Copy properties from the assets of SOURCE_ENV to the same assets of TARGET_ENV, as one
    commit on a new branch (parent: HEAD), and print its plan. The work tree and the current
    branch are not touched; push the branch to open a pull request.

    Environments are node paths, such as /projects/pay/environments/staging.
    """
    wanted = tuple(k for k in (keys or "").split(",") if k.strip())
    if keys is not None and not wanted:
        wanted = (keys,)  # an empty --keys is reported by the operation, naming it
    result = promote(obj.ops, PromoteRequest(source_env, target_env, wanted, branch))
    if fmt == "json":
        click.echo(json.dumps(_to_dict(result), indent=2, ensure_ascii=False))
    elif fmt == "markdown":
        click.echo(_markdown(result), nl=False)
    else:
        click.echo(_text(result), nl=False)


def _old(copied: Copied) -> str:
    return scalar(copied.old) if copied.had_old else "(none)"


def _text(result: Promotion) -> str:
    lines = [f"Promote {result.source} → {result.target}"]
    lines += [
        f"  {c.asset}: {c.key}: {_old(c)} → {scalar(c.new)}  [{c.file}]" for c in result.copied
    ]
    lines += [f"  note: {note}" for note in result.notes]
    if result.commit is None or result.planned is None:
        lines.append("Nothing to promote: no commit made.")
        return "\n".join(lines) + "\n"
    lines.append(
        f"Branch {result.branch}: commit {result.commit[:12]} on HEAD {result.base[:12]}"
        " (work tree and current branch untouched)"
    )
    lines.append("")
    lines.append(plan_text.render(result.planned.plan, base_source="HEAD").rstrip("\n"))
    lines.append("")
    lines.append(f"Open a pull request: git push origin {result.branch}")
    return "\n".join(lines) + "\n"


def _to_dict(result: Promotion) -> dict[str, Any]:
    return {
        "source": result.source,
        "target": result.target,
        "base": result.base,
        "branch": result.branch,
        "commit": result.commit,
        "copied": [
            {
                "asset": c.asset,
                "file": c.file,
                "key": c.key,
                "old": masked(c.old) if c.had_old else None,
                "new": masked(c.new),
            }
            for c in result.copied
        ],
        "notes": list(result.notes),
        "plan": plan_json.plan_to_dict(result.planned.plan) if result.planned else None,
        "push": f"git push origin {result.branch}" if result.branch and result.commit else None,
    }


def _markdown(result: Promotion) -> str:
    blocks = [f"### Promote {code(result.source)} → {code(result.target)}"]
    if result.copied:
        rows = ["| asset | key | from | to |", "| --- | --- | --- | --- |"]
        rows += [
            f"| {code(c.asset, cell=True)} | {code(c.key, cell=True)} | "
            f"{code(_old(c), cell=True)} | {code(scalar(c.new), cell=True)} |"
            for c in result.copied
        ]
        blocks.append("\n".join(rows))
    if result.notes:
        blocks.append("\n".join(f"- {code(note)}" for note in result.notes))
    if result.commit is None or result.planned is None:
        blocks.append("Nothing to promote: no commit made.")
        return "\n\n".join(blocks) + "\n"
    blocks.append(
        f"Branch {code(result.branch or '')}, commit {code(result.commit[:12])} on "
        f"{code(result.base[:12])}: {code(f'git push origin {result.branch}')} "
        "opens a pull request."
    )
    blocks.append(plan_markdown.render(result.planned.plan, base_source="HEAD").rstrip("\n"))
    return "\n\n".join(blocks) + "\n"
