#!/usr/bin/env bash
# Where an idle connection's memory goes: heap bytes per connection by call site.
#
#   bash benches/idle_heap.sh [CONNECTIONS]     (default 10000)
#   IDLE_SCENARIO=idle_storm bash benches/idle_heap.sh   (all connects at once)
#
# Runs the release build of Gatehouse under heaptrack (installed from
# Debian when missing), seeds the benchmark user with a 10,000-rule ACL,
# opens CONNECTIONS idle connections with `load idle`, and kills the broker
# with SIGKILL while they are connected, so that heaptrack reports every
# allocation alive at that moment as "leaked". Prints each call site that
# holds about one allocation per connection (some sites show up under two
# call paths, each with part of the connections), with its bytes per
# allocation, and keeps the raw data in target/idle-heap/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CONNS=${1:-10000}
case "$CONNS" in ''|*[!0-9]*) echo "CONNECTIONS must be a number" >&2; exit 2 ;; esac

log() { printf '[idle-heap %s] %s\n' "$(date +%T)" "$*" >&2; }
if ! command -v heaptrack >/dev/null || ! command -v heaptrack_print >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing heaptrack"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq heaptrack >/dev/null
fi
command -v python3 >/dev/null || { echo "python3 is needed for the summary" >&2; exit 1; }

log "building (release)"
cargo build --release -j "${CARGO_JOBS:-1}" --bin gatehouse --example load >&2
GATEHOUSE=$ROOT/target/release/gatehouse
LOAD=$ROOT/target/release/examples/load
OUT=$ROOT/target/idle-heap
mkdir -p "$OUT"
rm -f "$OUT"/heap.*
TMP=$(mktemp -d /tmp/gatehouse-idle-heap.XXXXXX)
HT_PID=""
cleanup() {
  [ -n "$HT_PID" ] && kill "$HT_PID" 2>/dev/null || true
  pkill -KILL -f "^$GATEHOUSE serve --config $TMP/" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=28931
while ! port_free "$PORT"; do PORT=$((PORT + 1)); done
PASSWORD=benchpw-$RANDOM$RANDOM
cat > "$TMP/gh.toml" <<EOF
[listeners]
mqtt = "127.0.0.1:$PORT"
ws = ""
mqtts = ""
wss = ""
http = ""
https = ""

[storage]
dir = "$TMP/data"

[auth]
allow_anonymous = false

[limits]
max_connections = 100000
EOF
"$LOAD" seed-gatehouse --config "$TMP/gh.toml" --user bench --password "$PASSWORD" \
  --rules 10000 --extra-users 0 >&2

log "starting Gatehouse under heaptrack"
RUST_LOG=warn heaptrack -o "$OUT/heap" "$GATEHOUSE" serve --config "$TMP/gh.toml" \
  > "$OUT/heaptrack.log" 2>&1 &
HT_PID=$!
PID=""
for _ in $(seq 1 200); do
  PID=$(pgrep -f "^$GATEHOUSE serve --config $TMP/" | head -1 || true)
  [ -n "$PID" ] && ! port_free "$PORT" && break
  sleep 0.1
done
[ -n "$PID" ] || { cat "$OUT/heaptrack.log" >&2; exit 1; }

log "opening $CONNS idle connections"
"$LOAD" --host "127.0.0.1:$PORT" --username bench --password "$PASSWORD" --broker-pid "$PID" \
  --duration 30 --warmup 1 --conns "$CONNS" --max-broker-rss-mb 4096 "${IDLE_SCENARIO:-idle}" > "$OUT/load.txt" 2>&1 &
LOAD_PID=$!
# The load tool connects (about 1 s), then waits 2 s before it samples RSS.
for _ in $(seq 1 600); do
  n=$(ss -Htn state established "( sport = :$PORT )" 2>/dev/null | wc -l)
  [ "$n" -gt "$CONNS" ] && break
  sleep 0.1
done
sleep 3
log "$(ss -Htn state established "( sport = :$PORT )" | wc -l) connections established; killing the broker"
kill -KILL "$PID"
wait "$HT_PID" 2>/dev/null || true
HT_PID=""
kill "$LOAD_PID" 2>/dev/null || true
wait "$LOAD_PID" 2>/dev/null || true

DATA=$(ls "$OUT"/heap.* | head -1)
heaptrack_print -f "$DATA" --print-peaks 0 --print-allocators 0 --print-temporary 0 \
  --print-leaks 1 --peak-limit 80 > "$OUT/live.txt" 2>/dev/null
python3 - "$OUT/live.txt" "$CONNS" <<'PY'
import re, sys
path, conns = sys.argv[1], int(sys.argv[2])
units = {"B": 1, "K": 1e3, "M": 1e6, "G": 1e9}
def size(text):
    m = re.match(r"([\d.]+)([KMG]?)", text)
    return float(m.group(1)) * units[m.group(2) or "B"]
lines = open(path).read().split("\n")
total = next((l for l in lines if l.startswith("total memory leaked")), "")
rows = []
for i, line in enumerate(lines):
    # Top-level entries ("calls from") are allocator functions; the call
    # sites under them end in "calls from:".
    m = re.match(r"^(\s*)(\S+) leaked over (\d+) calls from:", line)
    if not m:
        continue
    calls = int(m.group(3))
    if calls < conns * 0.5 or calls > conns * 1.2:
        continue
    where = []
    for follow in lines[i + 1:i + 120]:
        s = follow.strip()
        if "leaked over" in s:
            break
        if s.startswith("at src/") or s.startswith("at benches/"):
            where.append(s[3:])
        elif s.startswith("at /") and "/tokio-" in s and not where:
            where.append("tokio " + s.split("/src/")[-1])
        if len(where) == 2:
            break
    rows.append((size(m.group(2)) / calls, calls, " <- ".join(where) or "?"))
print(f"live heap at the kill: {total.split(':')[-1].strip()}")
print(f"{'bytes each':>10}  {'allocations':>11}  call site")
seen = set()
for per, calls, where in sorted(rows, key=lambda r: -r[0]):
    key = (round(per), where)
    if key in seen:
        continue
    seen.add(key)
    print(f"{per:>10.0f}  {calls:>11}  {where}")
PY
