#!/usr/bin/env bash
# The third-party OAuth client library the tests drive Gatehouse with
# (authlib, pinned, with requests) in a venv under target/; safe to run
# again. tests/oauth_library.rs runs tests/oauth_client.py with it.
set -euo pipefail
cd "$(dirname "$0")/.."

AUTHLIB_VERSION=1.9.6
REQUESTS_VERSION=2.34.2
VENV="${GATEHOUSE_OAUTH_VENV:-$PWD/target/oauth-venv}"
if ! "$VENV/bin/python" -c "import authlib, requests, sys
sys.exit(authlib.__version__ != '$AUTHLIB_VERSION' or requests.__version__ != '$REQUESTS_VERSION')" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "authlib==$AUTHLIB_VERSION" "requests==$REQUESTS_VERSION"
fi
