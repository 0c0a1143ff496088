#!/usr/bin/env bash
# Makes .venv-python (pinned in tests/http/requirements.txt) for the Python tests: the
# `openai` client against ingotd's HTTP API (tests/http) and the client/python
# package, installed into it from the source tree (its gRPC stubs generated from
# proto/ by grpcio-tools as it builds). Idempotent and quiet: returns at once when the
# venv matches the requirements, and reinstalls only the package when its sources or
# proto/ changed. Runs without stdin.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv-python
REQ=tests/http/requirements.txt
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  PYTHON=python3
  if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then
    PYTHON=/usr/bin/python3
  fi
  echo "setup_venv: installing the Python test environment into $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --requirement "$REQ" </dev/null
  echo "$want" >"$VENV/.requirements.sha256"
fi
if [ -f client/python/pyproject.toml ]; then
  sources=$(find client/python proto -type f -not -path '*/build/*' -not -path '*.egg-info*' \
              -not -path '*/__pycache__/*' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$VENV/.client.sha256" 2>/dev/null)" != "$sources" ]; then
    # The requirements above hold the build backend and grpcio-tools: nothing is
    # downloaded here. A copy is built, so the source tree stays clean.
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    cp -r client/python "$tmp/python"
    cp -r proto "$tmp/python/proto"  # setup.py reads ../../proto in the tree, proto/ in a copy
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
      --no-build-isolation --no-deps --force-reinstall "$tmp/python" </dev/null
    echo "$sources" >"$VENV/.client.sha256"
  fi
fi
