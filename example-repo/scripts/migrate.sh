#!/bin/sh
# Apply schema migrations.
#
#   migrate.sh [OUT_DIR [NODE_PATH]]
#
# Which database:
#   - a node with a `database.node` property (a web service) migrates that database node,
#     applying the versions listed in `database.migrations`;
#   - a database node (property engine: postgres) migrates itself, applying `migrations`;
#   - anything else has no database: nothing to migrate, exit 0.
# Each version is recorded once in the schema_migrations table; running again is a no-op.
set -eu
. "$(dirname "$0")/lib/common.sh"

out=$(resolve_out "${1:-}")
node=$(resolve_node "${2:-}")

db_node=$(prop database.node)
if [ -n "$db_node" ]; then
    db_node=$(resolve_node "$db_node")
    migrations=$(prop database.migrations '[]')
elif [ "$(prop engine)" = postgres ]; then
    db_node=$node
    migrations=$(prop migrations '[]')
else
    say "$node has no database; nothing to migrate"
    emit migrations_applied 0
    exit 0
fi

db=$out$db_node/data/db.sqlite
[ -f "$db" ] || die "database $db_node is not provisioned ($db is missing); deploy it first"

result=$(python3 -c '
import json, sqlite3, sys
db, migrations, change_id, now = sys.argv[1:5]
versions = json.loads(migrations)
if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
    sys.exit("migrations must be a list of version strings")
con = sqlite3.connect(db, timeout=30)
applied = 0
with con:
    con.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version TEXT PRIMARY KEY, applied_at TEXT NOT NULL, change_id TEXT)")
    for version in versions:
        cur = con.execute("INSERT OR IGNORE INTO schema_migrations VALUES (?, ?, ?)",
                          (version, now, change_id))
        if cur.rowcount:
            applied += 1
            print("applied %s" % version, file=sys.stderr)
    row = con.execute("SELECT max(version) FROM schema_migrations").fetchone()
con.close()
print("%d %s" % (applied, row[0] or "none"))
' "$db" "$migrations" "${RUNNER_CHANGE_ID:--}" "$(now_utc)")

applied=${result%% *}
version=${result#* }
say "migrated $db_node for $node: $applied new, schema at $version"
emit migrations_applied "$applied"
emit schema_version "$version"
