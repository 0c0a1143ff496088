# Sourced by tests/gpu/run.sh and bench_7b.sh on a GPU host: ROOT, B (the bundle,
# unpacked from build-gpu-bundle.tar.xz when only the archive travelled), TORCH_DIR,
# TORCH_VER, and the loader path to the bundle's libraries, the host torch's libtorch
# and its nvidia/*/lib.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
B=$ROOT/build-gpu-bundle
if [ ! -d "$B" ] && [ -f "$B.tar.xz" ]; then
  tar xJf "$B.tar.xz" -C "$ROOT" 2>/dev/null ||
    python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" "$B.tar.xz" "$ROOT"
fi
TORCH_DIR=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null)
TORCH_VER=$(python3 -c 'import torch; print(torch.__version__)' 2>/dev/null)
if [ -z "$TORCH_DIR" ] || [[ "$TORCH_VER" != 2.11.* ]]; then
  echo "$(basename "$0"): torch 2.11.x is needed (found '${TORCH_VER:-none}')"
  exit 2
fi
NV=$(ls -d "$(dirname "$TORCH_DIR")"/nvidia/*/lib 2>/dev/null | tr '\n' ':')
HOST_LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}
export LD_LIBRARY_PATH="$B/lib:$TORCH_DIR/lib:$NV${LD_LIBRARY_PATH:-}"
source "$ROOT/tests/gpu/helpers.sh"  # py (python3 on HOST_LD_LIBRARY_PATH), publish
