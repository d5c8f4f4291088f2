#!/usr/bin/env bash
# The CUDA backend on a machine with an NVIDIA GPU, in one command: builds
# segmamba with CUDA, runs the CUDA tests (every op and the batched sliding
# windows against the CPU backend, then the whole model on the tiny fixture,
# a non-default config and the official config at 64^3 and 128^3) and the
# CPU-versus-GPU benchmark of the official config at 128^3 (random weights
# from tests/reference/gen_case.py), fp32 and TF32, and prints a summary.
# A few minutes on an H100 with 16 cores.
#
#   bench/gpu_check.sh             on the GPU machine
#   bench/gpu_check.sh --prepare   on a build machine (nvcc and the project's
#                                  packages, tools/setup.sh): builds the
#                                  engine into build-gpu/ and packs it with
#                                  the libraries it needs besides glibc and
#                                  CUDA into build-gpu/bundle.tar.xz (~15 MB),
#                                  for a GPU machine that lacks them and
#                                  cannot install them (no network)
#
# On the GPU machine the engine is, in this order: build-gpu/bin/ (an
# unpacked bundle), build-gpu/bundle.tar.xz (unpacked first), or built from
# source into build-gpu/ (needs meson, ninja, nvcc and the project's
# libraries; installed with apt where missing and possible). Python: the
# first of $PYTHON, python3 and /usr/bin/python3 that has numpy and torch.
# Logs and summary.txt go to $SEGMAMBA_GPU_LOGS (default build-gpu/logs);
# $SEGMAMBA_GPU_BUILD replaces build-gpu.
# Exit status: 0 when every check passed, 1 when one failed, 2 when nothing
# could run (no GPU, no engine, no Python with torch).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
gpu_build=${SEGMAMBA_GPU_BUILD:-build-gpu}

prepare() {
  set -e
  . tools/ensure-packages.sh
  ensure_packages build-essential meson ninja-build pkg-config libopenblas-dev libdnnl-dev \
    libnifti2-dev zlib1g-dev libpng-dev xz-utils
  [ -f "$gpu_build/build.ninja" ] ||
    meson setup "$gpu_build" --buildtype=release -Dcuda=enabled -Dmpi=disabled
  ninja -C "$gpu_build" segmamba tests/test_cuda
  local stage
  stage=$(mktemp -d)
  mkdir -p "$stage/bin" "$stage/lib"
  cp "$gpu_build/segmamba" "$gpu_build/tests/test_cuda" "$stage/bin/"
  # Every library the two programs load except glibc, the compiler's C++
  # runtime and zlib (which any machine has, newer) and CUDA's (the GPU
  # machine's toolkit and driver provide those).
  ldd "$gpu_build/segmamba" "$gpu_build/tests/test_cuda" | awk '/=> \//{print $3}' | sort -u |
    grep -Ev '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libstdc\+\+|libgcc_s|libz|libcuda|libcudart|libcublas[^/]*)\.so' |
    while read -r lib; do cp -L "$lib" "$stage/lib/"; done
  tar -C "$stage" -cJf "$gpu_build/bundle.tar.xz" bin lib
  rm -rf "$stage"
  echo "gpu_check: $gpu_build/bundle.tar.xz ($(du -h "$gpu_build/bundle.tar.xz" | cut -f1)):"
  tar -tJf "$gpu_build/bundle.tar.xz" | sed 's/^/  /'
}

if [ "${1:-}" = "--prepare" ]; then
  prepare
  exit
fi

logs=${SEGMAMBA_GPU_LOGS:-$gpu_build/logs}
mkdir -p "$logs"
logs=$(cd "$logs" && pwd)
summary="$logs/summary.txt"
: > "$summary"
failed=0
t0=$(date +%s)
say() { echo "$*" | tee -a "$summary"; }
# result NAME STATUS: PASS, FAIL or SKIP (a failed check fails the script).
result() {
  say "$(printf '%-34s %s' "$1" "$2")"
  [ "$2" = PASS ] || [ "$2" = SKIP ] || failed=1
}

# ---- the GPU --------------------------------------------------------------
if ! gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1); then
  echo "gpu_check: no NVIDIA GPU: nvidia-smi says: $gpu"
  exit 2
fi
say "GPU: $gpu"
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d"
done

# ---- the engine -------------------------------------------------------------
if [ ! -x "$gpu_build/bin/segmamba" ] && [ -f "$gpu_build/bundle.tar.xz" ]; then
  tar -C "$gpu_build" -xJf "$gpu_build/bundle.tar.xz"
fi
if [ -x "$gpu_build/bin/segmamba" ]; then
  seg=$root/$gpu_build/bin/segmamba
  test_cuda=$root/$gpu_build/bin/test_cuda
  export LD_LIBRARY_PATH="$root/$gpu_build/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  say "engine: the prepared bundle ($gpu_build/bin)"
else
  if ! command -v meson >/dev/null || ! command -v ninja >/dev/null; then
    . tools/ensure-packages.sh
    ensure_packages meson ninja-build >"$logs/packages.log" 2>&1 || true
  fi
  . tools/ensure-packages.sh
  ensure_packages build-essential pkg-config libopenblas-dev libdnnl-dev libnifti2-dev \
    zlib1g-dev libpng-dev >>"$logs/packages.log" 2>&1 ||
    say "gpu_check: could not install the build's packages (see $logs/packages.log); trying anyway"
  tb=$(date +%s)
  if { [ -f "$gpu_build/build.ninja" ] ||
       meson setup "$gpu_build" --buildtype=release -Dcuda=enabled -Dmpi=disabled; } \
     >"$logs/build.log" 2>&1 &&
     ninja -C "$gpu_build" segmamba tests/test_cuda >>"$logs/build.log" 2>&1; then
    result "build with CUDA ($(( $(date +%s) - tb )) s)" PASS
  else
    result "build with CUDA" FAIL
    tail -25 "$logs/build.log"
    echo "gpu_check: the build failed (log: $logs/build.log). On a machine without the build's"
    echo "packages, run 'bench/gpu_check.sh --prepare' on a build machine and bring build-gpu/bundle.tar.xz."
    exit 2
  fi
  seg=$root/$gpu_build/segmamba
  test_cuda=$root/$gpu_build/tests/test_cuda
fi
"$seg" version | tee "$logs/version.txt" | grep '^CUDA backend' | tee -a "$summary"
if ! grep -q '^CUDA backend: built; device: ' "$logs/version.txt"; then
  say "gpu_check: this engine cannot use the GPU (see above)"
  exit 2
fi

py=
for p in ${PYTHON:-} python3 /usr/bin/python3; do
  if "$p" -c 'import numpy, torch' 2>/dev/null; then py=$p; break; fi
done
if [ -z "$py" ]; then
  say "gpu_check: no Python with numpy and torch (set PYTHON)"
  exit 2
fi
export PYTHONUNBUFFERED=1

# ---- tests ------------------------------------------------------------------
run_check() { # NAME LOG COMMAND...: PASS on exit 0, SKIP on 77, else FAIL
  local name=$1 log=$2 rc t
  shift 2
  t=$(date +%s)
  "$@" >"$logs/$log" 2>&1
  rc=$?
  local status=FAIL
  [ $rc -eq 0 ] && status=PASS
  [ $rc -eq 77 ] && status=SKIP
  result "$name ($(( $(date +%s) - t )) s)" $status
  [ $status = FAIL ] && tail -15 "$logs/$log"
  return 0
}

run_check "ops vs the CPU backend" ops.log "$test_cuda"
grep 'worst error' "$logs/ops.log" | sed 's/^/  /' | tee -a "$summary"
model_test() { "$py" tests/test_cuda_model.py --segmamba "$seg" "$@"; }
run_check "model: tiny fixture" model-tiny.log model_test --fixture tests/fixtures/tiny
run_check "model: non-default config" model-nondefault.log \
  model_test --config nondefault --shape 32,48,64
run_check "model: official 64^3" model-official-64.log model_test --config official --size 64
case128=$gpu_build/official-128
rm -rf "$case128"
run_check "model: official 128^3" model-official-128.log \
  model_test --config official --size 128 --keep "$case128"
grep -E '^(ok  |FAIL) ' "$logs"/model-*.log | sed "s|^$logs/||; s/^/  /" | cut -c1-160 |
  tee -a "$summary"

# ---- the benchmark -----------------------------------------------------------
if [ -f "$case128/model.safetensors" ]; then
  run_check "bench: CPU and GPU, fp32" bench-fp32.log \
    "$seg" bench --model "$case128/model.safetensors" --size 128 --repeat 5 \
    --json "$logs/bench-fp32.json"
  run_check "bench: GPU, tf32" bench-tf32.log \
    "$seg" bench --model "$case128/model.safetensors" --size 128 --repeat 5 --backend cuda \
    --precision tf32 --json "$logs/bench-tf32.json"
  # TF32 rounds the GEMMs' inputs to 10 mantissa bits: its distance from the
  # CPU is reported, not held to the fp32 limits.
  model_test --fixture "$case128" --precision tf32 >"$logs/model-official-128-tf32.log" 2>&1
  say "tf32 parity at 128^3 (reported, not a check):"
  grep -E '^(ok  |FAIL) cuda vs cpu' "$logs/model-official-128-tf32.log" | sed 's/^/  /' |
    cut -c1-160 | tee -a "$summary"
  "$py" - "$logs" <<'PY' | tee -a "$summary"
import json, os, sys
logs = sys.argv[1]
def load(name):
    try:
        with open(os.path.join(logs, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
fp32, tf32 = load("bench-fp32.json"), load("bench-tf32.json")
rows = []
if fp32:
    rows.append(("cpu, " + fp32["precision"] + f", {fp32['threads']} threads", fp32))
    if "cuda" in fp32:
        rows.append(("cuda, fp32", fp32["cuda"]))
if tf32:
    rows.append(("cuda, tf32", tf32))
print("official config, 1x4x128^3, median of 5 forwards:")
print(f"  {'':24} {'ms per 128^3 window':>20} {'voxels/s':>12}")
for name, r in rows:
    print(f"  {name:24} {r['ms_per_128_window']:20.1f} {r['voxels_per_second']:12.4g}")
gpu = [r for n, r in rows if n.startswith("cuda")]
if fp32 and gpu:
    best = min(r["ms_per_128_window"] for r in gpu)
    print(f"  GPU vs CPU: {fp32['ms_per_128_window'] / best:.1f}x; target 100 ms per window: "
          f"{'met' if best <= 100 else 'not met'} ({best:.1f} ms)")
PY
else
  result "bench (no official 128^3 case)" FAIL
fi

say "gpu_check: $(( $(date +%s) - t0 )) s; logs in $logs"
[ $failed -eq 0 ] && say "gpu_check: all checks passed" || say "gpu_check: some checks FAILED"
exit $failed
