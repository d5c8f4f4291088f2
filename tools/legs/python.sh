#!/usr/bin/env bash
# Leg: the Python package (python/, pyproject.toml). In a venv of its own
# ($LEG_BUILD/venv, with Debian's site packages: torch, nibabel, scipy) it
# builds the wheel with meson-python (warnings as errors; the build folder
# $LEG_BUILD/wheel-build is kept between runs), installs it, runs the
# pytest suite tests/python against the CLI of ./build, and installs the
# same wheel into a second venv and imports it there. Each pytest case and
# each of those steps is one test in $LEG_BUILD/meson-logs/testlog.json
# (tools/run-tests.sh counts it); a step that fails is a failed test.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
leg=$root/$LEG_BUILD
log=$leg/meson-logs/testlog.json
mkdir -p "$leg/meson-logs"
: > "$log.tmp"
status=0
t0=$(date +%s)

record() { # NAME OK|FAIL
  /usr/bin/python3 -c 'import json, sys; print(json.dumps({"name": sys.argv[1], "result": sys.argv[2]}))' \
    "$1" "$2" >> "$log.tmp"
  [ "$2" = OK ] || status=1
}
step() { # NAME COMMAND...: runs it, records it
  local name=$1
  shift
  echo "== python: $name"
  if "$@"; then record "python: $name" OK; else record "python: $name" FAIL; return 1; fi
}

tools/setup.sh > "$leg/setup.log" 2>&1 || { tail -20 "$leg/setup.log"; record "python: tools/setup.sh (the CLI the tests compare with)" FAIL; }
. tools/ensure-packages.sh
ensure_packages python3-venv python3-dev python3-pip

venv=$leg/venv
# MONAI 1.3.2 runs on Debian 12's torch 1.13; --no-deps keeps pip from
# fetching another torch (MONAI needs only torch and numpy).
make_venv() {
  [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$venv" || return 1
  "$venv/bin/pip" install -q 'meson-python>=0.13' ninja pytest &&
    "$venv/bin/pip" install -q --no-deps monai==1.3.2
}
build_wheel() {
  rm -rf "$leg/dist"
  "$venv/bin/pip" wheel -q --no-deps --no-build-isolation -w "$leg/dist" \
    --config-settings=setup-args=-Dwerror=true --config-settings=compile-args=-j2 \
    --config-settings=build-dir="$leg/wheel-build" . &&
    ls "$leg"/dist/segmamba-*.whl > /dev/null
}
install_wheel() {
  "$venv/bin/pip" install -q --force-reinstall --no-deps "$leg"/dist/segmamba-*.whl
}
# The wheel holds the package and nothing else (no CLI, headers, tests).
wheel_contents() {
  "$venv/bin/python" - "$leg"/dist/segmamba-*.whl <<'PY'
import sys, zipfile
names = [n for n in zipfile.ZipFile(sys.argv[1]).namelist() if ".dist-info/" not in n]
print("\n".join(names))
extra = [n for n in names if not n.startswith("segmamba/")]
sys.exit(1 if extra or not any(n.startswith("segmamba/_segmamba.") for n in names) else 0)
PY
}
second_venv() {
  local v2=$leg/venv2
  rm -rf "$v2"
  /usr/bin/python3 -m venv --system-site-packages "$v2" &&
    "$v2/bin/pip" install -q --no-deps "$leg"/dist/segmamba-*.whl &&
    (cd / && "$v2/bin/python" -c '
import numpy as np, segmamba, sys
m = segmamba.Model(sys.argv[1], nslices=(16, 8, 4, 2), threads=2)
y = m.forward(np.load(sys.argv[2]))
ok = np.abs(y - np.load(sys.argv[3])).max() <= 1e-3 * np.abs(np.load(sys.argv[3])).max()
print(segmamba.__file__, y.shape, "ok" if ok else "FAIL")
sys.exit(0 if ok else 1)' "$root/tests/fixtures/tiny/model.safetensors" \
      "$root/tests/fixtures/tiny/input.npy" "$root/tests/fixtures/tiny/expected.npy")
}

if step "venv (meson-python, ninja, pytest, monai 1.3.2)" make_venv &&
   step "pip wheel . (meson-python, -Dwerror=true)" build_wheel &&
   step "the wheel holds the package only" wheel_contents &&
   step "pip install the wheel" install_wheel; then
  echo "leg python: venv and build $(( $(date +%s) - t0 )) s"
  step "the wheel in a second venv: import and forward" second_venv
  # From outside the tree, so that `import segmamba` is the installed package.
  (cd "$leg" && SEGMAMBA_EXE="$root/build/segmamba" MALLOC_PERTURB_=0 \
     "$venv/bin/python" -m pytest -p no:cacheprovider -q -rA --durations=5 \
     --junitxml="$leg/pytest.xml" "$root/tests/python")
  [ $? -eq 0 ] || status=1
  if [ -f "$leg/pytest.xml" ]; then
    /usr/bin/python3 - "$leg/pytest.xml" >> "$log.tmp" <<'PY' || status=1
import json, sys
import xml.etree.ElementTree as ET
cases = ET.parse(sys.argv[1]).getroot().iter("testcase")
n = 0
for c in cases:
    n += 1
    kinds = {child.tag for child in c}
    result = ("FAIL" if kinds & {"failure", "error"} else
              "SKIP" if "skipped" in kinds else "OK")
    name = f"python: {c.get('classname')}::{c.get('name')}"
    print(json.dumps({"name": name, "result": result, "duration": float(c.get("time", 0))}))
if n == 0:
    print(json.dumps({"name": "python: pytest ran no test", "result": "FAIL"}))
PY
  else
    record "python: pytest (no junit report)" FAIL
  fi
fi
mv "$log.tmp" "$log"
echo "leg python: $(( $(date +%s) - t0 )) s"
exit $status
