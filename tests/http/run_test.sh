#!/usr/bin/env bash
# Runs one pytest file (a path) with .venv-python (tests/http/setup_venv.sh). Without the venv
# the test reports skipped (exit 77), or fails under CI=true.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python="$here/../../.venv-python/bin/python"
if [ ! -x "$python" ]; then
  echo "missing .venv-python: run tests/http/setup_venv.sh (scripts/setup.sh does)" >&2
  [ "${CI:-}" = "true" ] && exit 1
  exit 77
fi
# The client/python package in the venv follows the source tree (a quick reinstall
# when its sources or proto/ changed; nothing to download).
"$here/setup_venv.sh"
cd "$(dirname "$1")"
exec "$python" -m pytest -p no:cacheprovider -q -rs "$(basename "$1")" "${@:2}"
