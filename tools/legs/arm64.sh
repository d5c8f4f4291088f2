#!/usr/bin/env bash
# Build leg: aarch64 under emulation. Cross-builds with
# cross/aarch64-linux-gnu.ini (tools/cross-aarch64.sh: Debian's cross
# toolchain, arm64 OpenBLAS, no oneDNN) and runs the 'small' suite under
# qemu-aarch64: test_simd compares the NEON kernels with the scalar ones, and
# the model-tiny-*-neon tests run the whole model on the NEON scan and check
# that the engine reports it (see tools/run-tests.sh for the contract).
set -euo pipefail
cd "$(dirname "$0")/../.."
tools/cross-aarch64.sh "$LEG_BUILD"
grep -qx '#define SM_HAVE_NEON 1' "$LEG_BUILD/sm_config.h"  # the NEON kernels are built
# Emulated code runs several times slower than native (test_pipeline: 51 s
# of CPU under qemu against 16 s natively, and 576 s of wall time on a
# machine shared with other jobs): the tests' timeouts are stretched.
meson test -C "$LEG_BUILD" --suite small --suite emulated --num-processes 1 --print-errorlogs \
  --timeout-multiplier 10
