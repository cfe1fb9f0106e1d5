#!/usr/bin/env bash
# Installs the Debian packages hotswap builds with, only those that are missing.
# Idempotent: on a machine that has them all it prints nothing and exits 0.
set -euo pipefail

packages=(
  cmake g++ make binutils pkg-config
  libboost-dev libboost-filesystem-dev
  libspdlog-dev nlohmann-json3-dev catch2
  libssl-dev libarchive-dev libcli11-dev libedit-dev libre2-dev
  libsystemd-dev  # sd_notify: Type=notify-reload under systemd (host/os/service_notifier.hpp)
  clang-14 libclang-rt-14-dev  # make fuzz: libFuzzer targets (tests/fuzz/)
  dpkg-dev  # make package / cpack -G DEB: dpkg-shlibdeps computes the .deb's Depends
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
