#!/usr/bin/env bash
# Gatehouse and mosquitto side by side, on this machine, over loopback.
#
#   bash benches/compare.sh [--rounds 3] [--duration 10] [--quick]
#                           [--no-doc] [--catchall-last] [--profile SCENARIO]
#
# Installs Debian's mosquitto and mosquitto-clients when missing, builds
# Gatehouse and the `load` example (release), seeds both brokers with the
# same user holding a 10,000-rule ACL, then runs every scenario of
# benches/load against each broker in alternation, ROUNDS times (each run
# on a freshly started broker), plus latency at half of mosquitto's best
# QoS 0 rate, and in each round qos1 with Gatehouse in `durability = "sync"`
# right after its periodic qos1 run. Prints the
# median table and writes it into docs/performance.md under
# "## Side by side with mosquitto" (other sections are kept).
#
# --quick: 1 round of 3 s. --catchall-last: mosquitto's ACL file lists the
# granting `bench/#` line after the 10,000 others (its worst case; the
# default puts it first, its best case). --profile SCENARIO: instead of the
# comparison, run SCENARIO once against Gatehouse under `perf record`
# (software clock, DWARF call graphs) and `top -H`, print where the CPU
# went, and keep the files in target/compare-profile/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ROUNDS=3
DURATION=10
WRITE_DOC=1
CATCHALL=first
PROFILE=""
RULES=10000
STORM_USERS=2000
IDLE_CONNS=10000
FANOUT_SUBS=1000
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --quick) ROUNDS=1; DURATION=3; shift ;;
    --no-doc) WRITE_DOC=0; shift ;;
    --catchall-last) CATCHALL=last; shift ;;
    --profile) PROFILE=$2; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
# A profile of anything but connstorm needs no extra users.
if [ -n "$PROFILE" ] && [ "$PROFILE" != connstorm ]; then STORM_USERS=0; fi
case "$ROUNDS" in ''|*[!0-9]*) echo "--rounds needs a number" >&2; exit 2 ;; esac
[ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 10 ] || { echo "--rounds must be 1..10" >&2; exit 2; }
case "$DURATION" in ''|*[!0-9]*) echo "--duration needs whole seconds" >&2; exit 2 ;; esac
[ "$DURATION" -ge 1 ] && [ "$DURATION" -le 60 ] || { echo "--duration must be 1..60" >&2; exit 2; }
COMMAND="bash benches/compare.sh --rounds $ROUNDS --duration $DURATION"
[ "$CATCHALL" = first ] || COMMAND="$COMMAND --catchall-last"

log() { printf '[compare %s] %s\n' "$(date +%T)" "$*" >&2; }

# --- tools --------------------------------------------------------------
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ] \
   || ! command -v mosquitto_passwd >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  log "installing mosquitto and mosquitto-clients"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
# The Debian package may have started its own service on 1883; ours uses
# other ports, so it does not matter.

log "building (release)"
cargo build --release -j "${CARGO_JOBS:-1}" --bin gatehouse --example load >&2
GATEHOUSE=$ROOT/target/release/gatehouse
LOAD=$ROOT/target/release/examples/load

# --- work area, brokers, cleanup ------------------------------------------
TMP=$(mktemp -d /tmp/gatehouse-compare.XXXXXX)
GH_PID=""
MQ_PID=""
PERF_PID=""
stop_pid() { # pid: SIGTERM, wait up to 10 s, then SIGKILL
  local pid=$1 i
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop_pid "$PERF_PID"; PERF_PID=""
  stop_pid "$GH_PID"; GH_PID=""
  stop_pid "$MQ_PID"; MQ_PID=""
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() { # first free port from $1 upwards
  local p=$1
  while ! port_free "$p"; do p=$((p + 1)); done
  echo "$p"
}
GH_PORT=$(pick_port 28831)
MQ_PORT=$(pick_port $((GH_PORT + 1)))
GH_HTTP_PORT=$(pick_port $((MQ_PORT + 1)))
wait_port() { # port pid: until the port accepts, at most 20 s
  local i
  for i in $(seq 1 200); do
    kill -0 "$2" 2>/dev/null || return 1
    port_free "$1" || return 0
    sleep 0.1
  done
  return 1
}

PASSWORD=benchpw-$RANDOM$RANDOM
USER=bench

gh_config() { # durability
  cat <<EOF
[listeners]
mqtt = "127.0.0.1:$GH_PORT"
ws = ""
mqtts = ""
wss = ""
http = "127.0.0.1:$GH_HTTP_PORT"
https = ""

[storage]
dir = "$TMP/gh-data"
durability = "$1"
commit_interval_ms = 100

[auth]
allow_anonymous = false
credential_cache_size = 10000

[limits]
max_connections = 100000
max_queued_messages = 100000
max_queued_bytes = 268435456
max_inflight = 128
EOF
}
for d in periodic sync; do
  gh_config "$d" > "$TMP/gh-$d.toml"
  if ! "$GATEHOUSE" check-config --config "$TMP/gh-$d.toml" >/dev/null 2>"$TMP/check.err"; then
    # Builds without the TLS listeners or the admin API do not know their keys.
    sed -i '/^mqtts = /d; /^wss = /d; /^http = /d; /^https = /d' "$TMP/gh-$d.toml"
    "$GATEHOUSE" check-config --config "$TMP/gh-$d.toml" >/dev/null \
      || { cat "$TMP/check.err" >&2; exit 1; }
  fi
done

log "seeding Gatehouse: user $USER with $RULES rules, $STORM_USERS connstorm users"
"$LOAD" seed-gatehouse --config "$TMP/gh-periodic.toml" --user "$USER" --password "$PASSWORD" \
  --rules "$RULES" --extra-users "$STORM_USERS" >&2

log "preparing mosquitto"
{
  echo "$USER:$PASSWORD"
  for j in $(seq 0 $((STORM_USERS - 1))); do echo "$USER-$j:$PASSWORD"; done
} > "$TMP/mosq.passwd"
mosquitto_passwd -U "$TMP/mosq.passwd"
if [ "$CATCHALL" = last ]; then
  "$LOAD" seed-mosquitto-acl --user "$USER" --rules "$RULES" --catchall-last > "$TMP/mosq.acl"
else
  "$LOAD" seed-mosquitto-acl --user "$USER" --rules "$RULES" > "$TMP/mosq.acl"
fi
cat > "$TMP/mosquitto.conf" <<EOF
# Comparable to the Gatehouse configuration above; no persistence.
user root
listener $MQ_PORT 127.0.0.1
allow_anonymous false
password_file $TMP/mosq.passwd
acl_file $TMP/mosq.acl
persistence false
max_queued_messages 100000
max_queued_bytes 268435456
max_inflight_messages 128
max_connections -1
set_tcp_nodelay true
sys_interval 10
log_dest file $TMP/mosquitto.log
log_type error
log_type warning
EOF
chmod 600 "$TMP/mosq.passwd"

start_broker() { # gatehouse|mosquitto [durability]; sets GH_PID/MQ_PID
  if [ "$1" = gatehouse ]; then
    RUST_LOG=warn "$GATEHOUSE" serve --config "$TMP/gh-${2:-periodic}.toml" >>"$TMP/gatehouse.log" 2>&1 &
    GH_PID=$!
    wait_port "$GH_PORT" "$GH_PID" || { tail -20 "$TMP/gatehouse.log" >&2; exit 1; }
  else
    "$MOSQUITTO" -c "$TMP/mosquitto.conf" >>"$TMP/mosquitto.out" 2>&1 &
    MQ_PID=$!
    wait_port "$MQ_PORT" "$MQ_PID" || { cat "$TMP/mosquitto.out" "$TMP/mosquitto.log" >&2 || true; exit 1; }
  fi
}
stop_broker() {
  if [ "$1" = gatehouse ]; then stop_pid "$GH_PID"; GH_PID=""; else stop_pid "$MQ_PID"; MQ_PID=""; fi
}

args_for() { # scenario → extra arguments
  case "$1" in
    connstorm) echo "--storm-users $STORM_USERS" ;;
    idle|idle_storm) echo "--conns $IDLE_CONNS --max-broker-rss-mb 4096" ;;
    fanout) echo "--subscribers $FANOUT_SUBS" ;;
    *) echo "" ;;
  esac
}

# --- profile only ------------------------------------------------------------
if [ -n "$PROFILE" ]; then
  PROF_DIR=$ROOT/target/compare-profile
  mkdir -p "$PROF_DIR"
  start_broker gatehouse periodic
  # shellcheck disable=SC2046
  "$LOAD" --host "127.0.0.1:$GH_PORT" --username "$USER" --password "$PASSWORD" \
    --broker-pid "$GH_PID" --duration "$DURATION" --warmup 2 $(args_for "$PROFILE") "$PROFILE" \
    > "$PROF_DIR/load.txt" 2>&1 &
  LOAD_PID=$!
  sleep 3
  top -H -b -n 1 -d 1 -p "$GH_PID" 2>/dev/null | head -30 > "$PROF_DIR/top-threads.txt" || true
  # Software clock (works in VMs without hardware counters); DWARF call
  # graphs because the release build has no frame pointers.
  if perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$GH_PID" -o "$PROF_DIR/perf.data" \
       -- sleep "$((DURATION > 4 ? 3 : 1))" > "$PROF_DIR/perf-record.log" 2>&1; then
    {
      perf report -i "$PROF_DIR/perf.data" --stdio --no-children --sort comm,symbol --percent-limit 1.5 2>/dev/null
      perf report -i "$PROF_DIR/perf.data" --stdio --children --sort symbol --percent-limit 5 2>/dev/null
    } | grep -E '^ +[0-9]' | grep -v 'inlined)' | cut -c1-200 > "$PROF_DIR/perf-report.txt" || true
  else
    echo "perf record failed (see perf-record.log); install Debian's linux-perf" > "$PROF_DIR/perf-report.txt"
  fi
  wait "$LOAD_PID" || true
  stop_broker gatehouse
  echo "== profile of Gatehouse during $PROFILE (files in $PROF_DIR) =="
  cat "$PROF_DIR/load.txt"
  cat "$PROF_DIR/top-threads.txt"
  head -80 "$PROF_DIR/perf-report.txt"
  exit 0
fi

RESULTS=$TMP/results.txt
: > "$RESULTS"
WARMUP=2
[ "$DURATION" -le 4 ] && WARMUP=1

# run LABEL BROKER ROUND SCENARIO [extra load args...]: one fresh broker, one scenario.
run() {
  local label=$1 broker=$2 round=$3 scenario=$4 port pid durability=periodic out
  shift 4
  [ "$label" = qos1_sync ] && durability=sync
  start_broker "$broker" "$durability"
  if [ "$broker" = gatehouse ]; then port=$GH_PORT; pid=$GH_PID; else port=$MQ_PORT; pid=$MQ_PID; fi
  out=$(timeout 400 "$LOAD" --host "127.0.0.1:$port" --username "$USER" --password "$PASSWORD" \
        --broker-pid "$pid" --duration "$DURATION" --warmup "$WARMUP" "$@" "$scenario" 2>&1) || true
  stop_broker "$broker"
  out=$(printf '%s\n' "$out" | grep '^scenario=' | head -1 || true)
  [ -n "$out" ] || out="scenario=$scenario error=\"no result line\""
  out="label=$label broker=$broker round=$round ${out#scenario=$scenario }"
  echo "$out" >> "$RESULTS"
  log "$out"
}


# GATEHOUSE_SCENARIOS="qos1 fanout" runs a subset.
SCENARIOS="${GATEHOUSE_SCENARIOS:-fanin_qos0 qos1 p2p_qos1 fanout latency connstorm connstorm_repeat idle idle_storm}"
STARTED=$(date +%s)
for round in $(seq 1 "$ROUNDS"); do
  # Alternate which broker goes first, round by round.
  if [ $((round % 2)) -eq 1 ]; then order="gatehouse mosquitto"; else order="mosquitto gatehouse"; fi
  for s in $SCENARIOS; do
    for b in $order; do
      # shellcheck disable=SC2046
      run "$s" "$b" "$round" "$s" $(args_for "$s")
    done
    # Gatehouse in sync durability right after its periodic run, so that
    # both sides of the sync/periodic ratio see the same conditions.
    if [ "$s" = qos1 ]; then run qos1_sync gatehouse "$round" qos1; fi
    # The same storm with a Gatehouse token (JWT) as the CONNECT password,
    # right after the cached-password storm (mosquitto has no tokens).
    if [ "$s" = connstorm_repeat ]; then
      run connstorm_token gatehouse "$round" connstorm_token --api "http://127.0.0.1:$GH_HTTP_PORT"
    fi
  done
done

# Median of a field over the result lines with label $1 and broker $2.
median() {
  awk -v label="$1" -v broker="$2" -v field="$3" '
    {
      delete kv
      for (i = 1; i <= NF; i++) { eq = index($i, "="); if (eq) kv[substr($i, 1, eq - 1)] = substr($i, eq + 1) }
      if (kv["label"] == label && kv["broker"] == broker && (field in kv) && !("error" in kv)) v[n++] = kv[field] + 0
    }
    END {
      if (n == 0) { print "-"; exit }
      for (i = 1; i < n; i++) { x = v[i]; j = i - 1; while (j >= 0 && v[j] > x) { v[j + 1] = v[j]; j-- } v[j + 1] = x }
      m = (n % 2) ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2
      printf "%.6g\n", m
    }' "$RESULTS"
}

# Latency at half of mosquitto's best QoS 0 rate (its fan-in median).
MQ_MAX=$(median fanin_qos0 mosquitto rate)
if [ "$MQ_MAX" != "-" ]; then
  HALF=$(awk -v r="$MQ_MAX" 'BEGIN { printf "%d", r / 2 }')
  for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then order="gatehouse mosquitto"; else order="mosquitto gatehouse"; fi
    for b in $order; do run latency_half "$b" "$round" latency --rate "$HALF"; done
  done
fi
ELAPSED=$(( $(date +%s) - STARTED ))

# --- summary ---------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.*f\n", d, a / b }'; }
fmt() { awk -v a="$1" 'BEGIN { if (a == "-") print "-"; else if (a >= 100) printf "%.0f\n", a; else printf "%.3g\n", a }'; }
SUMMARY=$TMP/summary.md
{
  echo "Throughput (medians of $ROUNDS rounds, ${DURATION} s each; rate = per wall second; per CPU-s = per broker CPU second; CPU = broker cores busy):"
  echo
  echo "| scenario | Gatehouse rate | mosquitto rate | ratio | Gatehouse per CPU-s | mosquitto per CPU-s | ratio | Gatehouse CPU | mosquitto CPU |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  for s in fanin_qos0 qos1 p2p_qos1 fanout connstorm connstorm_repeat; do
    gr=$(median "$s" gatehouse rate); mr=$(median "$s" mosquitto rate)
    gp=$(median "$s" gatehouse per_broker_cpu_sec); mp=$(median "$s" mosquitto per_broker_cpu_sec)
    gc=$(median "$s" gatehouse broker_cpu); mc=$(median "$s" mosquitto broker_cpu)
    echo "| $s | $(fmt "$gr") | $(fmt "$mr") | $(ratio "$gr" "$mr") | $(fmt "$gp") | $(fmt "$mp") | $(ratio "$gp" "$mp") | $(fmt "$gc") | $(fmt "$mc") |"
  done
  echo
  echo "Units: fanin_qos0 messages received by the subscriber; qos1 PUBLISHes acknowledged (4 publishers, 64 in flight each, one persistent QoS 1 subscriber); p2p_qos1 messages delivered and acknowledged end to end; fanout deliveries to $FANOUT_SUBS subscribers; connstorm CONNECT→CONNACK→DISCONNECT cycles with fresh client ids over $STORM_USERS users; connstorm_repeat the same with 8 client ids reusing one user."
  echo
  echo "Latency (one QoS 0 publisher → one subscriber, medians of the runs' percentiles, microseconds):"
  echo
  echo "| rate msg/s | Gatehouse p50 | Gatehouse p99 | Gatehouse max | mosquitto p50 | mosquitto p99 | mosquitto max | p99 ratio |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  for l in latency latency_half; do
    rate=$(median "$l" mosquitto target_rate)
    g50=$(median "$l" gatehouse p50_us); g99=$(median "$l" gatehouse p99_us); gmax=$(median "$l" gatehouse max_us)
    m50=$(median "$l" mosquitto p50_us); m99=$(median "$l" mosquitto p99_us); mmax=$(median "$l" mosquitto max_us)
    echo "| $rate | $g50 | $g99 | $gmax | $m50 | $m99 | $mmax | $(ratio "$g99" "$m99") |"
  done
  echo
  for l in idle idle_storm; do
    case $l in
      idle) echo "Idle connections (target $IDLE_CONNS, opened 32 at a time):" ;;
      idle_storm) echo "Idle connections opened all at once, as a fleet reconnecting after a restart (target $IDLE_CONNS):" ;;
    esac
    echo
    echo "| | Gatehouse | mosquitto | ratio |"
    echo "|---|---:|---:|---:|"
    g=$(median $l gatehouse conns); m=$(median $l mosquitto conns)
    echo "| connections opened | $g | $m | |"
    g=$(median $l gatehouse rss_per_conn_bytes); m=$(median $l mosquitto rss_per_conn_bytes)
    echo "| RSS per connection (bytes) | $(fmt "$g") | $(fmt "$m") | $(ratio "$g" "$m") |"
    g=$(median $l gatehouse rss_slope_per_conn_bytes); m=$(median $l mosquitto rss_slope_per_conn_bytes)
    echo "| RSS per connection after the first 10 % (bytes) | $(fmt "$g") | $(fmt "$m") | $(ratio "$g" "$m") |"
    g=$(median $l gatehouse connects_per_sec); m=$(median $l mosquitto connects_per_sec)
    echo "| connects/s while opening | $(fmt "$g") | $(fmt "$m") | $(ratio "$g" "$m") |"
    g=$(median $l gatehouse idle_broker_cpu); m=$(median $l mosquitto idle_broker_cpu)
    echo "| broker CPU while idle | $g | $m | |"
    echo
  done
  echo
  echo "QoS 1 publish, Gatehouse durability sync vs periodic:"
  echo
  echo "| | periodic | sync | sync / periodic |"
  echo "|---|---:|---:|---:|"
  p=$(median qos1 gatehouse rate); s=$(median qos1_sync gatehouse rate)
  echo "| acknowledged PUBLISH/s | $(fmt "$p") | $(fmt "$s") | $(ratio "$s" "$p" 3) |"
  p=$(median qos1 gatehouse per_broker_cpu_sec); s=$(median qos1_sync gatehouse per_broker_cpu_sec)
  echo "| per broker CPU-s | $(fmt "$p") | $(fmt "$s") | $(ratio "$s" "$p" 3) |"
  echo
  echo "MQTT CONNECT with a Gatehouse token (JWT) as the password vs a cached password (connstorm_repeat; target ≥ 0.80):"
  echo
  echo "| | cached password | token | token / password |"
  echo "|---|---:|---:|---:|"
  p=$(median connstorm_repeat gatehouse rate); s=$(median connstorm_token gatehouse rate)
  echo "| connects/s | $(fmt "$p") | $(fmt "$s") | $(ratio "$s" "$p" 3) |"
  p=$(median connstorm_repeat gatehouse per_broker_cpu_sec); s=$(median connstorm_token gatehouse per_broker_cpu_sec)
  echo "| per broker CPU-s | $(fmt "$p") | $(fmt "$s") | $(ratio "$s" "$p" 3) |"
} > "$SUMMARY"

MACHINE=$TMP/machine.txt
{
  echo "nproc: $(nproc)"
  echo "kernel: $(uname -sr)"
  echo "mosquitto: $("$MOSQUITTO" -h 2>/dev/null | head -1)"
  echo "rustc: $(rustc --version 2>/dev/null || echo '?')"
  lscpu | head -15
} > "$MACHINE"

echo
echo "== Side by side with mosquitto ($COMMAND; ${ELAPSED} s) =="
cat "$MACHINE"
echo
cat "$SUMMARY"
echo
echo "== every run =="
cat "$RESULTS"

if [ "$WRITE_DOC" = 1 ]; then
  DOC=$ROOT/docs/performance.md
  [ -f "$DOC" ] || printf '# Performance\n' > "$DOC"
  SECTION=$TMP/section.md
  {
    echo "## Side by side with mosquitto"
    echo
    echo "Produced by \`$COMMAND\` on $(date -u +%Y-%m-%d) (${ELAPSED} s). Each figure is the median of"
    echo "$ROUNDS runs, each on a freshly started broker, Gatehouse and mosquitto in alternation;"
    echo "both brokers on loopback with the same user holding $RULES ACL rules (mosquitto's"
    echo "granting \`bench/#\` line is listed $CATCHALL), Gatehouse \`durability = \"periodic\"\`,"
    echo "mosquitto \`persistence false\`, queues of 100,000 messages on both. The load generator"
    echo "(\`benches/load\`) runs on the same two cores; its CPU share is in every run's line below."
    echo
    echo '```'
    cat "$MACHINE"
    echo '```'
    echo
    cat "$SUMMARY"
    echo
    echo "<details><summary>Every run</summary>"
    echo
    echo '```'
    cat "$RESULTS"
    echo '```'
    echo
    echo "</details>"
    echo
  } > "$SECTION"
  # Replace the section (up to the next "## " heading) or append it.
  awk -v section="$SECTION" '
    BEGIN { while ((getline line < section) > 0) text = text line "\n" }
    /^## / { if (skip) skip = 0 }
    /^## Side by side with mosquitto[[:space:]]*$/ { printf "%s", text; skip = 1; done = 1; next }
    !skip { print }
    END { if (!done) { printf "\n%s", text } }
  ' "$DOC" > "$TMP/doc.md"
  cp "$TMP/doc.md" "$DOC"
  log "wrote the table into docs/performance.md"
fi
