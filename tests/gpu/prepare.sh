#!/usr/bin/env bash
# Everything tests/gpu/session.sh needs, made here on the CPU machine before a GPU lease
# is spent, then the device call to make:
#   1. scripts/gpu_bundle.sh: the CUDA build of ingot's binaries -> build-gpu-bundle.tar.xz
#   2. torchao's wheel (pinned in tests/reference/requirements-seeds.txt) -> .bench/wheels/
#   3. unless --no-dry-run: BENCH_DRY_RUN=1 tests/gpu/bench_7b.sh (the benchmark script,
#      every row on a tiny model on this CPU: about 3 minutes)
#   4. the size of what travels (64 MiB at most) and the run() call to make
#   tests/gpu/prepare.sh [--no-dry-run]
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/gpu_bundle.sh
VERSION=$(sed -n 's/^torchao==\([0-9.]*\).*/\1/p' tests/reference/requirements-seeds.txt | head -1)
mkdir -p .bench/wheels
if ! ls .bench/wheels/torchao-"$VERSION"-*.whl > /dev/null 2>&1; then
  python3 -m pip download --quiet --disable-pip-version-check --no-deps -d .bench/wheels "torchao==$VERSION"
fi
CARRY='"build-gpu-bundle.tar.xz", ".bench/wheels"'
if [ -f .bench/llama-cuda.tar.xz ]; then CARRY="$CARRY, \".bench/llama-cuda.tar.xz\""; fi
if [ "${1:-}" != --no-dry-run ]; then
  [ -f build/bin/forward_bench ] || scripts/build.sh forward_bench random_gguf
  # llama.cpp's row too when the CPU peer is built (tests/bench/build_llama_server.sh)
  LB=.bench/llama.cpp-build/bin/llama-bench
  BENCH_LLAMA_BENCH=$([ -x "$LB" ] && echo "$PWD/$LB") BENCH_DRY_RUN=1 BENCH_RUNS=1 INGOT_BENCH_DIR=/tmp/ingot-dry-7b \
    tests/gpu/bench_7b.sh /tmp/ingot-dry-out | tail -20
  if grep -q FAIL /tmp/ingot-dry-out/bench7b_summary.txt; then
    echo "prepare: the dry run has FAIL rows (/tmp/ingot-dry-out): fix them before the lease" >&2
    exit 1
  fi
fi
tree_kib=$(git ls-files -z | xargs -0 du -ck 2>/dev/null | tail -1 | cut -f1)
carried_kib=$(du -ck build-gpu-bundle.tar.xz .bench/wheels $( [ -f .bench/llama-cuda.tar.xz ] && echo .bench/llama-cuda.tar.xz) |
  tail -1 | cut -f1)
echo "prepare: bundle $(cat build-gpu-bundle/REVISION); $(( (tree_kib + carried_kib) / 1024 )) MiB of 64 travel"
echo "prepare: now run(command=\"tests/gpu/session.sh \$OUT\", carry=[$CARRY], timeout_s=600), then give_back"
