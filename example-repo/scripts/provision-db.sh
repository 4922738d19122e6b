#!/bin/sh
# Provision the node's "database": a local SQLite file standing in for PostgreSQL.
#
#   provision-db.sh [OUT_DIR [NODE_PATH]]
#
# Creates OUT_DIR/<node path>/data/db.sqlite if it is missing and records the settings the
# properties ask for (version, storage, connections, auth mode). Safe to run again.
# With the property demo.flaky_provision set to true, the first attempt fails with a
# transient error, to show the step's retries.
set -eu
. "$(dirname "$0")/lib/common.sh"

out=$(resolve_out "${1:-}")
node=$(resolve_node "${2:-}")
dir=$out$node
db=$dir/data/db.sqlite
mkdir -p "$dir/data"

if [ "$(prop demo.flaky_provision false)" = true ] && [ ! -e "$dir/.flaky-provision-done" ]; then
    : >"$dir/.flaky-provision-done"
    printf '%s: transient error: storage for %s is not attached yet, try again\n' \
        "$SCRIPT_NAME" "$node" >&2
    exit 75
fi

existed=false
[ -f "$db" ] && existed=true

# The password itself never reaches the file: only whether one is set.
auth=trust
[ -n "$(prop password)" ] && auth=password

python3 -c '
import sqlite3, sys
db, node, version, storage_gb, db_name, max_connections, auth, now = sys.argv[1:9]
con = sqlite3.connect(db, timeout=30)
with con:
    con.execute("CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version TEXT PRIMARY KEY, applied_at TEXT NOT NULL, change_id TEXT)")
    con.execute("INSERT OR IGNORE INTO settings VALUES (?, ?)", ("provisioned_at", now))
    for key, value in [("node", node), ("engine_version", version),
                       ("storage_gb", storage_gb), ("db_name", db_name),
                       ("max_connections", max_connections), ("auth", auth),
                       ("updated_at", now)]:
        con.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, value))
con.close()
' "$db" "$node" "$(prop version 16)" "$(prop storage_gb 10)" "$(prop db_name app)" \
  "$(prop max_connections 100)" "$auth" "$(now_utc)"

if [ "$existed" = true ]; then
    say "database for $node already exists; settings updated: $db"
else
    say "created database for $node: $db"
fi
emit db_path "$db"
emit url "sqlite:///$db"
emit auth "$auth"
