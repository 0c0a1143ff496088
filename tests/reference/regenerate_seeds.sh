#!/usr/bin/env bash
# Regenerates the seed-model vectors under tests/data/formats/ (smollm3-*, torchao-*,
# gguf-smollm3-*) with transformers, torchao and huggingface_hub pinned in
# requirements-seeds.txt, in .venv-seeds. CPU only; a few minutes once the venv exists
# (torch is a large download). smollm3_gguf also converts with llama.cpp's
# convert_hf_to_gguf.py (llama_cpp_converter.sh) and takes llama.cpp's logits in .venv-ref
# (llama-cpp-python, built from source the first time: ~10 minutes). torchao_int4 needs an
# AVX-512 CPU (it records ATen's int4 packing under each CPU capability).
#   tests/reference/regenerate_seeds.sh              everything
#   tests/reference/regenerate_seeds.sh smollm3      some (smollm3 smollm3_gguf torchao torchao_int4 hf_cache)
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv-seeds
REF=.venv-ref
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/reference/requirements-seeds.txt
want_gguf=$([ $# -eq 0 ] && echo 1 || echo 0)
for f in "$@"; do [ "$f" = smollm3_gguf ] && want_gguf=1; done
[ "$want_gguf" = 1 ] && tests/reference/llama_cpp_converter.sh "$VENV/bin/pip"
"$VENV/bin/python" tests/reference/gen_seeds.py "$@"
if [ "$want_gguf" = 1 ]; then
  if [ ! -x "$REF/bin/python" ]; then
    python3 -m venv "$REF"
  fi
  "$REF/bin/pip" install --quiet --disable-pip-version-check -r tests/reference/requirements.txt
  "$REF/bin/python" tests/reference/gen_formats_gguf.py --logits seeds
fi
