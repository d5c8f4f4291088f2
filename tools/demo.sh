#!/usr/bin/env bash
# The main job: set up and build, write a sample BraTS-like case (four MRI
# channels and its ground truth, NIfTI), segment it with the shipped demo
# model, score the result against the ground truth and draw a preview.
#   ./tools/demo.sh                 everything lands in build/demo/
#   SEGMAMBA_DEMO_DIR=DIR ./tools/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
build=${SEGMAMBA_BUILD_DIR:-build}
out=${SEGMAMBA_DEMO_DIR:-$build/demo}
model=models/demo/segmamba_demo.safetensors
threads=${SEGMAMBA_THREADS:-$(nproc)}
mkdir -p "$out"

echo "== the shipped model"
"$build/segmamba" info "$model"

echo "== a sample case (tools/phantom.py: synthetic, BraTS-like, held out from training)"
/usr/bin/python3 tools/phantom.py --out "$out" --cases 1 --seed 2024 --start 0
id=BraTS-PHT-00000-2024
case="$out/$id"
inputs=("$case/$id-t2w.nii.gz" "$case/$id-t2f.nii.gz" "$case/$id-t1n.nii.gz" "$case/$id-t1c.nii.gz")

echo "== segmamba predict"
"$build/segmamba" predict --model "$model" -i "${inputs[@]}" -o "$out/$id-pred.nii.gz" \
  --regions "$out/$id-regions.nii.gz" --preview "$out/$id-preview.png" --threads "$threads"

echo "== segmamba metrics (against the case's ground truth)"
"$build/segmamba" metrics --pred "$out/$id-pred.nii.gz" --ref "$case/$id-seg.nii.gz" \
  --json "$out/$id-metrics.json"

echo "== written"
ls -l "$out/$id-pred.nii.gz" "$out/$id-regions.nii.gz" "$out/$id-preview.png" "$out/$id-metrics.json"
