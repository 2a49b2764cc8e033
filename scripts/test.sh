#!/usr/bin/env bash
# Runs the C++ and Python tests (after scripts/setup.sh).
#   scripts/test.sh [all]     every test: ctest, then pytest over every tier (`make test`)
#   scripts/test.sh quick     the inner loop: ctest without the find_package consumer build,
#                             then the unit tier of pytest (`make quick`)
# Arguments after the mode go to pytest (e.g. scripts/test.sh quick -x -k sra).
# The pytest tiers (unit, oracle, e2e) are described in pytest.ini.
set -euo pipefail
cd "$(dirname "$0")/.."
export SCALPEL_SHARED="${SCALPEL_SHARED:-$(cd .. && pwd)/shared}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
mode="${1:-all}"
if [ $# -gt 0 ]; then shift; fi
case "$mode" in
  all)
    echo "== C++ tests (ctest)"
    .venv/bin/ctest --test-dir build --output-on-failure -j 2
    echo "== Python tests (pytest, every tier)"
    .venv/bin/python -m pytest tests/python -q -ra "$@"
    ;;
  quick)
    echo "== C++ tests (ctest, without find_package_consumer)"
    .venv/bin/ctest --test-dir build --output-on-failure -j 2 -E find_package_consumer
    echo "== Python tests (pytest -m unit)"
    .venv/bin/python -m pytest tests/python -q -ra -m unit "$@"
    ;;
  *)
    echo "usage: scripts/test.sh [all|quick] [pytest arguments...]" >&2
    exit 2
    ;;
esac
