#!/usr/bin/env bash
# Times `segmamba predict` on a BraTS-sized case (4 channels of 240x240x155
# voxels at 1 mm: a phantom from tools/phantom.py) with and without mirror
# TTA, for each engine given, in one run, and says how many voxels of each
# label map differ from the first engine's.
#
#   bench/predict_compare.sh MODEL EXE[:CONV] [EXE[:CONV] ...]
#
# e.g. bench/predict_compare.sh /tmp/case128/model.safetensors \
#          /tmp/old/segmamba build/segmamba:onednn build/segmamba:auto
# (an engine without --conv auto is given without :CONV). Threads: all cores,
# or SEGMAMBA_THREADS. Work folder: $TMPDIR or /tmp. Needs /usr/bin/time
# (tools/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,13p "$0"; exit 1; }
model=$1
shift
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
threads=${SEGMAMBA_THREADS:-$(nproc)}
/usr/bin/python3 tools/phantom.py --out "$work" --cases 1 --seed 77 --shape 155 240 240 --quiet
dir=$(ls -d "$work"/BraTS-*)
id=$(basename "$dir")
inputs=("$dir/$id-t2w.nii.gz" "$dir/$id-t2f.nii.gz" "$dir/$id-t1n.nii.gz" "$dir/$id-t1c.nii.gz")
for tta in no-tta tta; do
  k=0
  for spec in "$@"; do
    exe=${spec%%:*}
    conv=()
    [ "$spec" != "$exe" ] && conv=(--conv "${spec#*:}")
    flag=()
    [ $tta = no-tta ] && flag=(--no-tta)
    out="$work/seg-$tta-$k.nii.gz"
    /usr/bin/time -f '%e %M' -o "$work/time" "$exe" predict --model "$model" -i "${inputs[@]}" \
      -o "$out" --threads "$threads" --quiet "${conv[@]}" "${flag[@]}"
    read -r seconds kib < "$work/time"
    diff=""
    if [ $k -gt 0 ]; then
      diff=$(/usr/bin/python3 -c "import nibabel as n, numpy as np, sys; a, b = (np.asarray(n.load(f).dataobj) for f in sys.argv[1:]); print(f', {int((a != b).sum())} of {a.size} voxels differ from the first')" "$work/seg-$tta-0.nii.gz" "$out")
    fi
    printf '%-7s %-40s %8.1f s, peak RSS %5d MiB%s\n' "$tta" "$spec" "$seconds" $((kib / 1024)) "$diff"
    k=$((k + 1))
  done
done
