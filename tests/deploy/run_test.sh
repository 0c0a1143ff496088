#!/usr/bin/env bash
# Runs one tests/deploy script with .venv-deploy's Python (setup_tools.sh) when it is
# there, python3 otherwise: the script then skips, or under CI=true fails, naming the
# missing package.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python="$here/../../.venv-deploy/bin/python"
[ -x "$python" ] || python=python3
exec "$python" "$here/$1"
