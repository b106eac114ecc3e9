#!/usr/bin/env bash
# Create a virtual environment and install msft_forecast into it.
#
#   bash scripts/setup_env.sh            # .venv with the dev extras (both front ends, tests, ruff)
#   EXTRAS=all bash scripts/setup_env.sh # the engine, the command line and both front ends
#   EXTRAS= bash scripts/setup_env.sh    # the core install: the engine and the command line only
#
# torch is installed first and pinned: an unpinned torch makes pip pick the newest CUDA build
# (several GB). TORCH_VERSION and TORCH_INDEX_URL override the pin and the index, e.g.
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/setup_env.sh
# for a CPU-only build on a machine that does not have one locally.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
EXTRAS="${EXTRAS-dev}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
pip_install() { "$VENV/bin/python" -m pip install --disable-pip-version-check "$@"; }

if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
  pip_install "torch==$TORCH_VERSION" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
# Keep the torch just installed: the package only needs torch>=2.6.
pip_install -e ".${EXTRAS:+[$EXTRAS]}" "torch==$TORCH_VERSION"
# The UniTS reference the parity tests import (../shared/reference/units) needs timm.layers;
# timm declares torchvision, whose wheels are built for other torch builds than the pinned one,
# and the parts the reference uses do not need it: install timm alone.
if [[ ",$EXTRAS," == *,dev,* || ",$EXTRAS," == *,test,* ]]; then
  pip_install --no-deps "timm>=0.9"
fi
echo "msft_forecast installed in $VENV (torch $TORCH_VERSION). Activate with: . $VENV/bin/activate"
