#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang and runs each for a while.
#
#   tools/fuzz.sh [SECONDS] [TARGET...]   default: 600 s each, all targets
#
# Installs clang and libclang-rt-14-dev (Debian 12's libFuzzer and
# sanitizer runtimes) when missing, configures $SEGMAMBA_FUZZ_BUILD
# (default build-fuzz) with -Dfuzz=enabled, and runs at most
# $SEGMAMBA_FUZZ_JOBS (default 2) fuzzers at a time under nice, each on a
# working corpus seeded from fuzz/corpus/TARGET and fuzz/regressions/TARGET.
# Crashes land in $BUILD/fuzz-out/TARGET/ (crash-*, leak-*, timeout-*); copy
# each into fuzz/regressions/TARGET/ once fixed. Each fuzzer's last status
# line (executions, cov, ft) is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
seconds=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(pt safetensors npy nifti cohort_list)
  # The DICOM target where the build has DICOM (dcmtk and a C++ compiler).
  dpkg-query -W -f='${Status}' libdcmtk-dev 2>/dev/null | grep -q "install ok installed" &&
    targets+=(dicom dicom_memory)
fi
build=${SEGMAMBA_FUZZ_BUILD:-build-fuzz}
jobs=${SEGMAMBA_FUZZ_JOBS:-2}

. tools/ensure-packages.sh
ensure_packages clang libclang-rt-14-dev
if [ ! -f "$build/build.ninja" ]; then
  # clang++ too: with DICOM the library has a C++ file and links as C++.
  # No CUDA: where nvcc is installed, -Dcuda=auto would link the targets
  # through nvcc, whose host compiler knows no -fsanitize=fuzzer.
  CC=clang CXX=clang++ meson setup "$build" --buildtype=debugoptimized -Dfuzz=enabled \
    -Dcuda=disabled
fi
ninja -C "$build" $(printf 'fuzz/fuzz_%s ' "${targets[@]}")

run_one() {
  local t=$1 out="$build/fuzz-out/$1"
  mkdir -p "$out/corpus"
  cp -n fuzz/corpus/"$t"/* fuzz/regressions/"$t"/* "$out/corpus/" 2>/dev/null || true
  # -rss_limit_mb stays above the readers' own cap (256 MiB in the
  # targets); leaks are reported by LeakSanitizer at each input's end.
  # fuzz/lsan.supp: dcmtk's own leaks, matched on full stacks.
  (cd "$out" && ASAN_OPTIONS=fast_unwind_on_malloc=0 \
      LSAN_OPTIONS=print_suppressions=0:suppressions=$root/fuzz/lsan.supp \
      nice -n 10 "../../fuzz/fuzz_$t" -max_total_time="$seconds" \
      -rss_limit_mb=2048 -timeout=25 -max_len=65536 -print_final_stats=1 corpus \
      > fuzz.log 2>&1) || echo "fuzz_$t: exited $? (see $out/fuzz.log)"
}

pids=()
for t in "${targets[@]}"; do
  run_one "$t" &
  pids+=($!)
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 5; done
done
wait "${pids[@]}" || true

for t in "${targets[@]}"; do
  out="$build/fuzz-out/$t"
  echo "== fuzz_$t"
  grep -E "^#[0-9]+" "$out/fuzz.log" | tail -1
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$out/fuzz.log" || true
  ls "$out" | grep -E "^(crash|leak|timeout|oom)-" || echo "no crash, leak, timeout or OOM input"
done
