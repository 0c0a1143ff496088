#!/usr/bin/env bash
# Regenerates the checkpoint-format vectors under tests/data/formats/ (all but
# containers/) with the tools that define each format, pinned in
# requirements-formats.txt (+ requirements-formats-nodeps.txt, installed with --no-deps)
# into .venv-formats. The GGUF files come from llama.cpp's convert_hf_to_gguf.py, unpacked
# from the llama-cpp-python sdist pinned in requirements.txt, and their logits from
# llama-cpp-python in .venv-ref (built as regenerate.sh builds it: ~10 minutes the first
# time). CPU only; about 10 minutes once the venvs exist.
#   tests/reference/regenerate_formats.sh            every family
#   tests/reference/regenerate_formats.sh hqq gguf   some (hf bnb hqq gptq awq mlx quanto gguf)
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv-formats
REF=.venv-ref
PIP=(--quiet --disable-pip-version-check)

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install "${PIP[@]}" -r tests/reference/requirements-formats.txt
"$VENV/bin/pip" install "${PIP[@]}" --no-deps --no-build-isolation \
  -r tests/reference/requirements-formats-nodeps.txt

families=("$@")
[ ${#families[@]} -eq 0 ] && families=(hf bnb hqq gptq awq mlx quanto gguf)
want_gguf=0
for f in "${families[@]}"; do [ "$f" = gguf ] && want_gguf=1; done

if [ $want_gguf = 1 ]; then
  # llama.cpp's converter, from the same llama-cpp-python release as .venv-ref.
  tests/reference/llama_cpp_converter.sh "$VENV/bin/pip"
  if [ ! -x "$REF/bin/python" ]; then
    python3 -m venv "$REF"
  fi
  "$REF/bin/pip" install "${PIP[@]}" -r tests/reference/requirements.txt
fi

"$VENV/bin/python" tests/reference/gen_formats.py "${families[@]}"
if [ $want_gguf = 1 ]; then
  "$REF/bin/python" tests/reference/gen_formats_gguf.py --logits
fi
