# Shell helpers of the GPU scripts, sourced by tests/gpu/env.sh on a GPU host and by
# bench_7b.sh's dry run on a CPU machine.
# python3 with the loader path the caller had before env.sh put the bundle's lib/ first:
# that folder holds Debian's libssl, libcrypto and libz for ingot's binaries, which the
# host's Python must not pick up.
py() { LD_LIBRARY_PATH="${HOST_LD_LIBRARY_PATH-${LD_LIBRARY_PATH:-}}" python3 "$@"; }
# Summaries are copied to $INGOT_GPU_OUT as they grow (tests/gpu/session.sh sets it to
# the device tool's $OUT, so a call cut short still returns them).
publish() { [ -n "${INGOT_GPU_OUT:-}" ] && cp "$1" "$INGOT_GPU_OUT/" 2>/dev/null; return 0; }
