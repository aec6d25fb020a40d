#!/usr/bin/env bash
# Fuzzes the admin HTTP API from its own OpenAPI document with
# schemathesis (PyPI, pinned, in a venv under target/): starts the broker
# binary on free ports with a temporary data directory, logs in as admin,
# and fails on any 5xx or any answer that does not match the document
# (status, content type, schema). Bounded: a few examples per operation.
set -euo pipefail
cd "$(dirname "$0")/.."

ST_VERSION=4.32.5
VENV="${GATEHOUSE_ST_VENV:-$PWD/target/schemathesis-venv}"
if ! "$VENV/bin/st" --version 2>/dev/null | grep -q "$ST_VERSION"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"
fi

cargo build --locked --bin gatehouse
BIN="${CARGO_TARGET_DIR:-target}/debug/gatehouse"

TMP=$(mktemp -d)
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

[tls]
dir = "$TMP/certs"

[http]
rate_per_user_per_minute = 100000
rate_per_address_per_minute = 100000
TOML

RUST_LOG="warn,gatehouse::identity::audit=info" "$BIN" serve --config "$TMP/broker.toml" > "$TMP/broker.log" 2>&1 &
PID=$!
BASE="http://127.0.0.1:$HTTP_PORT"
for _ in $(seq 100); do
  curl -sf "$BASE/api/health" >/dev/null 2>&1 && break
  sleep 0.1
done

login() {
  curl -sf -X POST "$BASE/api/login" -H 'Content-Type: application/json' \
    -d '{"username": "admin", "password": "admin", "expireTimeInHours": 1, "label": "fuzz"}' \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])'
}

# Operations that can lock the fuzzer out (schemathesis reuses ids it saw
# in responses: it can delete the admin role or revoke its own token).
# They run in a second pass, after everything else had a working token.
LOCKOUT="delete_role update_role remove_permission revoke_one revoke_all remove_user_role update_user"
fuzz() { # extra st arguments; run in $TMP, where st keeps its cache
  (cd "$TMP" && "$VENV/bin/st" run "$BASE/api/openapi.json" \
    --header "Authorization: Bearer $(login)" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --phases examples,coverage,fuzzing \
    --max-examples "${FUZZ_EXAMPLES:-20}" \
    --workers 2 \
    --seed 20261130 \
    --no-color "$@")
}
status=0
exclude=(); include=()
for op in $LOCKOUT; do exclude+=(--exclude-operation-id "$op"); include+=(--include-operation-id "$op"); done
fuzz "${exclude[@]}" || status=$?
fuzz "${include[@]}" || status=$?

if [ "$status" -ne 0 ]; then
  echo "== the broker's audit log and warnings (last 40 lines) ==" >&2
  tail -40 "$TMP/broker.log" >&2
fi
if grep -q "panicked" "$TMP/broker.log"; then
  echo "the broker panicked:" >&2
  grep -A5 "panicked" "$TMP/broker.log" >&2
  status=1
fi
exit $status
