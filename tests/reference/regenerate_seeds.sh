#!/usr/bin/env bash
# Regenerates the seed-model vectors under tests/data/formats/ (smollm3-*, torchao-*)
# with transformers, torchao and huggingface_hub pinned in requirements-seeds.txt, in
# .venv-seeds. CPU only; a few minutes once the venv exists (torch is a large download).
#   tests/reference/regenerate_seeds.sh              everything
#   tests/reference/regenerate_seeds.sh smollm3      some (smollm3 torchao hf_cache)
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv-seeds
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/reference/requirements-seeds.txt
"$VENV/bin/python" tests/reference/gen_seeds.py "$@"
