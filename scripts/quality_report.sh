#!/usr/bin/env bash
# One command for the quantization quality report (docs/quality.md + docs/quality.json):
# sets up packages and the default model, builds, installs llama-cpp-python into
# .venv-ref for the speed comparison, then runs scripts/quality_report.py (its options
# pass through: --methods hqq,gptq --eval-tokens 2048 --threads 2 --no-peer ...).
# Takes ~30-60 minutes on 2 cores; run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
if [[ " $* " != *" --no-peer "* ]]; then
  [ -x .venv-ref/bin/python ] || python3 -m venv .venv-ref
  .venv-ref/bin/pip install --quiet --disable-pip-version-check -r tests/reference/requirements.txt
fi
exec python3 scripts/quality_report.py "$@"
