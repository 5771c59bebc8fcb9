# Helpers shared by scripts/setup.sh and scripts/setup_test.sh (sourced).

section() { printf '\n==== %s ====\n' "$*"; }
die() { printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# ensure_apt_packages PKG...: installs the Debian packages that are missing
# (apt-get, with `sudo -n` when not root; nothing when all are there).
ensure_apt_packages() {
  local missing=() p status
  for p in "$@"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    [[ "$status" == ii* ]] || missing+=("$p")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    echo "all $# packages already installed"
    return
  fi
  echo "installing: ${missing[*]}"
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: install these packages first: ${missing[*]}"
    sudo=(sudo -n)   # -n: never prompt (CI has no stdin)
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}
