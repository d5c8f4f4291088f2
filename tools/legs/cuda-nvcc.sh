#!/usr/bin/env bash
# Leg: the real CUDA backend, compiled with nvcc and linked against the CUDA
# runtime and cuBLAS (-Dcuda=enabled), then the 'cuda' suite, which runs on a
# GPU and skips (saying why) without one. Where nvcc is not found the leg
# records one skipped test. See tools/run-tests.sh for the contract.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${LEG_BUILD:-build-legs/cuda-nvcc}
nvcc=$(command -v nvcc || true)
[ -n "$nvcc" ] || [ ! -x /usr/local/cuda/bin/nvcc ] || nvcc=/usr/local/cuda/bin/nvcc
if [ -z "$nvcc" ]; then
  echo "cuda-nvcc: no nvcc on PATH or in /usr/local/cuda/bin: nothing to build"
  mkdir -p "$build/meson-logs"
  echo '{"name": "cuda-nvcc: nvcc not found", "result": "SKIP"}' > "$build/meson-logs/testlog.json"
  exit 0
fi
export PATH="$(dirname "$nvcc"):$PATH"
tools/build-variant.sh "$build" -Dcuda=enabled -Dmpi=disabled
grep -qx "#define SM_HAVE_CUDA 1" "$build/sm_config.h"  # the option took effect
meson test -C "$build" --suite cuda --num-processes 1 --print-errorlogs
