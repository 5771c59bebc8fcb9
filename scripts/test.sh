#!/usr/bin/env bash
# Runs the whole kvforge test suite (this is also what CI runs, via .ci/run):
#
#   1. scripts/setup_test.sh  scripts/setup.sh (packages, build, model) plus
#                             the test packages, the reference venv, the
#                             evaluation text and the unit-test build
#   2. ctest on build/        unit tests, Release
#   3. build-asan/ + ctest    the same unit tests under ASan + UBSan
#   4. pip install ./         the kvforge Python package into the venv
#   5. pytest tests/python    end-to-end tests of build/kvforge and the
#                             package against the references (HF
#                             transformers, llama.cpp)
#   6. scripts/fuzz.sh        the parsers' libFuzzer targets, 50000 runs
#                             each from a fixed seed (repeatable)
#
# Every stage after setup runs even if an earlier one failed; the exit status
# is non-zero if any stage failed. Extra arguments go to pytest
# (e.g. scripts/test.sh -k tokenize -x).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=${KVFORGE_VENV:-$HOME/.cache/kvforge/venv}
export KVFORGE_VENV=$VENV
JOBS=${KVFORGE_JOBS:-2}

section() { printf '\n==== %s ====\n' "$*"; }
t_start=$SECONDS

scripts/setup_test.sh || { echo "test.sh: setup failed" >&2; exit 1; }

# The references run offline: nothing is fetched from a model hub.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
# Tools the tests start (python3, pip) come from the venv.
export PATH="$VENV/bin:$PATH"
export KVFORGE_PYTHON="$VENV/bin/python"

failed=()
stage() {  # stage NAME COMMAND...: runs a stage, records a failure
  local name=$1; shift
  local t0=$SECONDS
  section "$name"
  "$@"
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    failed+=("$name (exit $rc)")
    echo "---- FAILED: $name (exit $rc, $((SECONDS - t0)) s)"
  else
    echo "---- ok: $name ($((SECONDS - t0)) s)"
  fi
}

run_pytest() {
  "$VENV/bin/python" -m pytest tests/python --kvforge-bin build/kvforge -ra --durations=10 "$@"
  local rc=$?
  if [[ $rc -eq 5 ]]; then
    echo "pytest collected no tests: treating that as a failure" >&2
  fi
  return $rc
}

# The Python package (bindings over this checkout's engine), built with the
# venv's pinned nanobind and scikit-build-core; build/python-*/ is kept, so
# a re-install recompiles only what changed.
install_python_package() {
  CMAKE_BUILD_PARALLEL_LEVEL=$JOBS "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input \
    --no-build-isolation --no-deps ./
}

build_asan() { scripts/build.sh --asan; }
ctest_asan() {
  # detect_leaks needs ptrace-free LSan; it is on by default where it works.
  ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}" \
  UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
    ctest --test-dir build-asan --output-on-failure --no-tests=error -j "$JOBS"
}

stage "Unit tests (Release)" ctest --test-dir build --output-on-failure --no-tests=error -j "$JOBS"
n_failed=${#failed[@]}
stage "Build with ASan + UBSan (build-asan)" build_asan
if [[ ${#failed[@]} -eq $n_failed ]]; then
  stage "Unit tests (ASan + UBSan)" ctest_asan
fi
stage "Python package (pip install ./)" install_python_package
stage "Python tests (pytest tests/python)" run_pytest "$@"
stage "Fuzzing (scripts/fuzz.sh)" scripts/fuzz.sh

section "Summary ($((SECONDS - t_start)) s)"
if [[ ${#failed[@]} -gt 0 ]]; then
  printf 'FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "all stages passed"
