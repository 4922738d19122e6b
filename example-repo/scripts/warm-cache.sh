#!/bin/sh
# Warm the node's cache: write one page per path in cache.warm_paths under
# OUT_DIR/<node path>/cache/.
#
#   warm-cache.sh [OUT_DIR [NODE_PATH]]
set -eu
. "$(dirname "$0")/lib/common.sh"

out=$(resolve_out "${1:-}")
node=$(resolve_node "${2:-}")
dir=$out$node/cache
mkdir -p "$dir"

count=$(python3 -c '
import json, os, re, sys
folder, paths, now = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
if not isinstance(paths, list):
    sys.exit("cache.warm_paths must be a list")
for path in paths:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(path).strip("/")) or "index"
    with open(os.path.join(folder, name + ".html"), "w", encoding="utf-8") as fh:
        fh.write("<!-- warmed %s at %s -->\n" % (path, now))
    print("warmed %s" % path, file=sys.stderr)
print(len(paths))
' "$dir" "$(prop cache.warm_paths '["/"]')" "$(now_utc)")

say "warmed $count paths for $node in $dir"
emit warmed "$count"
emit warmed_at "$(now_utc)"
