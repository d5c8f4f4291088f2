#!/usr/bin/env bash
# Leg: the CUDA backend's code run on the CPU. Builds with -Demulate_cuda
# (kernels.cu compiled as C++, a stand-in CUDA runtime and cuBLAS from
# cuda_optional/emu/; no GPU or nvcc needed) and runs the 'cuda' suite, so
# every op, the graph runner, batched windows and --backend are checked
# against the CPU backend on machines without a GPU. The real nvcc build is
# compiled and linked by the main build wherever nvcc is found
# (-Dcuda=auto); bench/gpu_check.sh runs it on a GPU. See tools/run-tests.sh
# for the contract.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${LEG_BUILD:-build-legs/cuda}

. tools/ensure-packages.sh
# g++ (build-essential) compiles the kernels; torch makes a fresh tiny case,
# nibabel the NIfTI inputs of the predict checks.
ensure_packages build-essential meson ninja-build pkg-config libopenblas-dev libdnnl-dev \
  libnifti2-dev zlib1g-dev libpng-dev python3 python3-numpy python3-torch python3-nibabel

if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" --buildtype=release -Dwerror=true -Dcuda=disabled -Demulate_cuda=true
fi
meson compile -C "$build"
grep -qx '#define SM_CUDA_EMULATED 1' "$build/sm_config.h"  # the option took effect
meson test -C "$build" --suite cuda --num-processes 1 --print-errorlogs
