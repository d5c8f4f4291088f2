#!/usr/bin/env bash
# Builds a variant of segmamba natively in BUILD_DIR with the given meson
# options (the build legs in tools/legs/ use it): installs what the build and
# the 'small' test suite need (only what is missing), configures BUILD_DIR
# once and builds.
#
#   tools/build-variant.sh BUILD_DIR [meson setup options...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=$1
shift

. tools/ensure-packages.sh
ensure_packages build-essential meson ninja-build pkg-config \
  libopenblas-dev libdnnl-dev libnifti2-dev zlib1g-dev libpng-dev python3 python3-numpy

if [ -f "$build/build.ninja" ]; then
  meson configure "$build" "$@"  # an existing folder follows the options given now
else
  meson setup "$build" --buildtype=release -Dwerror=true "$@"
fi
meson compile -C "$build"
