#!/usr/bin/env bash
# Installs what segmamba needs on Debian 12 (only the packages that are
# missing), then configures and builds it in ./build. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential meson ninja-build pkg-config   # toolchain
  libopenblas-dev libdnnl-dev                    # GEMM and convolutions
  libnifti2-dev zlib1g-dev libpng-dev            # NIfTI in and out, PNG previews
  libopenmpi-dev openmpi-bin                     # cohorts across ranks (predict --list under mpirun)
  g++ libdcmtk-dev                               # DICOM series in, DICOM SEG out (-Ddicom)
  dcm2niix dicom3tools python3-venv              # independent DICOM checks; the tests' PyPI venv (tests only)
  dcmtk                                          # dcmcrle, dcmcjpeg, dcmcjpls: compressed test series (tests only)
  mricron-data                                   # ch2bet.nii.gz, a real T1 MRI for the DICOM SEG test (tests only)
  orthanc orthanc-dev                            # the Orthanc plugin (-Dorthanc): its SDK, and Orthanc for its tests
  python3 python3-numpy python3-torch            # the PyTorch reference (tests only)
  python3-nibabel python3-scipy                  # independent NIfTI and HD95 checks (tests only)
  time                                           # /usr/bin/time -v for memory figures
  curl                                           # the Orthanc walk-through (docs/orthanc.md)
  clang-format-14                                # the format test (.clang-format; tests only)
)
. tools/ensure-packages.sh
ensure_packages "${packages[@]}"

build=${SEGMAMBA_BUILD_DIR:-build}
# The CUDA backend is left out of this build: linking cuBLAS alone adds
# about 217 MB to every process's resident memory (`segmamba version`: 9 MB
# without, 227 MB with), which a CPU-only user should not pay. The leg
# tools/legs/cuda-nvcc.sh builds it wherever nvcc is found, and
# bench/gpu_check.sh builds it for a GPU.
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" --buildtype=release -Dwerror=true -Dcuda=disabled
fi
meson compile -C "$build"
