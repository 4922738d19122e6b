#!/bin/sh
# Page the on-call rotation after a failed step (a stand-in for a paging service).
#
#   page-oncall.sh [OUT_DIR [NODE_PATH]]
#
# Appends to OUT_DIR/pages.log and OUT_DIR/notifications.log. Always exits 0: paging must not
# hide the failure that caused it, which the runner already records.
set -eu
. "$(dirname "$0")/lib/common.sh"

out=$(resolve_out "${1:-}")
node=$(resolve_node "${2:-}")
rotation=$(prop oncall.rotation platform-oncall)

mkdir -p "$out"
line=$(printf '%s PAGE rotation=%s node=%s action=%s change=%s commit=%.12s' \
    "$(now_utc)" "$rotation" "$node" "${RUNNER_ACTION:--}" \
    "${RUNNER_CHANGE_ID:--}" "${RUNNER_COMMIT:--}")
printf '%s\n' "$line" >>"$out/pages.log"
RUNNER_OUTPUTS= "$(dirname "$0")/notify.sh" "$out" "paged $rotation: ${RUNNER_ACTION:-a step} failed on $node" \
    >/dev/null
say "$line"
emit paged "$rotation"
