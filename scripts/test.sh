#!/usr/bin/env bash
# Runs every check and test. Installs what the tests need (Debian's
# mosquitto-clients and openssl, PyPI's paho-mqtt) when it is missing; safe
# to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
if ! command -v mosquitto_pub >/dev/null || ! command -v mosquitto_sub >/dev/null; then
  missing+=(mosquitto-clients)
fi
# tests/tls.rs makes a CSR the way docs/tls.md tells device owners to.
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Eclipse paho (Python) for the real-client tests.
if ! python3 -c 'import paho.mqtt' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check 'paho-mqtt>=2,<3'
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
