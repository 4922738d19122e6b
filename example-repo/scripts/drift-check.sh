#!/bin/sh
# Compare the node's rendered config with what its properties render to now.
#
#   drift-check.sh [--format json|ini] [OUT_DIR [NODE_PATH]]
#
# Exit 0 and print "in sync" when they match; print "drift" with a diff and exit 2 when they
# differ or the config is missing (someone edited or removed it by hand).
set -eu
. "$(dirname "$0")/lib/common.sh"

format=
while [ $# -gt 0 ]; do
    case $1 in
        --format) [ $# -ge 2 ] || die "--format needs a value"; format=$2; shift 2 ;;
        --format=*) format=${1#--format=}; shift ;;
        --) shift; break ;;
        -*) die "unknown option $1" ;;
        *) break ;;
    esac
done

out=$(resolve_out "${1:-}")
node=$(resolve_node "${2:-}")
dir=$out$node
actual=$(find_config "$dir")
if [ -z "$format" ]; then
    case $actual in
        *.ini) format=ini ;;
        *) format=json ;;
    esac
fi

if [ -z "$actual" ]; then
    echo "drift: $node has no rendered config in $dir"
    emit drift true
    exit 2
fi

desired=$(mktemp)
trap 'rm -f "$desired"' EXIT
"$(dirname "$0")/render-config.sh" --print --format "$format" "$out" "$node" >"$desired"

if [ "${actual##*.}" = "$format" ] && cmp -s "$desired" "$actual"; then
    say "in sync: $node"
    emit drift false
    exit 0
fi

echo "drift: $node differs from its properties ($actual)"
diff -u "$actual" "$desired" || true
emit drift true
exit 2
