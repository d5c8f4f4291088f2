#!/usr/bin/env bash
# Build leg: no oneDNN (-Donednn=disabled), so convolutions and GEMMs run on
# OpenBLAS; the 'small' suite (see tools/run-tests.sh for the contract). The
# CPU engine only: the CUDA backend has its own leg.
set -euo pipefail
cd "$(dirname "$0")/../.."
tools/build-variant.sh "$LEG_BUILD" -Donednn=disabled -Dcuda=disabled
grep -qx '#define SM_HAVE_ONEDNN 0' "$LEG_BUILD/sm_config.h"  # the option took effect
meson test -C "$LEG_BUILD" --suite small --num-processes 1 --print-errorlogs
