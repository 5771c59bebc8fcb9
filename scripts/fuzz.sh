#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/*.cpp) with clang, ASan and UBSan
# in build-fuzz/, and runs each one on the seed corpus that
# scripts/make_fuzz_seeds.py writes (plus what earlier runs found, kept in
# build-fuzz/corpus-NAME/). Exits non-zero when a target crashes; the
# crashing input is left in build-fuzz/ as crash-*.
#
#   scripts/fuzz.sh                 50000 runs per target, seed 1 (repeatable)
#   scripts/fuzz.sh --runs N        N runs per target
#   scripts/fuzz.sh --seconds S     S seconds per target (random seed)
#
# Needs clang-14 and libclang-rt-14-dev (scripts/setup_test.sh installs them) and
# the test venv (the seeds are written with its `gguf` package).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=${KVFORGE_VENV:-$HOME/.cache/kvforge/venv}
limit=(-runs=50000 -seed=1)
case "${1:-}" in
  --runs) limit=(-runs="${2:?--runs N}" -seed=1) ;;
  --seconds) limit=(-max_total_time="${2:?--seconds S}") ;;
  "") ;;
  *) echo "usage: scripts/fuzz.sh [--runs N | --seconds S]" >&2; exit 2 ;;
esac
CXX=$(command -v clang++-14 || command -v clang++ || true)
CC=$(command -v clang-14 || command -v clang || true)
[[ -n "$CXX" && -n "$CC" ]] || { echo "fuzz.sh: clang is not installed (scripts/setup_test.sh installs clang-14)" >&2; exit 1; }

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVFORGE_FUZZ=ON \
  -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_C_COMPILER="$CC" "${launcher[@]}" >/dev/null
targets=()
for src in tests/fuzz/*.cpp; do targets+=("$(basename "$src" .cpp)"); done
cmake --build build-fuzz --target "${targets[@]}" -j "${KVFORGE_JOBS:-2}"

seeds=build-fuzz/seeds
"$VENV/bin/python" scripts/make_fuzz_seeds.py "$seeds" >/dev/null
for t in "${targets[@]}"; do
  corpus=build-fuzz/corpus-$t
  mkdir -p "$corpus"
  echo "fuzzing $t (${limit[*]})"
  # -timeout: an input taking 10 s is a hang; -rss_limit_mb: one that needs
  # 2 GiB is a blow-up. Both count as failures.
  (cd build-fuzz && "./$t" -max_len=8192 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${limit[@]}" \
     "corpus-$t" seeds 2>&1 | grep -v -E '^#[0-9]+\s+(NEW|REDUCE|pulse)')
done
echo "fuzz.sh: no crash, hang or leak found"
