#!/bin/sh
# Back up the node's database to a timestamped copy and prune old copies.
#
#   backup-db.sh [OUT_DIR [NODE_PATH]]
#
# Copies OUT_DIR/<node path>/data/db.sqlite to backups/db-<UTC time>.sqlite (with SQLite's
# online backup, so a migration running at the same time cannot tear it), then removes copies
# older than backup.retention_days.
set -eu
. "$(dirname "$0")/lib/common.sh"

out=$(resolve_out "${1:-}")
node=$(resolve_node "${2:-}")
dir=$out$node
db=$dir/data/db.sqlite
[ -f "$db" ] || die "no database to back up for $node ($db is missing)"
retention=$(prop backup.retention_days 7)

mkdir -p "$dir/backups"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
copy=$dir/backups/db-$stamp.sqlite
n=1
while [ -e "$copy" ]; do
    n=$((n + 1))
    copy=$dir/backups/db-$stamp-$n.sqlite
done

kept=$(python3 -c '
import os, sqlite3, sys, time
db, copy, folder, retention = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
src = sqlite3.connect(db, timeout=30)
dst = sqlite3.connect(copy)
with dst:
    src.backup(dst)
dst.close()
src.close()
cutoff = time.time() - retention * 86400
kept = 0
for name in sorted(os.listdir(folder)):
    path = os.path.join(folder, name)
    if not (name.startswith("db-") and name.endswith(".sqlite")):
        continue
    if os.path.getmtime(path) < cutoff:
        os.remove(path)
        print("pruned %s" % name, file=sys.stderr)
    else:
        kept += 1
print(kept)
' "$db" "$copy" "$dir/backups" "$retention")

say "backed up $node to $copy ($kept kept, retention $retention days)"
emit last_backup "$copy"
emit backup_count "$kept"
