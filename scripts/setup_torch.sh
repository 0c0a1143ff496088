#!/usr/bin/env bash
# libtorch for the torch backend: the PyPI wheel torch==2.11.0 (a CUDA 13.0 build that
# carries the C++ distribution: headers, libtorch_cpu/libc10, libtorch_cuda) in
# .venv-torch, without its Python dependencies. libtorch_cpu needs the CUDA runtime and
# CUPTI libraries at load time even on a machine without a GPU: their 13.0 wheels come
# too (about 1.3 GB on disk in all). Idempotent.
#   scripts/setup_torch.sh          libtorch_cpu (+ libtorch_cuda's headers and library)
#   scripts/setup_torch.sh --full   plus every CUDA library libtorch_cuda loads (cuBLAS,
#                                   cuDNN, NCCL...; ~3 GB): what a CUDA image ships
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=2.11.0
VENV=.venv-torch
MODE=cpu
if [ "${1:-}" = "--full" ]; then MODE=full; fi
STAMP="$VENV/.ingot-torch-$TORCH_VERSION-$MODE"
if [ -f "$STAMP" ] || { [ "$MODE" = cpu ] && [ -f "$VENV/.ingot-torch-$TORCH_VERSION-full" ]; }; then exit 0; fi
echo "setup_torch: installing torch==$TORCH_VERSION ($MODE) into $VENV"
python3 -m venv "$VENV"
if [ "$MODE" = full ]; then
  # The wheel's own dependency pins (cuda-toolkit 13.0.2, cuDNN, NCCL, ...).
  "$VENV/bin/pip" install -q --disable-pip-version-check "torch==$TORCH_VERSION"
else
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps \
    "torch==$TORCH_VERSION" nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
fi
touch "$STAMP"
