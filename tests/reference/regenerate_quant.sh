#!/usr/bin/env bash
# Regenerates the quantization golden vectors under tests/data/quant/ from the peers
# pinned in requirements-quant.txt (torch, bitsandbytes, hqq, optimum-quanto, torchao,
# gguf, numpy), installed into .venv-quant. Every tests/reference/gen_quant_*.py runs in
# that venv except gen_quant_gguf.py, which needs llama.cpp and runs in .venv-ref through
# regenerate.sh. The generators run on the CPU; no GPU is needed.
# Packages that must go in without their dependencies (CUDA-only packages whose pure-torch
# modules a generator imports directly) are listed, if any, in
# requirements-quant-nodeps.txt and installed with --no-deps --no-build-isolation.
#   tests/reference/regenerate_quant.sh              every gen_quant_*.py (but gguf)
#   tests/reference/regenerate_quant.sh torch hqq    only gen_quant_torch.py, gen_quant_hqq.py
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv-quant
REQ=tests/reference/requirements-quant.txt
NODEPS=tests/reference/requirements-quant-nodeps.txt
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQ"
if [ -f "$NODEPS" ]; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
    -r "$NODEPS"
fi

run() {
  echo "== $1" >&2
  "$VENV/bin/python" "$1"
}

if [ $# -gt 0 ]; then
  for stem in "$@"; do
    stem=${stem#quant_}
    if [ "$stem" = gguf ]; then
      echo "gen_quant_gguf.py runs in .venv-ref: tests/reference/regenerate.sh quant_gguf" >&2
      exit 2
    fi
    run "tests/reference/gen_quant_$stem.py"
  done
else
  for g in tests/reference/gen_quant_*.py; do
    [ "$(basename "$g")" = gen_quant_gguf.py ] && continue
    run "$g"
  done
fi
