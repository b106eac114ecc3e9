#!/usr/bin/env bash
# Set up the environment (idempotent) and run the checks CI runs: ruff, then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
