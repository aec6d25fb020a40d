#!/usr/bin/env bash
# The admin page (web/, docs/admin-ui.md). Installs what it needs when it
# is missing: Debian's chromium (and Node.js with npm), then the npm
# packages exactly as web/package-lock.json pins them (no browser
# download: playwright-core drives /usr/bin/chromium). Type-checks the
# TypeScript, checks that a fresh build reproduces the committed
# web/dist/ byte for byte (building the broker never needs Node), and runs
# the browser tests against the debug broker. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=""
command -v node >/dev/null || missing="$missing nodejs"
command -v npm >/dev/null || missing="$missing npm"
[ -x /usr/bin/chromium ] || missing="$missing chromium"
command -v mosquitto_sub >/dev/null || missing="$missing mosquitto-clients"
command -v curl >/dev/null || missing="$missing curl"
if [ -n "$missing" ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # shellcheck disable=SC2086
  $sudo apt-get install -y -qq $missing >/dev/null
fi

export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
# Install scripts are not needed (esbuild's binary comes as a package).
(cd web && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)

(cd web && npx --no-install tsc --noEmit -p .)
fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
(cd web && node build.mjs --out "$fresh" >/dev/null)
if ! diff -r web/dist "$fresh"; then
  echo "web/dist/ is not what web/src/ builds: run 'cd web && npm ci && npm run build' and commit web/dist/" >&2
  exit 1
fi

cargo build --locked --bin gatehouse
GATEHOUSE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/gatehouse" \
  node --test --test-reporter=spec web/tests/
