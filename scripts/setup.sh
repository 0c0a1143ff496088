#!/usr/bin/env bash
# Installs every Debian package ingot's build and tests need and fetches the default
# model into models/. Idempotent: a second run checks and returns quickly.
#   scripts/setup.sh            packages + model
#   scripts/setup.sh --no-model packages only
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git python3 python3-venv python3-pip unzip
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libspdlog-dev libfmt-dev libgtest-dev libgmock-dev
  prometheus-cpp-dev libre2-dev libcli11-dev nlohmann-json3-dev libcpp-httplib-dev
  libopenblas0-pthread prometheus curl
  libyaml-cpp-dev libssl-dev openssl zlib1g-dev
  clang libclang-rt-14-dev
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# libtorch (the torch backend) from the PyPI wheel into .venv-torch: INGOT_SETUP_TORCH=
# cpu (default: libtorch_cpu + the CUDA runtime it loads), full (the CUDA libraries
# too, for -DINGOT_CUDA=ON images) or none (a build with -DINGOT_TORCH=OFF).
case "${INGOT_SETUP_TORCH:-cpu}" in
  none) ;;
  full) scripts/setup_torch.sh --full ;;
  *) scripts/setup_torch.sh ;;
esac

if [ "${1:-}" != "--no-model" ]; then
  scripts/fetch_model.sh
  # The deploy/ validation tools (kubectl, schemas, hadolint) in .venv-deploy. Not in
  # the image build, which copies only this script and passes --no-model.
  if [ -f tests/deploy/setup_tools.sh ]; then tests/deploy/setup_tools.sh; fi
  # openai, pytest, grpcio-tools and the client/python package in .venv-python: the HTTP
  # API's and the Python client's tests.
  if [ -f tests/http/setup_venv.sh ]; then tests/http/setup_venv.sh; fi
  # gguf/numpy/safetensors/tokenizers (no torch) in .venv-hf: the integration test
  # that makes a Hugging Face directory from the default model at test time.
  if [ -f tests/reference/setup_hf_tools.sh ]; then tests/reference/setup_hf_tools.sh; fi
fi
