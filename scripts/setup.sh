#!/usr/bin/env bash
# Sets up everything scalpel needs on a fresh Debian machine, idempotently:
# Debian packages, the .venv with pinned Python packages, the CMake build, and
# the .venv's view of python/ (scalpel importable, `scalpel` CLI on PATH).
# A second run does only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. Debian packages (apt-get only when something is missing).
PKGS="g++ make pkg-config libeigen3-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libgtest-dev libgmock-dev libpcre2-dev libutf8proc-dev"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  say "installing Debian packages:$missing"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

# 2. The virtual environment, with pinned packages (torch is the CPU wheel;
#    pip must never resolve torch by itself, see README).
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=".venv/.scalpel-requirements"
if [ ! -f "$stamp" ] || ! cat requirements.txt requirements-dev.txt | cmp -s - "$stamp"; then
  say "installing Python packages (requirements-dev.txt)"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
  cat requirements.txt requirements-dev.txt > "$stamp"
fi

# 3. Build (configure once; ninja rebuilds only what changed).
if [ ! -f build/CMakeCache.txt ]; then
  say "configuring build/"
  .venv/bin/cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DPython3_EXECUTABLE="$ROOT/.venv/bin/python" >/dev/null
fi
say "building (2 jobs)"
.venv/bin/cmake --build build -j 2

# 4. Make python/ importable from the venv, and the CLI available.
site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$ROOT/python" > "$site/scalpel-dev.pth"
cat > .venv/bin/scalpel <<EOS
#!$ROOT/.venv/bin/python
import sys
from scalpel.cli import main
sys.exit(main())
EOS
chmod +x .venv/bin/scalpel
say "ready: .venv/bin/python -c 'import scalpel'"
