#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs the packages and the
# default model (scripts/setup.sh), builds, and runs every test under ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
# The CUDA variant (-DINGOT_CUDA=ON: the torch row's CUDA half and kernels/cuda) is
# compiled and linked here too, so it cannot rot on machines without a GPU; its binaries
# run on a GPU host (scripts/gpu_bundle.sh, tests/gpu/run.sh). ccache shares the objects.
if [ -x /usr/local/cuda/bin/nvcc ] || command -v nvcc > /dev/null; then
  INGOT_BUILD_DIR=build-cuda INGOT_CMAKE_ARGS="-DINGOT_CUDA=ON" \
    scripts/build.sh ingotd ingot backend_test placement_test forward_bench random_gguf
fi
cd build
ctest --output-on-failure --timeout 900 "$@"
