#!/usr/bin/env bash
# scripts/deps.sh — installs the Debian packages floodgate needs, when any is missing.
# Usage: scripts/deps.sh build|test|bench   (test and bench include build)
set -euo pipefail
kind=${1:-build}
pkgs=(build-essential pkg-config meson ninja-build libjansson-dev
      libsqlite3-dev libsodium-dev curl python3)
case "$kind" in
  test) pkgs+=(libcriterion-dev) ;;
  bench) pkgs+=(libcriterion-dev wrk nginx-light) ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "floodgate: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
