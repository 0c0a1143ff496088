#!/usr/bin/env bash
# Configures and builds ingot into build/ (Ninja, ccache, Release). Extra arguments go
# to ninja (targets). $INGOT_CMAKE_ARGS adds CMake options at configure time
# (-DINGOT_CUDA=ON, -DINGOT_TORCH=OFF); $INGOT_BUILD_DIR picks another build folder.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${INGOT_BUILD_DIR:-build}
# Relative paths in ccache's keys, so build/ and build-cuda/ (and other checkouts) share
# compiled objects.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  # shellcheck disable=SC2086
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release ${INGOT_CMAKE_ARGS:-}
fi
cmake --build "$BUILD_DIR" -- "$@"
