#!/usr/bin/python3
"""`segmamba metrics` against medpy's definition of Dice and HD95.

Random label maps (smoothed noise, so regions have real surfaces) with random
shapes and anisotropic spacings are written as NIfTI with nibabel; the CLI's
JSON is compared with an implementation of medpy.metric.binary.dc/hd95 on
scipy.ndimage (and with medpy itself when it is installed). A fresh seed per
run, printed, so a failure can be replayed with --seed.

usage: test_metrics_medpy.py --segmamba build/segmamba [--seed S] [--cases N]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import nibabel as nib
import numpy as np
from scipy import ndimage
from host_exe import host_command

try:
    from medpy.metric import binary as medpy_binary
except ImportError:
    medpy_binary = None


def hd95_oracle(pred, ref, spacing):
    """medpy.metric.binary.hd95: surfaces are mask ^ erosion(mask) with the
    6-neighbourhood, distances by an exact EDT at the voxel spacing, the 95th
    percentile (numpy's linear interpolation) of both directions pooled."""
    footprint = ndimage.generate_binary_structure(3, 1)

    def surface_distances(a, b):
        a_border = a ^ ndimage.binary_erosion(a, structure=footprint, iterations=1)
        b_border = b ^ ndimage.binary_erosion(b, structure=footprint, iterations=1)
        dt = ndimage.distance_transform_edt(~b_border, sampling=spacing)
        return dt[a_border]

    return float(np.percentile(np.hstack((surface_distances(pred, ref),
                                          surface_distances(ref, pred))), 95))


def score(pred, ref, spacing, empty_both_one):
    if not pred.any() or not ref.any():
        if empty_both_one and not pred.any() and not ref.any():
            return 1.0, 0.0
        return 0.0, 50.0
    dice = 2.0 * np.count_nonzero(pred & ref) / (np.count_nonzero(pred) + np.count_nonzero(ref))
    hd = hd95_oracle(pred, ref, spacing)
    if medpy_binary is not None:
        assert abs(medpy_binary.dc(pred, ref) - dice) < 1e-12
        assert abs(medpy_binary.hd95(pred, ref, voxelspacing=spacing) - hd) < 1e-9
    return dice, hd


def random_labels(rng, shape):
    """Labels 0..3 from thresholded smooth noise: blob-like regions."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=rng.uniform(0.8, 2.5))
    noise /= noise.std() + 1e-12
    t = np.sort(rng.uniform(0.2, 1.8, 3))
    lab = np.zeros(shape, np.uint8)
    lab[noise > t[0]] = 2
    lab[noise > t[1]] = 1
    lab[noise > t[2]] = 3
    return lab


def perturb(rng, lab):
    """A plausible prediction: the reference shifted, with flipped voxels."""
    out = np.roll(lab, tuple(rng.integers(-2, 3, 3)), axis=(0, 1, 2))
    flip = rng.random(lab.shape) < rng.uniform(0, 0.05)
    out[flip] = rng.integers(0, 4, np.count_nonzero(flip))
    return out.astype(np.uint8)


def save(path, lab_dhw, spacing, dtype):
    """(D, H, W) -> a NIfTI whose stored order is [k][j][i] (x = W fastest)."""
    aff = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    aff[:3, 3] = [-10.0, 5.0, 2.5]
    nib.save(nib.Nifti1Image(lab_dhw.transpose(2, 1, 0).astype(dtype), aff), path)


def run(cli, args):
    return subprocess.run(host_command(cli) + ["metrics"] + args, capture_output=True, text=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--segmamba", required=True)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--cases", type=int, default=25)
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), "little")
    print(f"seed {seed}; oracle: {'medpy and ' if medpy_binary else ''}scipy.ndimage")
    rng = np.random.default_rng(seed)
    failures = 0
    regions = {"1": [1], "2": [2], "3": [3], "TC": [1, 3], "WT": [1, 2, 3]}
    with tempfile.TemporaryDirectory() as tmp:
        pred_path, ref_path = os.path.join(tmp, "pred.nii.gz"), os.path.join(tmp, "ref.nii")
        out = os.path.join(tmp, "m.json")
        for case in range(a.cases):
            shape = tuple(int(rng.integers(1, 36)) if rng.random() < 0.15 else
                          int(rng.integers(8, 36)) for _ in range(3))
            spacing = tuple(float(rng.uniform(0.3, 3.0)) for _ in range(3))
            ref = random_labels(rng, shape)
            pred = perturb(rng, ref)
            if case % 7 == 3:
                pred[pred == 3] = 0  # an empty region
            if case % 11 == 5:
                pred[pred == 1] = 0
                ref[ref == 1] = 0  # empty in both
            empty_both_one = case % 2 == 1
            save(pred_path, pred, spacing, [np.uint8, np.int16, np.float32][case % 3])
            save(ref_path, ref, spacing, np.uint8)
            args = ["--pred", pred_path, "--ref", ref_path, "--json", out,
                    "--labels", "1,2,3,TC=1+3,WT=1+2+3"] + (["--empty-both-one"] if empty_both_one else [])
            r = run(a.segmamba, args)
            if r.returncode != 0:
                print(f"case {case}: exit {r.returncode}: {r.stderr}")
                failures += 1
                continue
            got = {g["name"]: g for g in json.load(open(out))["regions"]}
            # nibabel stores pixdim as float32: the oracle uses the same values
            sp32 = tuple(float(np.float32(s)) for s in spacing)
            for name, labels in regions.items():
                dice, hd = score(np.isin(pred, labels), np.isin(ref, labels), sp32, empty_both_one)
                g = got[name]
                ok = abs(g["dice"] - dice) <= 1e-6 * max(abs(dice), 1e-300) + 1e-12 and \
                    abs(g["hd95"] - hd) <= 1e-4
                if not ok:
                    failures += 1
                    print(f"case {case} shape {shape} spacing {spacing} region {name}: "
                          f"got Dice {g['dice']} HD95 {g['hd95']}, want {dice} {hd}")
        print(f"{a.cases} random cases compared")

        # refusals: non-integral labels, mismatched dims, mismatched geometry
        lab = random_labels(rng, (6, 7, 8))
        save(ref_path, lab, (1, 1, 1), np.uint8)
        bad = lab.astype(np.float32)
        bad[2, 3, 4] = 1.5
        save(pred_path, bad, (1, 1, 1), np.float32)
        checks = [(3, "not a label")]
        r = run(a.segmamba, ["--pred", pred_path, "--ref", ref_path])
        results = [r]
        save(pred_path, lab[:5], (1, 1, 1), np.uint8)
        results.append(run(a.segmamba, ["--pred", pred_path, "--ref", ref_path]))
        checks.append((6, "dims differ: 8x7x5 vs 8x7x6"))
        save(pred_path, lab, (1, 1, 1.2), np.uint8)
        results.append(run(a.segmamba, ["--pred", pred_path, "--ref", ref_path]))
        checks.append((6, "spacing differs"))
        results.append(run(a.segmamba, ["--pred", pred_path, "--ref", ref_path, "--labels", "1,,2"]))
        checks.append((1, "--labels"))
        for r, (code, words) in zip(results, checks):
            if r.returncode != code or words not in r.stderr:
                failures += 1
                print(f"expected exit {code} and '{words}', got {r.returncode}: {r.stderr}")
    print("FAILED" if failures else "ok", f"({failures} failures)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
