#!/usr/bin/env bash
# Installs scalpel into a prefix and builds examples/cpp_consumer against it
# with find_package(scalpel), as a user's own project would; then runs it.
set -euo pipefail
build="$1"; src="$2"; cmake="$3"; torch_cmake="$4"
prefix="$build/_install"
"$cmake" --install "$build" --prefix "$prefix" >/dev/null
"$cmake" -S "$src/examples/cpp_consumer" -B "$build/_consumer" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix;$torch_cmake" >/dev/null
"$cmake" --build "$build/_consumer" -j 2
model="${SCALPEL_SHARED:-}/models/tinystories-656k"
if [ -d "$model" ]; then
  "$build/_consumer/consumer" "$model"
else
  "$build/_consumer/consumer"
fi
