#!/usr/bin/env bash
# The main job on the example ops repo, on a fresh machine: makes .venv, installs the runner,
# validates the example in place, shows converged properties with provenance, then scaffolds a
# new ops repo with `runner init` and validates that too.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/runner ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
fi
runner() { .venv/bin/runner "$@"; }
show() { printf '\n\033[1m$ runner %s\033[0m\n' "$*"; runner "$@"; }

show --repo example-repo validate
show --repo example-repo properties /projects/pay/environments/prod/assets/api --format yaml
show --repo example-repo properties /projects/pay/environments/prod/assets/api --explain
demo=$(mktemp -d "${TMPDIR:-/tmp}/gitops-runner-demo-XXXXXX")
show init "$demo/ops"
show --repo "$demo/ops" validate --rev HEAD
printf '\nA broken edit is caught before it is committed (exit 3, file:line):\n'
sed -i 's/depends_on: \[staging\]/depends_on: [stagin]/' "$demo/ops/projects/pay/environments/prod/environment.yaml"
show --repo "$demo/ops" validate || printf '(exit %s)\n' "$?"
printf '\nThe scaffolded ops repo is in %s/ops\n' "$demo"
