#!/usr/bin/env bash
# Runs every check and test. Installs what the tests need (Debian's
# mosquitto-clients, PyPI's paho-mqtt) when it is missing; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mosquitto_pub >/dev/null || ! command -v mosquitto_sub >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq mosquitto-clients >/dev/null
fi

# Eclipse paho (Python) for the real-client tests.
if ! python3 -c 'import paho.mqtt' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check 'paho-mqtt>=2,<3'
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
