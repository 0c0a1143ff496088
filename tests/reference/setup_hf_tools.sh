#!/usr/bin/env bash
# Installs what tests/reference/make_hf_from_gguf.py needs into .venv-hf (pinned in
# requirements-hf.txt: gguf, numpy, safetensors, tokenizers; no torch), for the
# integration test that turns the default model into a Hugging Face directory at test
# time. Idempotent and quiet: returns at once when the venv matches requirements-hf.txt.
# Runs as root or not, without stdin.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv-hf
REQ=tests/reference/requirements-hf.txt
STAMP=$VENV/.requirements.sha256
want=$(sha256sum "$REQ" tests/reference/setup_hf_tools.sh | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
# Debian's python3 (python3-venv comes from scripts/setup.sh); any python3 otherwise.
PYTHON=python3
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then
  PYTHON=/usr/bin/python3
fi
echo "setup_hf_tools: installing the GGUF -> Hugging Face converter's packages into $VENV"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input --no-deps \
  --only-binary :all: --requirement "$REQ" </dev/null
# The converter's own imports, so a missing package fails here rather than in a test.
"$VENV/bin/python" -c 'import gguf, numpy, safetensors.numpy, tokenizers' </dev/null
echo "$want" >"$STAMP"
