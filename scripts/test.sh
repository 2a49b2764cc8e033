#!/usr/bin/env bash
# Runs every C++ and Python test (after scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export SCALPEL_SHARED="${SCALPEL_SHARED:-$(cd .. && pwd)/shared}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
echo "== C++ tests (ctest)"
.venv/bin/ctest --test-dir build --output-on-failure -j 2
echo "== Python tests (pytest)"
.venv/bin/python -m pytest tests/python -q -ra
