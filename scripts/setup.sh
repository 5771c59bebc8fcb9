#!/usr/bin/env bash
# Sets up everything kvforge needs on a Debian/Ubuntu machine, builds it and
# fetches the default model. Idempotent and non-interactive: a re-run skips
# every step that is already done and takes seconds.
#
#   1. Debian packages (apt-get, only if one is missing)
#   2. Python venv for the test references, OUTSIDE the repo at
#      ${KVFORGE_VENV:-$HOME/.cache/kvforge/venv}, so that fresh clones (CI)
#      on the same machine reuse it; pip runs only when requirements-test.txt
#      changed since the last successful install
#   3. Release build in build/ (scripts/build.sh)
#   4. `build/kvforge pull`: the default model into ~/.cache/kvforge, and
#      `build/kvforge pull --eval-text`: the pinned evaluation text (perplexity)
#
# Environment: KVFORGE_VENV (venv path), KVFORGE_JOBS (build jobs, default 2),
# KVFORGE_SKIP_PULL=1 (do not fetch the model).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
VENV=${KVFORGE_VENV:-$HOME/.cache/kvforge/venv}
export DEBIAN_FRONTEND=noninteractive

section() { printf '\n==== %s ====\n' "$*"; }
die() { printf 'setup.sh: error: %s\n' "$*" >&2; exit 1; }
t_start=$SECONDS

# ---------------------------------------------------------------------------
section "1/4 Debian packages"
APT_PACKAGES=(
  build-essential g++ cmake ninja-build pkg-config git ca-certificates ccache
  libgtest-dev libgmock-dev libbenchmark-dev  # unit tests, micro-benchmarks
  libsimde-dev                                # emulated AVX-512 kernels in the unit tests
  clang-14 libclang-rt-14-dev                 # libFuzzer (scripts/fuzz.sh)
  libcli11-dev libfmt-dev nlohmann-json3-dev libpcre2-dev libeigen3-dev
  libcpp-httplib-dev                          # HTTP server
  libzip-dev libssl-dev                       # kvforge pull (wheel, sha256)
  gnuplot-nox                                 # kvforge report draws report.png with it
)
# A Python 3 with venv support; a python3 already on PATH (pyenv, ...) is used
# as it is, Debian's is installed only when there is none.
if ! command -v python3 >/dev/null 2>&1; then
  APT_PACKAGES+=(python3 python3-venv python3-pip)
elif ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  APT_PACKAGES+=(python3-venv)
fi
missing=()
for p in "${APT_PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
  [[ "$status" == ii* ]] || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "all ${#APT_PACKAGES[@]} packages already installed"
else
  echo "installing: ${missing[*]}"
  SUDO=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: install these packages first: ${missing[*]}"
    SUDO=(sudo -n)   # -n: never prompt (CI has no stdin)
  fi
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# ---------------------------------------------------------------------------
section "2/4 Python venv for the reference tests ($VENV)"
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
  echo "(a fresh venv builds llama-cpp-python from source: about 15 minutes on 2 cores)"
  t0=$SECONDS
  "${pip[@]}" install "${pip_opts[@]}" -r requirements-test.txt
  echo "$build_key" > "$stamp_llama"
  echo "$req_hash" > "$stamp_req"
  echo "pip install took $((SECONDS - t0)) s"
fi

# ---------------------------------------------------------------------------
section "3/4 Build (Release, build/)"
scripts/build.sh

# ---------------------------------------------------------------------------
section "4/4 Default model and evaluation text"
if [[ "${KVFORGE_SKIP_PULL:-0}" == 1 ]]; then
  echo "KVFORGE_SKIP_PULL=1: skipped"
else
  KVFORGE_PYTHON="$VENV/bin/python" build/kvforge pull >/dev/null
  KVFORGE_PYTHON="$VENV/bin/python" build/kvforge pull --eval-text >/dev/null
fi

section "setup done in $((SECONDS - t_start)) s"
echo "kvforge:  $ROOT/build/kvforge"
echo "venv:     $VENV"
