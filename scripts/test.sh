#!/usr/bin/env bash
# Runs every check and test. Installs what the tests need when it is
# missing (Debian's mosquitto-clients, mosquitto (mosquitto_passwd,
# mosquitto_ctrl and the dynamic-security plugin for tests/migration.rs),
# systemd (systemd-analyze for the unit check), openssl, curl and jq, PyPI's
# paho-mqtt, authlib in a venv for the OAuth tests, schemathesis in a
# venv for the API fuzzing, and for the admin page's browser tests
# Debian's chromium and Node.js with the npm packages of
# web/package-lock.json, by scripts/web_test.sh); safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=""
command -v mosquitto_pub >/dev/null && command -v mosquitto_sub >/dev/null || missing="$missing mosquitto-clients"
# tests/tls.rs makes a CSR the way docs/tls.md tells device owners to.
command -v openssl >/dev/null || missing="$missing openssl"
command -v curl >/dev/null || missing="$missing curl"
command -v mosquitto_passwd >/dev/null && command -v mosquitto_ctrl >/dev/null \
  && ls /usr/lib/*/mosquitto_dynamic_security.so >/dev/null 2>&1 || missing="$missing mosquitto"
command -v systemd-analyze >/dev/null || missing="$missing systemd"
# docs/oauth.md's examples (run by tests/oauth_docs.rs) read JSON with jq.
command -v jq >/dev/null || missing="$missing jq"
python3 -c 'import venv, ensurepip' 2>/dev/null || missing="$missing python3-venv"
if [ -n "$missing" ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # shellcheck disable=SC2086
  $sudo apt-get install -y -qq $missing >/dev/null
fi

# Eclipse paho (Python) for the real-client tests.
if ! python3 -c 'import paho.mqtt' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check 'paho-mqtt>=2,<3'
fi

# authlib (pinned) for tests/oauth_library.rs.
bash scripts/oauth_venv.sh

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
# The admin page: build reproducibility and browser tests in Debian's
# chromium (installs chromium, Node.js and the locked npm packages).
bash scripts/web_test.sh
# The systemd unit, as systemd reads it.
bash scripts/check_unit.sh target/debug/gatehouse
# The admin API fuzzed from its OpenAPI document (schemathesis, pinned).
bash scripts/fuzz_api.sh
