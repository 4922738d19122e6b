#!/bin/sh
# Check that the node's rendered config exists and parses, and write health.json next to it.
#
#   healthcheck.sh [OUT_DIR [NODE_PATH]]
#
# Exits 1 when the node is unhealthy. Setting the property demo.break_health to true (for
# example `runner run PATH deploy --set demo.break_health=true`) fails the check on purpose,
# to show a deploy's `if: failure()` step.
set -eu
. "$(dirname "$0")/lib/common.sh"

out=$(resolve_out "${1:-}")
node=$(resolve_node "${2:-}")
dir=$out$node
health=$dir/health.json
config=$(find_config "$dir")
break_health=$(prop demo.break_health false)
port=$(prop port)
health_path=$(prop health.path /)

status=ok
reason="config parses"
if [ -z "$config" ]; then
    status=failing
    reason="no rendered config in $dir"
elif ! problem=$(python3 -c '
import configparser, json, sys
path = sys.argv[1]
try:
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        if not isinstance(data, dict) or not data:
            sys.exit("config.json is not a non-empty object")
    else:
        ini = configparser.ConfigParser(interpolation=None)
        if not ini.read(path, encoding="utf-8") or not ini.sections():
            sys.exit("config.ini has no sections")
except (ValueError, configparser.Error) as exc:
    sys.exit("cannot parse %s: %s" % (path, exc))
' "$config" 2>&1); then
    status=failing
    reason=$problem
elif [ "$break_health" = true ]; then
    status=failing
    reason="demo.break_health is set"
fi

mkdir -p "$dir"
python3 -c '
import json, sys
node, status, reason, config, port, path, checked_at = sys.argv[1:8]
doc = {
    "node": node,
    "status": status,
    "reason": reason,
    "config": config or None,
    "endpoint": ("http://localhost:%s%s" % (port, path)) if port else None,
    "checked_at": checked_at,
}
print(json.dumps(doc, indent=2, sort_keys=True))
' "$node" "$status" "$reason" "$config" "$port" "$health_path" "$(now_utc)" >"$health"

emit url "file://$health"
emit healthy "$([ "$status" = ok ] && echo true || echo false)"
if [ "$status" != ok ]; then
    printf '%s: UNHEALTHY %s: %s\n' "$SCRIPT_NAME" "$node" "$reason" >&2
    exit 1
fi
say "healthy: $node ($reason)"
