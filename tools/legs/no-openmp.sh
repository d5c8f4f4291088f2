#!/usr/bin/env bash
# Build leg: no OpenMP (-Dopenmp=disabled), so the engine's own loops run on
# one thread (oneDNN and OpenBLAS keep their own threads); the 'small' suite
# (see tools/run-tests.sh for the contract). The CPU engine only: the CUDA
# backend has its own leg.
set -euo pipefail
cd "$(dirname "$0")/../.."
tools/build-variant.sh "$LEG_BUILD" -Dopenmp=disabled -Dcuda=disabled
grep -qx '#define SM_HAVE_OPENMP 0' "$LEG_BUILD/sm_config.h"  # the option took effect
meson test -C "$LEG_BUILD" --suite small --num-processes 1 --print-errorlogs
