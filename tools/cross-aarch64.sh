#!/usr/bin/env bash
# Cross-builds segmamba for aarch64 (64-bit ARM Linux) on Debian 12 x86-64:
# installs Debian's cross toolchain, the arm64 libraries and qemu-user (only
# what is missing), configures BUILD_DIR with cross/aarch64-linux-gnu.ini and
# builds. `meson test -C BUILD_DIR` then runs the tests under qemu-aarch64.
#
#   tools/cross-aarch64.sh [BUILD_DIR [meson setup options...]]   (default build-arm64)
#
# Debian's oneDNN for arm64 cannot be installed next to the amd64 one (the
# two packages ship different copies of one header), so this build has no
# oneDNN: convolutions and GEMMs run on OpenBLAS.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-arm64}
[ $# -gt 0 ] && shift

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $sudo dpkg --add-architecture arm64
  unset SEGMAMBA_APT_UPDATED  # the package lists have no arm64 entries yet
fi
. tools/ensure-packages.sh
# libnifti2-dev is not co-installable across architectures (it is not
# Multi-Arch: same); its headers come from the amd64 package, the arm64
# library from libnifti2-2:arm64 (see the link below).
ensure_packages meson ninja-build pkg-config python3 python3-numpy python3-torch libnifti2-dev \
  crossbuild-essential-arm64 qemu-user libc6:arm64 libgomp1:arm64 \
  libopenblas-dev:arm64 libniftiio-dev:arm64 libznz-dev:arm64 libnifti2-2:arm64 \
  zlib1g-dev:arm64 libpng-dev:arm64

if [ ! -f "$build/build.ninja" ]; then
  # The link-time name libnifti2.so would come from libnifti2-dev:arm64.
  mkdir -p "$build/cross-libs"
  ln -sfn /usr/lib/aarch64-linux-gnu/libnifti2.so.2 "$build/cross-libs/libnifti2.so"
  meson setup "$build" --cross-file cross/aarch64-linux-gnu.ini --buildtype=release \
    -Dwerror=true -Donednn=disabled -Dc_link_args="-L$(cd "$build/cross-libs" && pwd)" "$@"
fi
meson compile -C "$build"
