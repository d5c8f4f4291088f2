#!/usr/bin/env bash
# Sets up and builds (tools/setup.sh), runs the main test suite in ./build,
# then every extra leg in tools/legs/*.sh (other build configurations: no
# oneDNN, no OpenMP, sanitizers, aarch64 under emulation, ...). The last line
# is "N passed, N failed, N skipped" over all legs.
#
#   tools/run-tests.sh [meson test args...]      main suite, then all legs
#   SEGMAMBA_LEGS="none" tools/run-tests.sh      main suite only
#   SEGMAMBA_LEGS="asan arm64" tools/run-tests.sh   main suite and those legs
#
# A leg script is called with LEG_BUILD (its build folder, build-legs/NAME) in
# the environment; it installs what it needs, configures and builds there and
# runs `meson test -C "$LEG_BUILD"`, whose testlog.json is counted here. A leg
# that fails before its tests run counts as one failed test.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${SEGMAMBA_BUILD_DIR:-build}
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
status=0
t0=$(date +%s)

if tools/setup.sh; then
  rm -f "$build/meson-logs/testlog.json"
  # One test at a time: each already uses both cores.
  meson test -C "$build" --num-processes 1 --print-errorlogs "$@" || status=1
  [ -f "$build/meson-logs/testlog.json" ] && cp "$build/meson-logs/testlog.json" "$results/main.json"
else
  echo '{"name": "main: set-up and build", "result": "FAIL"}' > "$results/main.json"
  status=1
fi
echo "leg main: $(( $(date +%s) - t0 )) s"

legs=${SEGMAMBA_LEGS:-all}
for script in tools/legs/*.sh; do
  [ -e "$script" ] || continue
  name=$(basename "$script" .sh)
  if [ "$legs" != all ]; then
    case " $legs " in *" $name "*) ;; *) continue ;; esac
  fi
  echo "== leg $name"
  t=$(date +%s)
  leg_build="build-legs/$name"
  rm -f "$leg_build/meson-logs/testlog.json"
  LEG_BUILD="$leg_build" bash "$script" || status=1
  if [ -f "$leg_build/meson-logs/testlog.json" ]; then
    cp "$leg_build/meson-logs/testlog.json" "$results/$name.json"
  else
    echo "{\"name\": \"$name: set-up, build or run\", \"result\": \"FAIL\"}" > "$results/$name.json"
    status=1
  fi
  echo "leg $name: $(( $(date +%s) - t )) s"
done
echo "all legs: $(( $(date +%s) - t0 )) s"

/usr/bin/python3 - "$results" <<'PY'
import glob, json, os, sys
counts = {"passed": 0, "failed": 0, "skipped": 0}
failed = []
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    leg = os.path.basename(path)[:-5]
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if r["result"] in ("OK", "EXPECTEDFAIL"):
                counts["passed"] += 1
            elif r["result"] == "SKIP":
                counts["skipped"] += 1
            else:
                counts["failed"] += 1
                failed.append((leg, r))
# Each failure again here, with the end of its output, so that the tail of
# a CI log (often all that is kept) says why.
for leg, r in failed:
    out = (r.get("stdout") or "") + (r.get("stderr") or "")
    tail = out.rstrip().splitlines()[-40:]
    print(f"== [{leg}] {r['name']}: {r['result']}, exit {r.get('returncode')}, "
          f"{r.get('duration', 0):.0f} s; the last {len(tail)} lines of its output:")
    if tail:
        print("\n".join("   " + line for line in tail))
for leg, r in failed:
    print(f"FAILED [{leg}] {r['name']}")
print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
PY
[ $? -eq 0 ] || status=1
exit $status
