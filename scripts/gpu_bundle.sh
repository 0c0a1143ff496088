#!/usr/bin/env bash
# Builds, on a machine without a GPU, everything tests/gpu/run.sh runs on a GPU host,
# into build-gpu-bundle/ and build-gpu-bundle.tar.xz (ignored; the device tool carries
# the archive: carry build-gpu-bundle.tar.xz).
#
# The GPU hosts have the card's runtime only (nvcc, CMake, ninja, Python with torch
# 2.11.0+cu130) and no Debian -dev packages and no network, so the bundle holds:
#   bin/   ingotd, ingot and the GPU test/bench binaries, built with -DINGOT_CUDA=ON
#          in build-cuda/ (ccache shares the objects with build/)
#   lib/   the non-system shared libraries they link (gRPC, protobuf, absl, spdlog,
#          fmt, re2, yaml-cpp, prometheus-cpp...), not libtorch/CUDA (the host's torch
#          provides those; run.sh points the loader at its torch/lib and nvidia/*/lib)
#   smol-meta.gguf  the default model's metadata and vocabulary without its tensors
#          (the model itself is ~100 MB; run.sh fills random weights of its shapes)
# Everything that travels must stay under 64 MiB: the folder alone is ~48 MiB, so it
# travels as build-gpu-bundle.tar.xz (~11 MiB); the script prints the total.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=build-gpu-bundle
BINS=(ingotd ingot backend_test placement_test forward_bench random_gguf)
scripts/setup.sh
INGOT_BUILD_DIR=build-cuda INGOT_CMAKE_ARGS="-DINGOT_CUDA=ON" scripts/build.sh "${BINS[@]}"
rm -rf "$OUT"
mkdir -p "$OUT/bin" "$OUT/lib"
for b in "${BINS[@]}"; do cp "build-cuda/bin/$b" "$OUT/bin/"; done
strip --strip-unneeded "$OUT"/bin/* 2>/dev/null || true
# Shared libraries outside the C/C++ runtime, the torch wheel and the CUDA toolkit.
for b in "${BINS[@]}"; do ldd "build-cuda/bin/$b"; done | awk '$3 ~ /^\// {print $3}' | sort -u |
  grep -v -E '/(libc|libm|libpthread|libdl|librt|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so|/\.venv-torch/|/usr/local/cuda|/libcuda\.so' |
  while read -r lib; do cp -L "$lib" "$OUT/lib/"; done
strip --strip-unneeded "$OUT"/lib/* 2>/dev/null || true
build/bin/random_gguf --strip models/SmolLM2-135M-Instruct.Q4_1.gguf "$OUT/smol-meta.gguf" 2>/dev/null ||
  build-cuda/bin/random_gguf --strip models/SmolLM2-135M-Instruct.Q4_1.gguf "$OUT/smol-meta.gguf"
# The tree the binaries were built from: a bundle older than the code is the first thing
# tests/gpu/session.sh reports.
echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!build-gpu-bundle*' || echo '+uncommitted')" \
  > "$OUT/REVISION"
# What travels is the archive (the binaries compress ~4x): carry build-gpu-bundle.tar.xz;
# run.sh and bench_7b.sh unpack it on the host when the folder is not there.
rm -f "$OUT.tar.xz"
XZ_OPT="-6 -T2" tar cJf "$OUT.tar.xz" "$OUT"
tree_mib=$(( $(git ls-files -z | xargs -0 du -ck 2>/dev/null | tail -1 | cut -f1) / 1024 ))
echo "gpu_bundle: $(du -sh "$OUT" | cut -f1) in $OUT ($(ls "$OUT/lib" | wc -l) libraries)," \
  "$(du -sh "$OUT.tar.xz" | cut -f1) as $OUT.tar.xz; with the tree ${tree_mib} MiB:" \
  "$(( $(du -sk "$OUT.tar.xz" | cut -f1) / 1024 + tree_mib )) MiB of 64 travel"
