#!/usr/bin/env bash
# Leg: the 'small' test suite, test_threads among it (models opened, run and
# closed on several threads at once), built with ThreadSanitizer (clang).
# OpenMP is off in this build: libgomp is not instrumented, so TSan cannot
# see its barriers and would report the engine's parallel loops; the
# threads here are the test's own. oneDNN (Debian's libdnnl) brings its own
# libgomp parallel regions whatever our build says, so OMP_NUM_THREADS=1
# keeps them on the calling thread: otherwise TSan reports oneDNN's workers
# writing a scratchpad the main thread allocated before a fork it cannot
# see (seen in test_conv). MPI is off too (the CLI's cohort transport, not
# exercised by the small suite). No suppressions.
# Contract: tools/run-tests.sh (LEG_BUILD is this leg's build folder).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${LEG_BUILD:-build-legs/tsan}

. tools/ensure-packages.sh
# clang's TSan runtime is in libclang-rt-14-dev.
ensure_packages build-essential clang libclang-rt-14-dev meson ninja-build pkg-config \
  libopenblas-dev libdnnl-dev libnifti2-dev zlib1g-dev libpng-dev python3 python3-numpy \
  python3-nibabel

if [ ! -f "$build/build.ninja" ]; then
  # b_lundef=false: a shared library cannot be linked with -Wl,--no-undefined
  # under the sanitizers.
  CC=clang meson setup "$build" --buildtype=debug --optimization=1 -Db_sanitize=thread \
    -Db_lundef=false -Dwerror=true -Dopenmp=disabled -Dmpi=disabled -Dcuda=disabled
fi
meson compile -C "$build"
grep -qx '#define SM_HAVE_OPENMP 0' "$build/sm_config.h"  # the option took effect

export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
export OMP_NUM_THREADS=1
meson test -C "$build" --suite small --num-processes 2 --print-errorlogs --timeout-multiplier 4
