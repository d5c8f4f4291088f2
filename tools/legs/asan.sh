#!/usr/bin/env bash
# Leg: the 'small' test suite (unit tests, the tiny fixture at every kernel
# level, the CLI, the bad-input catalogue, the fuzz corpus and regression
# replays), suite 'sanitize' (the SegMamba family's fresh tiny cases: Mamba
# types, SegMamba-V2, FUE, a non-cubic shape) and suite 'clinical' (the
# DICOM reader and SEG writer through predict, the cohort and its CSV list)
# built with AddressSanitizer and UndefinedBehaviorSanitizer (gcc).
# LeakSanitizer runs with ASan: a leak fails the test that made it.
# Contract: tools/run-tests.sh (LEG_BUILD is this leg's build folder).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${LEG_BUILD:-build-legs/asan}

. tools/ensure-packages.sh
# gcc's runtimes (libasan8, libubsan1) come with build-essential's gcc-12.
ensure_packages build-essential meson ninja-build pkg-config libopenblas-dev libdnnl-dev \
  libnifti2-dev zlib1g-dev libpng-dev python3 python3-numpy python3-torch python3-nibabel \
  python3-scipy g++ libdcmtk-dev dcmtk dcm2niix dicom3tools python3-venv

if [ ! -f "$build/build.ninja" ]; then
  # -O1 keeps the instrumented tests quick; b_lundef=false because a shared
  # library cannot be linked with -Wl,--no-undefined under the sanitizers.
  # No MPI: Open MPI's runtime is not clean under LeakSanitizer; the cohort
  # runs in one process here (its MPI run is the main leg's).
  meson setup "$build" --buildtype=debug --optimization=1 -Db_sanitize=address,undefined \
    -Db_lundef=false -Dwerror=true -Dmpi=disabled -Ddicom=enabled
fi
meson compile -C "$build"

# Errors are fatal and come with a stack. No leak suppressions: the OpenMP,
# OpenBLAS and oneDNN runtimes report none here (memory they keep for the
# process's life is still reachable). Should a third-party library ever need
# one, it goes in a file passed through LSAN_OPTIONS=suppressions=..., each
# entry with its reason; never one for our own code. ASan's
# detect_stack_use_after_return stays off: with it, test_simd's AVX-512
# kernels fault on a wild address inside map() (simd/activation_template.h) in
# ASan's fake stack frames, while the same code is clean without it and
# under -O2; not understood yet.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# Two at a time: the instrumented tests are mostly single-threaded waits.
meson test -C "$build" --suite small --suite sanitize --suite clinical --num-processes 2 \
  --print-errorlogs --timeout-multiplier 3
