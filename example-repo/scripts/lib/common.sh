# Helpers shared by the demo scripts. POSIX sh; sourced, never executed:
#   . "$(dirname "$0")/lib/common.sh"
#
# The runner gives every step these environment variables:
#   RUNNER_PROPERTIES  a JSON file with the node's converged properties (secrets resolved)
#   RUNNER_NODE        the node path, e.g. /projects/pay/environments/dev/assets/api
#   RUNNER_ACTION      the action being run, e.g. deploy
#   RUNNER_CHANGE_ID   the change record this step belongs to
#   RUNNER_COMMIT      the ops repo commit being run
#   RUNNER_OUTPUTS     a file to append key=value lines to (the step's outputs)

SCRIPT_NAME=${0##*/}

die() {
    printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2
    exit 1
}

say() {
    printf '%s: %s\n' "$SCRIPT_NAME" "$*"
}

now_utc() {
    date -u +%Y-%m-%dT%H:%M:%SZ
}

# prop KEY [DEFAULT]: print the converged property KEY (dotted, e.g. backup.retention_days).
# Strings print as they are, booleans as true/false, mappings and lists as JSON.
# A missing key or null prints DEFAULT (or nothing).
prop() {
    python3 -c '
import json, os, sys
key, default = sys.argv[1], sys.argv[2:]
path = os.environ.get("RUNNER_PROPERTIES", "")
value = None
if path:
    with open(path, encoding="utf-8") as fh:
        value = json.load(fh)
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
if value is None:
    if default:
        print(default[0])
elif isinstance(value, bool):
    print("true" if value else "false")
elif isinstance(value, (dict, list)):
    print(json.dumps(value, sort_keys=True))
else:
    print(value)
' "$@"
}

# resolve_out [DIR]: the demo output folder: the argument, else the demo.out_dir property,
# else $DEMO_OUT_DIR, else /tmp/gitops-runner-demo. It must be absolute.
resolve_out() {
    _out=${1:-}
    [ -n "$_out" ] || _out=$(prop demo.out_dir)
    [ -n "$_out" ] || _out=${DEMO_OUT_DIR:-/tmp/gitops-runner-demo}
    case $_out in
        /*) ;;
        *) die "output folder must be an absolute path, got '$_out'" ;;
    esac
    [ "$_out" != / ] || die "refusing to use / as the output folder"
    printf '%s\n' "${_out%/}"
}

# resolve_node [PATH]: the node path: the argument, else $RUNNER_NODE. Checked so that it can
# be joined safely under the output folder.
resolve_node() {
    _node=${1:-${RUNNER_NODE:-}}
    [ -n "$_node" ] || die "no node path: pass one or set RUNNER_NODE"
    case $_node in
        /projects/?*) ;;
        *) die "not a node path: '$_node'" ;;
    esac
    case $_node in
        *..* | *//* | */ | *[!A-Za-z0-9_/-]*) die "unsafe node path: '$_node'" ;;
    esac
    printf '%s\n' "$_node"
}

# emit KEY VALUE: record a step output (when the runner collects outputs) and show it.
emit() {
    if [ -n "${RUNNER_OUTPUTS:-}" ]; then
        printf '%s=%s\n' "$1" "$2" >>"$RUNNER_OUTPUTS"
    fi
    printf '  output %s=%s\n' "$1" "$2"
}

# sha256_of FILE: the hex SHA-256 of a file.
sha256_of() {
    python3 -c '
import hashlib, sys
with open(sys.argv[1], "rb") as fh:
    print(hashlib.sha256(fh.read()).hexdigest())
' "$1"
}

# find_config DIR: print the rendered config file in DIR (config.json or config.ini), if any.
find_config() {
    for _f in "$1/config.json" "$1/config.ini"; do
        if [ -f "$_f" ]; then
            printf '%s\n' "$_f"
            return 0
        fi
    done
    return 0
}
