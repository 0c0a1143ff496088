#!/usr/bin/env bash
# Regenerates the committed golden vectors under tests/data/ from peers installed
# from PyPI (see requirements.txt): gguf (dequantization), HF tokenizers and llama.cpp
# (tokenization, logits, greedy generation), jinja2 (chat templates).
# Needs the default model (scripts/fetch_model.sh). Takes ~10 minutes the first time
# (llama-cpp-python builds llama.cpp from source), seconds afterwards.
#   tests/reference/regenerate.sh            every generator
#   tests/reference/regenerate.sh gguf       only gen_gguf.py (any gen_*.py stem)
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv-ref
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/reference/requirements.txt
scripts/fetch_model.sh
if [ $# -gt 0 ]; then
  for g in "$@"; do "$VENV/bin/python" "tests/reference/gen_$g.py"; done
else
  # gen_quant_* other than gen_quant_gguf need torch: tests/reference/regenerate_quant.sh.
  for g in tests/reference/gen_*.py; do
    case "$g" in */gen_quant_gguf.py) ;; */gen_quant_*) continue ;; esac
    "$VENV/bin/python" "$g"
  done
fi
