#!/usr/bin/python3
"""Figures and behaviours docs/ and ARCHITECTURE.md state, checked:

  overlap    `predict --overlap F` runs as many windows as MONAI's
             sliding_window_inference would (per axis: 1 where the crop box
             fits the patch, else ceil((size - patch) / int(patch * (1 - F)))
             + 1), for F = 0.25, 0.5, 0.75, 0.9; the tiny fixture.
  generic    a checkpoint with no card, 2 inputs and 1 output gets the generic
             card (said on stderr): labels 0/1, each voxel's label 1 exactly
             where its sigmoid probability is above 0.5.
  ensemble   "each model's activation arena is freed when it is done, so an
             ensemble costs one more set of weights per model, not another
             arena" (docs/predict.md): with the demo model once, twice and three times,
             the peak RSS a prediction adds over loading the models (the same
             command on an all-zero case, which runs no window) does not grow
             with the number of models by anything near an arena.
  arena      "at 128^3 with the official config and --conv auto the arena is
             864 MiB (set by decoder2's copy and transposed convolution:
             cat[0], 768 MiB, and decoder3's result, 96 MiB)"
             (docs/internals.md): segmamba bench's arena equals
             (2 f0 x 128^3 + f1 x 64^3) x 4 bytes, f0 and f1 the first two
             stages' features (the full resolution runs in place, in cat[0]).
  weights    "backends repack once and the store's copy is released"
             (ARCHITECTURE.md): with --conv ref and blas, which keep the
             weights as they are (repacked), bench's weight_bytes is 4 bytes
             per parameter exactly, for v1 and SegMamba-V2 (tiny configs);
             oneDNN's own layouts and Winograd's transformed weights take at
             least that.

    /usr/bin/python3 tests/test_claims.py --segmamba build/segmamba [--only NAME]
"""

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile

import nibabel as nib
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
import phantom  # noqa: E402
from checks import check, make_tiny_model, results  # noqa: E402

TINY = os.path.join(HERE, "fixtures", "tiny", "model.safetensors")
DEMO = os.path.join(ROOT, "models", "demo", "segmamba_demo.safetensors")


def run(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def peak_rss_mib(cmd):
    """Runs cmd under /usr/bin/time; (its peak RSS in MiB, the process)."""
    p = run(["/usr/bin/time", "-f", "maxrss %M"] + cmd)
    m = re.findall(r"maxrss (\d+)", p.stderr)
    return (int(m[-1]) / 1024 if m else float("nan")), p


def monai_windows(box, patch, overlap):
    n = 1
    for size, roi in zip(box, patch):
        interval = int(roi * (1 - overlap))
        n *= 1 if size <= roi else math.ceil((size - roi) / interval) + 1
    return n


def check_overlap(args, tmp):
    card = {"channels": [{"name": "c0", "normalization": "zscore"},
                         {"name": "c1", "normalization": "zscore"}],
            "spacing": "input", "patch": [32, 32, 32], "labels": ["background", "a", "b"],
            "output": "argmax"}
    card_path = os.path.join(tmp, "overlap-card.json")
    with open(card_path, "w") as f:
        json.dump(card, f)
    rng = np.random.default_rng(3)
    shape = (45, 61, 50)  # x, y, z; nonzero everywhere: the crop box is the volume
    inputs = []
    for c in range(2):
        p = os.path.join(tmp, f"overlap{c}.nii.gz")
        nib.Nifti1Image((100 + 20 * rng.standard_normal(shape)).astype(np.float32),
                        np.eye(4)).to_filename(p)
        inputs.append(p)
    for overlap in (0.25, 0.5, 0.75, 0.9):
        p = run([args.segmamba, "predict", "--model", TINY, "--card", card_path, "-i"] + inputs +
                ["-o", os.path.join(tmp, "overlap-out.nii.gz"), "--no-tta", "--threads", "2",
                 "--overlap", str(overlap)])
        m = re.search(r"crop \[(\d+):(\d+), (\d+):(\d+), (\d+):(\d+)\], (\d+) windows", p.stderr)
        if not check(f"overlap {overlap}: predict runs and reports its crop box and windows",
                     p.returncode == 0 and m, p.stderr[-500:]):
            continue
        v = [int(x) for x in m.groups()]
        box = (v[1] - v[0], v[3] - v[2], v[5] - v[4])
        want = monai_windows(box, (32, 32, 32), overlap)
        check(f"overlap {overlap}: {v[6]} windows over a {box[0]}x{box[1]}x{box[2]} box, as MONAI "
              f"would run ({want})", v[6] == want and box == shape[::-1], (v[6], want, box))


def check_generic(args, tmp):
    model = os.path.join(tmp, "generic")
    p = make_tiny_model(model, 2, 1, seed=5)
    if not check("generic: a 2-input, 1-output checkpoint made", p.returncode == 0, p.stderr[-500:]):
        return
    rng = np.random.default_rng(4)
    inputs = []
    for c in range(2):
        path = os.path.join(tmp, f"generic{c}.nii.gz")
        nib.Nifti1Image((50 + 30 * rng.standard_normal((20, 18, 17))).astype(np.float32),
                        np.diag([1.2, 0.9, 1.1, 1])).to_filename(path)
        inputs.append(path)
    labels, probs = (os.path.join(tmp, f"generic-{n}.nii.gz") for n in ("labels", "probs"))
    p = run([args.segmamba, "predict", "--model", os.path.join(model, "model.safetensors"), "-i"] +
            inputs + ["-o", labels, "--probabilities", probs, "--threads", "2"])
    if not check("generic: predict without a card runs", p.returncode == 0, p.stderr[-800:]):
        return
    check("generic: predict says it uses the generic card", "generic" in p.stderr, p.stderr[-800:])
    lab = np.asarray(nib.load(labels).dataobj)
    prob = np.asarray(nib.load(probs).dataobj)
    check("generic: one output gives labels 0 and 1 (both present here)",
          set(np.unique(lab)) == {0, 1}, np.unique(lab, return_counts=True))
    prob = prob.reshape(lab.shape)
    check("generic: label 1 exactly where the sigmoid probability is above 0.5",
          np.array_equal(lab == 1, prob > 0.5), np.count_nonzero((lab == 1) != (prob > 0.5)))
    check("generic: probabilities are sigmoids (in [0, 1], not all one value)",
          prob.min() >= 0 and prob.max() <= 1 and prob.max() > prob.min(), (prob.min(), prob.max()))


def check_ensemble(args, tmp):
    case = phantom.generate(2024, 0, (80, 96, 96))
    paths = phantom.write_case(os.path.join(tmp, "ens"), case)["channels"]
    zeros = []
    for p in paths:
        img = nib.load(p)
        z = os.path.join(tmp, "zero-" + os.path.basename(p))
        nib.Nifti1Image(np.zeros(img.shape, np.int16), img.affine).to_filename(z)
        zeros.append(z)
    p = run([args.segmamba, "bench", "--model", DEMO, "--size", "64", "--repeat", "1", "--threads", "2",
             "--json", os.path.join(tmp, "demo-bench.json")])
    if not check("ensemble: bench gives the demo model's arena at its 64^3 patch", p.returncode == 0,
                 p.stderr[-500:]):
        return
    with open(os.path.join(tmp, "demo-bench.json")) as f:
        doc = json.load(f)
    arena = (doc["runs"][0] if "runs" in doc else doc)["activations_mib"]
    added = []
    for n in (1, 2, 3):
        base = [args.segmamba, "predict"] + ["--model", DEMO] * n + ["--no-tta", "--threads", "2", "--quiet"]
        work, p1 = peak_rss_mib(base + ["-i"] + paths + ["-o", os.path.join(tmp, f"ens{n}.nii.gz")])
        load, p0 = peak_rss_mib(base + ["-i"] + zeros + ["-o", os.path.join(tmp, f"zero{n}.nii.gz")])
        if not check(f"ensemble of {n}: predict runs on the phantom and on an all-zero case",
                     p1.returncode == 0 and p0.returncode == 0, p1.stderr[-300:] + p0.stderr[-300:]):
            return
        added.append(work - load)
        print(f"     {n} model(s): peak RSS {work:.0f} MiB, loading alone {load:.0f} MiB, "
              f"added by predicting {work - load:.0f} MiB (arena {arena:.0f} MiB)")
    check("ensemble: what predicting adds does not grow by an arena per model "
          f"({', '.join(f'{a:.0f}' for a in added)} MiB for 1, 2, 3 models; arena {arena:.0f} MiB)",
          max(added) - min(added) < arena / 4, added)


def check_arena(args, tmp):
    out = os.path.join(tmp, "official")
    p = run(["/usr/bin/python3", os.path.join(HERE, "reference", "gen_case.py"), "--config", "official",
             "--size", "32", "--seed", "1", "--out", out])
    if not check("arena: the official config made", p.returncode == 0, p.stderr[-500:]):
        return
    with open(os.path.join(out, "case.json")) as f:
        f0, f1 = json.load(f)["config"]["feat_size"][:2]
    js = os.path.join(tmp, "official-bench.json")
    p = run([args.segmamba, "bench", "--model", os.path.join(out, "model.safetensors"), "--size", "128",
             "--repeat", "1", "--threads", "2", "--json", js])
    if not check("arena: bench at 128^3 runs", p.returncode == 0, p.stderr[-500:]):
        return
    with open(js) as f:
        doc = json.load(f)
    arena = (doc["runs"][0] if "runs" in doc else doc)["activations_mib"]
    want = (2 * f0 * 128 ** 3 + f1 * 64 ** 3) * 4 / 2 ** 20
    check(f"arena: {arena} MiB at 128^3 (official, --conv auto) = decoder2's cat ({2 * f0} channels) "
          f"and decoder3's result ({f1} at 64^3) = {want:.0f} MiB", abs(arena - want) < 0.5,
          (arena, want))


def check_weights(args, tmp):
    for family in ("v1", "v2"):
        out = os.path.join(tmp, f"weights-{family}")
        p = run(["/usr/bin/python3", os.path.join(HERE, "reference", "gen_case.py"), "--config", "tiny",
                 "--family", family, "--size", "16", "--seed", "1", "--out", out])
        if not check(f"weights: the tiny {family} model made", p.returncode == 0, p.stderr[-500:]):
            continue
        js = os.path.join(tmp, f"weights-{family}.json")
        p = run([args.segmamba, "bench", "--model", os.path.join(out, "model.safetensors"), "--size", "32",
                 "--repeat", "1", "--threads", "2", "--conv", "ref,blas,onednn,auto", "--json", js])
        if not check(f"weights: bench of the tiny {family} model runs", p.returncode == 0, p.stderr[-500:]):
            continue
        with open(js) as f:
            runs = {r["conv"]: r for r in json.load(f)["runs"]}
        raw = 4 * runs["ref"]["n_params"]
        for conv in ("ref", "blas"):
            check(f"weights: {family} --conv {conv} holds {runs[conv]['weight_bytes']} bytes = 4 x "
                  f"{runs[conv]['n_params']} parameters", runs[conv]["weight_bytes"] == raw,
                  (runs[conv]["weight_bytes"], raw))
        for conv in ("onednn", "auto"):
            check(f"weights: {family} --conv {conv} holds {runs[conv]['weight_bytes']} bytes, at least "
                  f"the parameters' {raw}", runs[conv]["weight_bytes"] >= raw,
                  (runs[conv]["weight_bytes"], raw))


CHECKS = {"overlap": check_overlap, "generic": check_generic, "ensemble": check_ensemble,
          "arena": check_arena, "weights": check_weights}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--segmamba", required=True)
    ap.add_argument("--only", choices=list(CHECKS))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="segmamba-claims-") as tmp:
        for name, fn in CHECKS.items():
            if not args.only or args.only == name:
                fn(args, tmp)
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] or not results["passed"] else 0


if __name__ == "__main__":
    sys.exit(main())
