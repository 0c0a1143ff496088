#!/usr/bin/env bash
# `pip install ./client/python` in a fresh venv, as a user would (build isolation: pip
# fetches setuptools and grpcio-tools from PyPI to build, grpcio and protobuf to run),
# then the stubs and the wrapper import and describe the API. Exit 77 (skipped) when
# PyPI cannot be reached, unless CI is set.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
if ! "$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
     "$root/client/python" </dev/null >"$tmp/pip.log" 2>&1; then
  cat "$tmp/pip.log" >&2
  if [ "${CI:-}" != "true" ] && grep -qiE "connection|resolve|network|temporary failure" "$tmp/pip.log"; then
    exit 77
  fi
  exit 1
fi
# The build writes nothing into the source tree but setuptools' own build/ and egg-info.
cd "$tmp"
"$tmp/venv/bin/python" - <<'PY'
import ingot
from ingot.v1 import generation_pb2, generation_pb2_grpc, model_pb2_grpc, quantization_pb2_grpc
assert generation_pb2.GenerateRequest(model="m", max_tokens=3).max_tokens == 3
assert hasattr(generation_pb2_grpc, "GenerationServiceStub")
c = ingot.Client("127.0.0.1:1")
for name in ("generate", "chat", "complete", "load", "quantize", "models", "tokenize", "unload"):
    assert callable(getattr(c, name)), name
c.close()
print("fresh install: ingot", ingot.__file__)
PY
