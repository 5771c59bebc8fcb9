#!/usr/bin/env bash
# Configures and builds kvforge with CMake + Ninja.
#
#   scripts/build.sh           Release build in build/        (build/kvforge)
#   scripts/build.sh --asan    ASan + UBSan build in build-asan/ (asserts on)
#   scripts/build.sh --cli-only   only build/kvforge (no unit tests; scripts/setup.sh)
#
# Environment: KVFORGE_JOBS (parallel jobs, default 2: the dev and CI
# machines have 2 cores), KVFORGE_CCACHE=0 (no ccache). Extra arguments are
# passed to CMake's configure step.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

jobs=${KVFORGE_JOBS:-2}
dir=build
args=(-DCMAKE_BUILD_TYPE=Release)
targets=()
if [[ "${1:-}" == "--cli-only" ]]; then
  shift
  targets=(--target kvforge_cli)
elif [[ "${1:-}" == "--asan" ]]; then
  shift
  dir=build-asan
  # -O1 -g without -DNDEBUG: assertions stay on, stack traces are readable,
  # and model-sized tests still run in reasonable time.
  args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g"
        "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g" -DKVFORGE_SANITIZE=ON)
fi

# CMakeLists.txt uses ccache when it is installed; KVFORGE_CCACHE=0 turns it off.
if [[ "${KVFORGE_CCACHE:-1}" == 0 ]]; then
  args+=(-DCMAKE_C_COMPILER_LAUNCHER= -DCMAKE_CXX_COMPILER_LAUNCHER=)
fi

generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
# Re-configure only when the cache is missing (CMake re-runs itself when
# CMakeLists.txt or a globbed source list changes).
if [[ ! -f "$dir/CMakeCache.txt" ]]; then
  cmake -S . -B "$dir" "${generator[@]}" "${args[@]}" "$@"
elif [[ $# -gt 0 ]]; then
  cmake -S . -B "$dir" "$@"
fi
cmake --build "$dir" -j "$jobs" "${targets[@]}"
