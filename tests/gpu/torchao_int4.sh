#!/usr/bin/env bash
# torchao 0.18's CUDA int4 weight (Int4WeightOnlyConfig(int4_packing_format=
# "tile_packed_to_4d") -> Int4TilePackedTo4dTensor), made by torchao on cuda:0 from the
# tiny Llama of tests/data/formats/hf-f32 (tests/reference/gpu_torchao_int4.py says what
# it writes). One short call of the device tool; torchao's wheel travels as an ignored
# path, since the GPU host has no network:
#   here:   mkdir -p .bench/wheels && cp /tmp/wheels/torchao-0.18.0-*.whl .bench/wheels/
#           (or `pip download torchao==0.18.0 --no-deps -d .bench/wheels`)
#   device: run(command="tests/gpu/torchao_int4.sh $OUT", carry=[".bench/wheels"], timeout_s=240)
#   here:   python3 tests/reference/gen_torchao_int4_tile.py <files_at>   (in .venv-seeds;
#           checks the device's output and writes tests/data/formats/torchao-int4-tile-g32)
# Needs only the host's torch (2.11 there) and python; the wheel is unzipped onto
# PYTHONPATH (no pip, no dependencies: torchao 0.18 declares none it needs here). Takes
# about 30 s (torchao's import, CUDA start, 28 small linears); capped at 120 s.
#   tests/gpu/torchao_int4.sh OUT_DIR [--no-cuda]
# --no-cuda stops before CUDA: on any machine with torch, checks the script against the
# wheel (imports, weights, configs); --rehearse-cpu runs every step on the CPU with the
# two CUDA-only ATen ops stood in for (see gpu_torchao_int4.py). Writes into OUT_DIR:
# torchao_int4.tgz (all of gpu_torchao_int4.py's output), info.json, run.log, host.txt,
# files.txt.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT_DIR=${1:-${OUT:-/tmp/ingot-torchao-int4}}
shift || true
mkdir -p "$OUT_DIR"
WHEEL=${TORCHAO_WHEEL:-$(ls .bench/wheels/torchao-0.18.0-*.whl 2>/dev/null | head -1)}
if [ -z "$WHEEL" ] || [ ! -f "$WHEEL" ]; then
  echo "torchao_int4.sh: no torchao 0.18.0 wheel in .bench/wheels/ (carry it: see the header)" | tee "$OUT_DIR/error.txt"
  exit 2
fi
PY=${PYTHON:-python3}
SITE=$(mktemp -d /tmp/torchao-site.XXXXXX)
STAGE=$(mktemp -d /tmp/torchao-out.XXXXXX)
trap 'rm -rf "$SITE" "$STAGE"' EXIT
"$PY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$WHEEL" "$SITE" || exit 2
{
  echo "wheel: $(basename "$WHEEL")"
  "$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)'
  command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
} > "$OUT_DIR/host.txt" 2>&1
cat "$OUT_DIR/host.txt"
PYTHONUNBUFFERED=1 PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" timeout 120 \
  "$PY" tests/reference/gpu_torchao_int4.py "$STAGE" "$@" > "$OUT_DIR/run.log" 2>&1
rc=$?
tail -c 6000 "$OUT_DIR/run.log"
# The device tool brings back at most 8 files: everything else travels in one archive.
cp "$STAGE/info.json" "$OUT_DIR/" 2>/dev/null
(cd "$STAGE" && find . -type f -printf '%8s %p\n' | sort -k2) | tee "$OUT_DIR/files.txt"
"$PY" -c "import sys, tarfile; t = tarfile.open(sys.argv[1], 'w:gz'); t.add(sys.argv[2], arcname='.'); t.close()" \
  "$OUT_DIR/torchao_int4.tgz" "$STAGE" || rc=3
echo "torchao_int4.sh: exit $rc; $(du -b "$OUT_DIR/torchao_int4.tgz" 2>/dev/null | cut -f1) bytes in $OUT_DIR/torchao_int4.tgz"
exit $rc
