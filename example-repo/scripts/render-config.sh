#!/bin/sh
# Render the node's configuration file from its converged properties.
#
#   render-config.sh [--format json|ini] [--print] [OUT_DIR [NODE_PATH]]
#
# Writes OUT_DIR/<node path>/config.json (or config.ini), atomically, and appends a line to
# deployments.log next to it. With --print, writes the rendering to stdout and touches nothing
# (drift-check.sh uses that). The rendering only depends on the properties: the reserved
# `outputs` key is left out and values of secret-looking keys are written as ***.
set -eu
. "$(dirname "$0")/lib/common.sh"

format=json
print_only=false
while [ $# -gt 0 ]; do
    case $1 in
        --format) [ $# -ge 2 ] || die "--format needs a value"; format=$2; shift 2 ;;
        --format=*) format=${1#--format=}; shift ;;
        --print) print_only=true; shift ;;
        --) shift; break ;;
        -*) die "unknown option $1" ;;
        *) break ;;
    esac
done
case $format in
    json | ini) ;;
    *) die "--format must be json or ini, got '$format'" ;;
esac
[ -n "${RUNNER_PROPERTIES:-}" ] || die "RUNNER_PROPERTIES is not set"
[ -r "$RUNNER_PROPERTIES" ] || die "cannot read $RUNNER_PROPERTIES"

node=$(resolve_node "${2:-}")

render() {
    python3 -c '
import configparser, io, json, re, sys

fmt, node, path = sys.argv[1:4]
with open(path, encoding="utf-8") as fh:
    props = json.load(fh)
if not isinstance(props, dict):
    sys.exit("properties must be a JSON object")
props.pop("outputs", None)

SECRET = re.compile(r"(password|passwd|secret|token|api_key|private_key)", re.I)

def redact(value, key=""):
    if isinstance(value, dict):
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if value is not None and SECRET.search(key):
        return "***"
    return value

props = redact(props)

if fmt == "json":
    sys.stdout.write(json.dumps(props, indent=2, sort_keys=True) + "\n")
    sys.exit(0)

def scalar(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)

def flatten(mapping, prefix=""):
    for key in sorted(mapping):
        value = mapping[key]
        if isinstance(value, dict):
            yield from flatten(value, prefix + key + ".")
        else:
            yield prefix + key, scalar(value)

ini = configparser.ConfigParser(interpolation=None)
ini.optionxform = str
top = {k: v for k, v in props.items() if not isinstance(v, dict)}
ini["main"] = dict(flatten(top))
for section in sorted(k for k, v in props.items() if isinstance(v, dict)):
    ini[section] = dict(flatten(props[section]))
buf = io.StringIO()
buf.write("; rendered for %s\n" % node)
ini.write(buf)
sys.stdout.write(buf.getvalue())
' "$format" "$node" "$RUNNER_PROPERTIES"
}

if [ "$print_only" = true ]; then
    render
    exit 0
fi

out=$(resolve_out "${1:-}")
dir=$out$node
target=$dir/config.$format
mkdir -p "$dir"
tmp=$target.tmp.$$
trap 'rm -f "$tmp"' EXIT
render >"$tmp"

if [ -f "$target" ] && cmp -s "$tmp" "$target"; then
    say "config for $node is unchanged: $target"
    rm -f "$tmp"
else
    mv "$tmp" "$target"
    say "rendered $target"
fi
# A node renders one format; drop a stale file of the other one.
for other in "$dir/config.json" "$dir/config.ini"; do
    [ "$other" = "$target" ] || rm -f "$other"
done

sha=$(sha256_of "$target")
commit=${RUNNER_COMMIT:-unknown}
printf '%s change=%s commit=%.12s action=%s config_sha=%s\n' \
    "$(now_utc)" "${RUNNER_CHANGE_ID:--}" "$commit" "${RUNNER_ACTION:--}" "$sha" \
    >>"$dir/deployments.log"

emit config_path "$target"
emit config_url "file://$target"
emit config_sha "$sha"
