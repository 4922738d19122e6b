#!/bin/sh
# Remove everything the demo created for the node: OUT_DIR/<node path>.
#
#   destroy.sh [--keep-backups] [OUT_DIR [NODE_PATH]]
#
# With --keep-backups, the node's backups/ folder survives (a database's final backup).
set -eu
. "$(dirname "$0")/lib/common.sh"

keep_backups=false
while [ $# -gt 0 ]; do
    case $1 in
        --keep-backups) keep_backups=true; shift ;;
        --) shift; break ;;
        -*) die "unknown option $1" ;;
        *) break ;;
    esac
done

out=$(resolve_out "${1:-}")
node=$(resolve_node "${2:-}")
dir=$out$node

if [ ! -d "$dir" ]; then
    say "$node has nothing to destroy ($dir does not exist)"
elif [ "$keep_backups" = true ] && [ -d "$dir/backups" ]; then
    for entry in "$dir"/* "$dir"/.[!.]* "$dir"/..?*; do
        [ -e "$entry" ] || continue
        [ "$entry" = "$dir/backups" ] && continue
        rm -rf -- "$entry"
    done
    say "destroyed $node: removed $dir except its backups/"
else
    rm -rf -- "$dir"
    say "destroyed $node: removed $dir"
fi
emit destroyed_at "$(now_utc)"
