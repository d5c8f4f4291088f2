#!/usr/bin/env bash
# The main job for now: set up and build, write a random-weight SegMamba
# checkpoint with the PyTorch reference, show it with `segmamba info`, run a
# forward pass through the engine and compare its logits with PyTorch's.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
build=${SEGMAMBA_BUILD_DIR:-build}
size=${SEGMAMBA_DEMO_SIZE:-64}
case_dir=${SEGMAMBA_DEMO_DIR:-$build/demo}
mkdir -p "$case_dir"
echo "== writing a random-weight official-config SegMamba and a ${size}^3 input"
/usr/bin/python3 tests/reference/gen_case.py --config official --size "$size" --seed 2024 \
  --out "$case_dir"
nslices=$(/usr/bin/python3 -c "import json,sys; print(','.join(map(str, json.load(open(sys.argv[1]))['nslices'])))" "$case_dir/case.json")
echo "== segmamba info"
"$build/segmamba" info "$case_dir/model.pt"
echo "== segmamba forward (nslices $nslices)"
"$build/segmamba" forward --model "$case_dir/model.pt" --input "$case_dir/input.npy" \
  --output "$case_dir/logits.npy" --nslices "$nslices"
echo "== engine against PyTorch"
/usr/bin/python3 tests/reference/compare.py "$case_dir/expected.npy" "$case_dir/logits.npy"
