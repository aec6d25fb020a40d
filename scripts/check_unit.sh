#!/usr/bin/env bash
# `systemd-analyze verify` on dist/gatehouse.service, with ExecStart
# pointing at the binary just built (verify checks that it exists). Any
# warning fails the check, not only errors. Without systemd-analyze, or
# where it cannot run (no systemd in this container), says so and skips.
set -euo pipefail
cd "$(dirname "$0")/.."
binary="${1:-target/debug/gatehouse}"
if ! command -v systemd-analyze >/dev/null; then
  echo "check_unit: SKIPPED: systemd-analyze is not installed"
  exit 0
fi
[ -x "$binary" ] || cargo build --locked --quiet
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|/usr/local/bin/gatehouse|$(realpath "$binary")|" dist/gatehouse.service >"$tmp/gatehouse.service"
if ! systemd-analyze verify "$tmp/gatehouse.service" >"$tmp/out" 2>&1; then
  if grep -qiE "not been booted with systemd|Failed to (connect|initialize)|Host is down" "$tmp/out"; then
    echo "check_unit: SKIPPED: systemd-analyze cannot run here: $(head -1 "$tmp/out")"
    exit 0
  fi
  cat "$tmp/out"
  echo "check_unit: dist/gatehouse.service FAILED systemd-analyze verify"
  exit 1
fi
if [ -s "$tmp/out" ]; then
  cat "$tmp/out"
  echo "check_unit: dist/gatehouse.service has warnings"
  exit 1
fi
echo "check_unit: dist/gatehouse.service passes systemd-analyze verify"
