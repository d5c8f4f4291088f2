#!/usr/bin/env bash
# Sourced by the set-up scripts: ensure_packages PKG... installs, with apt,
# those of the Debian packages that are not installed yet (one apt-get update
# per process at most). Works as root or through sudo.
ensure_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "setup: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  if [ -z "${SEGMAMBA_APT_UPDATED:-}" ]; then
    $sudo apt-get update -qq
    export SEGMAMBA_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
