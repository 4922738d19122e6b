"""Who is acting: the user recorded with decisions, pauses and events (SPEC 2.5).

``--by``, else the CI actor (``GITHUB_ACTOR``), else the git identity. This is as trustworthy as
write access to the state branch: anyone who can push there can write any name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from runner.gitrepo import DEFAULT_NAME, GitRepo


def current_user(environ: Mapping[str, str], git: GitRepo | None, by: str | None = None) -> str:
    if by:
        return by
    actor = environ.get("GITHUB_ACTOR")
    if actor:
        return actor
    if git is not None:
        sig = git.signature()
        if sig.name != DEFAULT_NAME:
            return f"{sig.name} <{sig.email}>"
    return environ.get("USER") or "unknown"


def names_of(user: str) -> set[str]:
    """The names a user may be listed under in ``groups:``: the whole string, the name part of
    ``Name <email>``, the email and the email's local part (``alice`` for alice@example.com)."""
    names = {user.strip()}
    if "<" in user and user.rstrip().endswith(">"):
        name, _, email = user.rstrip()[:-1].partition("<")
        names.update({name.strip(), email.strip()})
        names.add(email.strip().split("@", 1)[0])
    elif "@" in user:
        names.add(user.split("@", 1)[0])
    return {n.lower() for n in names if n}


def member_of(user: str, groups: Iterable[str], members: Mapping[str, Iterable[str]]) -> bool:
    """Whether ``user`` is listed in one of ``groups`` (runner.yaml ``groups:``)."""
    mine = names_of(user)
    return any(m.lower() in mine for g in groups for m in members.get(g, ()))
