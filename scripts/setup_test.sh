#!/usr/bin/env bash
# Sets up what the test suite needs on top of scripts/setup.sh (which it runs
# first, with --no-link: tests leave ~/.local/bin alone). scripts/test.sh runs
# it. Idempotent: a re-run skips every step that is already done.
#
#   1. scripts/setup.sh --no-link   packages, build/kvforge, default model
#   2. Debian packages of the tests (GoogleTest, SIMDe, clang for the fuzzers, ...)
#   3. Python venv with the references (PyTorch, transformers, llama.cpp via
#      llama-cpp-python, gguf, pytest), OUTSIDE the repo at
#      ${KVFORGE_VENV:-$HOME/.cache/kvforge/venv}, so that fresh clones (CI)
#      on the same machine reuse it; pip runs only when requirements-test.txt
#      changed since the last successful install
#   4. the pinned evaluation text (`kvforge pull --eval-text`)
#   5. the build with the unit tests (scripts/build.sh -DKVFORGE_TESTS=ON)
#
# Environment: KVFORGE_VENV (venv path), KVFORGE_JOBS (build jobs, default 2),
# KVFORGE_SKIP_PULL=1 (do not fetch the model and the text).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/setup_common.sh
VENV=${KVFORGE_VENV:-$HOME/.cache/kvforge/venv}
t_start=$SECONDS

scripts/setup.sh --no-link

# ---------------------------------------------------------------------------
section "test 1/4 Debian packages of the tests"
TEST_APT_PACKAGES=(
  libgtest-dev libgmock-dev libbenchmark-dev  # unit tests, micro-benchmarks
  libsimde-dev                                # emulated AVX-512 kernels in the unit tests
  chromium chromium-driver                    # headless browser for the chat page test (Selenium)
  clang-14 libclang-rt-14-dev                 # libFuzzer (scripts/fuzz.sh)
)
# The reference venv needs Python's venv module.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  TEST_APT_PACKAGES+=(python3-venv)
fi
ensure_apt_packages "${TEST_APT_PACKAGES[@]}"

# ---------------------------------------------------------------------------
section "test 2/4 Python venv for the reference tests ($VENV)"
if [[ -x "$VENV/bin/python" ]] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  echo "venv is broken (its base Python is gone?); recreating it"
  rm -rf "$VENV"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
fi
# llama-cpp-python is the llama.cpp peer that tests and benchmarks compare
# against; pip builds it from source. GGML_NATIVE=ON compiles ggml for this
# machine's CPU (-march=native: AVX2/AVX-512/VNNI where present), the way a
# user who cares about speed builds llama.cpp, so speed comparisons are fair
# and its kernels are the ones real users run. Such a build only runs on the
# CPU it was built on: the CPU's feature flags and CMAKE_ARGS form a build key,
# and when the key changes the peer is rebuilt instead of being taken from
# pip's wheel cache or left in the venv.
# LLAVA_BUILD=OFF skips the multimodal library (a third of the build; only
# llama-cpp-python's LLaVA chat handler loads it, lazily).
export CMAKE_ARGS="${KVFORGE_LLAMA_CMAKE_ARGS:--DGGML_NATIVE=ON -DLLAVA_BUILD=OFF}"
# Build jobs for pip's CMake builds (ninja would otherwise run cores+2).
export CMAKE_BUILD_PARALLEL_LEVEL="${KVFORGE_JOBS:-2}"
build_key=$( { grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true; echo "$CMAKE_ARGS"; } | sha256sum | cut -c1-16)
req_hash=$(sha256sum < requirements-test.txt | cut -c1-64)
stamp_req="$VENV/.kvforge-requirements.stamp"
stamp_llama="$VENV/.kvforge-llama-build.stamp"
pip=("$VENV/bin/python" -m pip)
pip_opts=(--disable-pip-version-check --no-input)
# Machines of this project keep a CPU build of PyTorch in /opt/wheels; make
# sure pip sees it even where no pip.conf points there.
if [[ -d /opt/wheels ]]; then pip_opts+=(--find-links /opt/wheels); fi

pip_cache=$("${pip[@]}" cache dir 2>/dev/null || true)
if [[ -n "$pip_cache" && -d "$pip_cache" ]]; then
  cache_stamp="$pip_cache/kvforge-llama-build.stamp"
  if [[ "$(cat "$cache_stamp" 2>/dev/null || true)" != "$build_key" ]]; then
    "${pip[@]}" cache remove llama_cpp_python >/dev/null 2>&1 || true
    echo "$build_key" > "$cache_stamp"
  fi
fi
if [[ -f "$stamp_llama" && "$(cat "$stamp_llama")" != "$build_key" ]]; then
  echo "CPU or CMAKE_ARGS changed since llama-cpp-python was built: rebuilding it"
  "${pip[@]}" install "${pip_opts[@]}" --force-reinstall --no-deps \
      "$(grep -E '^llama[-_]cpp[-_]python==' requirements-test.txt | cut -d' ' -f1)"
  echo "$build_key" > "$stamp_llama"
fi
if [[ -f "$stamp_req" && "$(cat "$stamp_req")" == "$req_hash" ]]; then
  echo "requirements-test.txt unchanged since the last install: nothing to do"
else
  echo "installing requirements-test.txt (CMAKE_ARGS=$CMAKE_ARGS)"
  echo "(a fresh venv builds llama-cpp-python from source: 15-30 minutes on 2 cores)"
  t0=$SECONDS
  "${pip[@]}" install "${pip_opts[@]}" -r requirements-test.txt
  echo "$build_key" > "$stamp_llama"
  echo "$req_hash" > "$stamp_req"
  echo "pip install took $((SECONDS - t0)) s"
fi

# ---------------------------------------------------------------------------
section "test 3/4 Evaluation text"
if [[ "${KVFORGE_SKIP_PULL:-0}" == 1 ]]; then
  echo "KVFORGE_SKIP_PULL=1: skipped"
else
  build/kvforge pull --eval-text
fi

# ---------------------------------------------------------------------------
section "test 4/4 Build with the unit tests (build/)"
scripts/build.sh -DKVFORGE_TESTS=ON

section "test setup done in $((SECONDS - t_start)) s"
echo "venv: $VENV"
