#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs the packages and the
# default model (scripts/setup.sh), builds, and runs every test under ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
cd build
ctest --output-on-failure --timeout 900 "$@"
