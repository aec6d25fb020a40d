#!/usr/bin/env bash
# The admin API at scale (issue 11 §8): a store with 100,000 users and
# 1,000 roles; start-up time, GET /api/users pages of 100 (p50/p99),
# user creation against one argon2 hash, and logins per second.
#
#   bash benches/api_scale.sh [--users 100000] [--roles 1000] [--login-secs 10]
#
# Builds release binaries, seeds a temporary store (benches/load
# seed-directory), starts the broker on free loopback ports, and runs
# `load api-bench` against it. Prints one `scenario=api ...` line and the
# start-up times.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
USERS=100000
ROLES=1000
LOGIN_SECS=10
while [ $# -gt 0 ]; do
  case "$1" in
    --users) USERS=$2; shift 2 ;;
    --roles) ROLES=$2; shift 2 ;;
    --login-secs) LOGIN_SECS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

cargo build --release -j "${CARGO_JOBS:-2}" --bin gatehouse --example load >&2
GATEHOUSE=$ROOT/target/release/gatehouse
LOAD=$ROOT/target/release/examples/load

TMP=$(mktemp -d /tmp/gatehouse-api-scale.XXXXXX)
PID=""
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

read -r MQTT_PORT HTTP_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
cat > "$TMP/broker.toml" <<TOML
[listeners]
mqtt = "127.0.0.1:$MQTT_PORT"
ws = ""
mqtts = ""
wss = ""
http = "127.0.0.1:$HTTP_PORT"
https = ""

[storage]
dir = "$TMP/data"

[http]
rate_per_user_per_minute = 1000000
rate_per_address_per_minute = 1000000
TOML

"$LOAD" seed-directory --config "$TMP/broker.toml" --users "$USERS" --roles "$ROLES"

start() { # sets PID and STARTUP_MS (until /api/health answers)
  local t0 t1
  t0=$(date +%s%N)
  RUST_LOG=warn "$GATEHOUSE" serve --config "$TMP/broker.toml" >> "$TMP/broker.log" 2>&1 &
  PID=$!
  for _ in $(seq 4000); do
    curl -sf "http://127.0.0.1:$HTTP_PORT/api/health" >/dev/null 2>&1 && break
    sleep 0.005
  done
  t1=$(date +%s%N)
  STARTUP_MS=$(( (t1 - t0) / 1000000 ))
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""; }

start; FIRST=$STARTUP_MS; stop
start; SECOND=$STARTUP_MS
echo "startup_first_ms=$FIRST startup_ms=$SECOND users=$USERS roles=$ROLES"
"$LOAD" api-bench --api "http://127.0.0.1:$HTTP_PORT" --pages 2000 --creates 50 \
  --workers "$(nproc)" --login-secs "$LOGIN_SECS"
RSS=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
echo "broker_rss_kb=$RSS"
