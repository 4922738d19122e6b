from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.opsrepo import OpsRepoBuilder


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test may read or write the real home directory or global git configuration, nor see
    the CI system's own variables (GITHUB_ACTIONS changes output, GITHUB_ACTOR the user)."""
    home = tmp_path_factory.mktemp("home")
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Test User\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n"
    )
    ci = [k for k in os.environ if k.startswith("GITHUB_") or k == "RUNNER_TEMP"]
    saved = {
        k: os.environ.get(k)
        for k in ("HOME", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM", "XDG_CONFIG_HOME", *ci)
    }
    for key in ci:
        del os.environ[key]
    os.environ["HOME"] = str(home)
    os.environ["GIT_CONFIG_GLOBAL"] = str(home / ".gitconfig")
    os.environ["GIT_CONFIG_NOSYSTEM"] = "1"
    os.environ["XDG_CONFIG_HOME"] = str(home / ".config")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def ops(tmp_path: Path) -> OpsRepoBuilder:
    repo = OpsRepoBuilder(tmp_path / "ops")
    repo.commit("initial")
    return repo
