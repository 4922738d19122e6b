#!/bin/sh
# Append a notification line to OUT_DIR/notifications.log (a stand-in for chat or email).
#
#   notify.sh [OUT_DIR [MESSAGE...]]
#
# With no arguments (a workflow step), OUT_DIR comes from the demo.out_dir property when the
# step has properties, else $DEMO_OUT_DIR, else /tmp/gitops-runner-demo.
set -eu
. "$(dirname "$0")/lib/common.sh"

out=$(resolve_out "${1:-}")
if [ $# -gt 0 ]; then shift; fi
message=${*:-"${RUNNER_ACTION:-workflow step} finished"}
channel=$(prop notifications.channel '#ops')

mkdir -p "$out"
line=$(printf '%s channel=%s node=%s action=%s change=%s commit=%.12s message="%s"' \
    "$(now_utc)" "$channel" "${RUNNER_NODE:--}" "${RUNNER_ACTION:--}" \
    "${RUNNER_CHANGE_ID:--}" "${RUNNER_COMMIT:--}" "$message")
printf '%s\n' "$line" >>"$out/notifications.log"
say "$line"
emit notified_at "$(now_utc)"
