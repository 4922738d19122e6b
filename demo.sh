#!/usr/bin/env bash
# The main job on the example ops repo, on a fresh machine: makes .venv and installs the runner,
# validates example-repo/ in place, then scaffolds a new ops repo with `runner init`, plans it,
# applies it (steps render config files under /tmp/gitops-runner-demo; production waits for a
# release manager), approves and reconciles, runs the release workflow through its approval,
# shows schedules and history, bumps one image tag in a commit and plans and applies just that.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/runner ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
fi
RUNNER="$PWD/.venv/bin/runner"
show() { printf '\n\033[1m$ runner %s\033[0m\n' "$*"; "$RUNNER" "$@"; }

show --repo example-repo validate
show --repo example-repo properties /projects/pay/environments/prod/assets/api --explain

demo=$(mktemp -d "${TMPDIR:-/tmp}/gitops-runner-demo-XXXXXX")
show init "$demo/ops"
cd "$demo/ops"
git config user.name >/dev/null || git config user.name "Demo"
git config user.email >/dev/null || git config user.email "demo@example.com"
# Demo secret values; a real pipeline takes them from its secret store.
export RUNNER_SECRET_DB_PASSWORD=demo-db-password RUNNER_SECRET_PAY_GATEWAY_TOKEN=demo-gateway-token
show plan
show apply
printf '\n\033[1m$ git log --oneline -5 runner-state\033[0m\n'
git log --oneline -5 runner-state
show changes list --filter status=waiting
printf '\n\033[1m# alice is a release manager (runner.yaml groups): approve the waiting prod changes\033[0m\n'
show approve --filter node=/projects/pay/environments/prod/% --by alice --message "first production rollout"
show reconcile --no-drift   # runs what was approved; cron runs this every few minutes
show apply   # nothing left to do

printf '\n\033[1m# the release workflow: dev, then a wait for a release manager, then prod\033[0m\n'
show workflow run release
run=$("$RUNNER" runs list --filter status=waiting --format json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
show approve "$run" approve-prod --by mallory || echo "(exit $?: mallory is not a release manager)"
show approve "$run" approve-prod --by bob --message "dev looks good"
show reconcile --no-drift
show runs show "$run"
show schedules list
show changes list --filter node=/projects/pay/environments/prod/% --format csv

printf '\n\033[1m# bump the staging api image, commit, plan as a PR comment would, apply\033[0m\n'
sed -i 's/tag: "1.43.0-rc.2"/tag: "1.43.0"/' projects/pay/environments/staging/assets/api.yaml
git commit -qam "staging: pay api 1.43.0"
show plan --format markdown
show apply
show history /projects/pay/environments/staging/assets/api --max 2
show events list
printf '\nRendered files: %s\nThe ops repo: %s\n' "/tmp/gitops-runner-demo" "$demo/ops"
