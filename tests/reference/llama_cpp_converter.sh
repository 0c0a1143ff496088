#!/usr/bin/env bash
# Unpacks llama.cpp's convert_hf_to_gguf.py (with its conversion/ package and gguf-py/)
# into tests/reference/.cache/llama.cpp/ from the llama-cpp-python sdist pinned in
# requirements.txt, so that GGUF vectors are converted by the same llama.cpp that
# .venv-ref's llama-cpp-python runs. Skips when that version is already unpacked.
# Used by regenerate_formats.sh (gguf) and regenerate_seeds.sh (smollm3_gguf).
#   tests/reference/llama_cpp_converter.sh PIP   # PIP: a pip to download the sdist with
set -euo pipefail
cd "$(dirname "$0")/../.."
PIP_BIN=$1
CACHE=tests/reference/.cache
lcpp=$(sed -n 's/^llama-cpp-python==//p' tests/reference/requirements.txt)
conv=$CACHE/llama.cpp
if [ "$(cat "$conv/VERSION" 2>/dev/null)" != "llama-cpp-python $lcpp" ]; then
  mkdir -p "$CACHE/sdist"
  "$PIP_BIN" download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    "llama-cpp-python==$lcpp" -d "$CACHE/sdist"
  rm -rf "$conv" && mkdir -p "$conv"
  top=llama_cpp_python-$lcpp/vendor/llama.cpp
  tar xzf "$CACHE/sdist/llama_cpp_python-$lcpp.tar.gz" -C "$conv" --strip-components=3 \
    "$top/convert_hf_to_gguf.py" "$top/conversion" "$top/gguf-py"
  echo "llama-cpp-python $lcpp" > "$conv/VERSION"
fi
