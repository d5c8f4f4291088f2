#!/usr/bin/python3
"""`segmamba predict` against the independent Python pipeline (tests/reference/pipeline_ref.py)
with the PyTorch reference model, on synthetic cases with the tiny committed model:

  crop-tta   40x37x50, zero border (the crop matters), 8-way mirror averaging
  resample   one 4D file, spacing (1.3, 0.8, 1.1) mm: cubic in, trilinear back
  small      20x25x18, smaller than the 32^3 patch on every axis, regions card
  zeros      an all-zero volume: all background, no window run
  sigmoid-masks  sigmoid head, threshold 0.4, patch 16x32x48, card overlap 0.25:
             -o is the 4D masks
  sigmoid-table  sigmoid head with a card regions table, spacing "input", patch 32x16x32
  regions-table  a regions card with its own table (labels 4, 1, 2), patch 48x32x16
  ensemble   --model twice: the fixture and a perturbed copy of it (random per
             seed), resampled, 8-way mirror averaging; the reference averages
             the two models' logits
  self-ensemble  the fixture model twice gives byte for byte what it gives once

Probabilities within 2e-3 of the reference's; labels, masks and regions equal
wherever the reference decides by more than that measured error allows (a
voxel whose best and second probabilities are within 2 max|dprob| of each
other, or whose sigmoid is within that of its threshold, may go either way;
a mask only where its sigmoid is within max|dprob| of the threshold). Also a
few command-line refusals (input count, an output over an input, swapped
BraTS channel names, an ensemble of two networks or of two model cards).

    /usr/bin/python3 tests/test_pipeline_reference.py --segmamba build/segmamba
"""

import argparse
import copy
import json
import math
import os
import subprocess
import sys
import tempfile

import nibabel as nib
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))
import pipeline_ref  # noqa: E402
from segmamba_ref import SegMambaRef  # noqa: E402
from host_exe import host_command  # noqa: E402
from safetensors_writer import write_safetensors  # noqa: E402

FIXTURE = os.path.join(HERE, "fixtures", "tiny")
NSLICES = [16, 8, 4, 2]
PROB_TOL = 2e-3


def card(names, output="argmax", spacing=(1.0, 1.0, 1.0), **extra):
    labels = ["background", "a", "b"]
    if output == "regions":
        labels = ["background", "NCR", "ED", "ET"]
    elif output == "sigmoid":  # one per output of the tiny model's 3
        labels = ["background", "a", "b", "c"]
    c = {"channels": [{"name": n, "normalization": "zscore"} for n in names],
         "spacing": spacing if isinstance(spacing, str) else list(spacing), "patch": [32, 32, 32],
         "nslices": NSLICES, "fue": False, "labels": labels, "output": output}
    c.update(extra)
    return c


def writes_masks(crd):
    return (crd["output"] == "sigmoid" and "regions" not in crd
            and crd.get("sigmoid_labels", "masks") == "masks" and len(crd["labels"]) > 2)


def make_image(rng, shape, border):
    """Two channels of smooth plane waves on an MRI-like offset; zero outside
    a per-channel box (their union is the crop box)."""
    d, h, w = shape
    zz, yy, xx = np.meshgrid(*[np.arange(n, dtype=np.float64) / n for n in shape], indexing="ij")
    img = np.zeros((2, d, h, w), np.float32)
    for c in range(2):
        v = 0.3 * rng.standard_normal(shape)
        for _ in range(3):
            k = rng.uniform(-3, 3, 3)
            v += np.cos(2 * math.pi * (k[0] * zz + k[1] * yy + k[2] * xx) + rng.uniform(0, 2 * math.pi))
        img[c] = 200 + 40 * v
    if border:
        for c, (lo, hi) in enumerate([((3, 5, 2), (36, 30, 47)), ((4, 3, 6), (34, 33, 44))]):
            m = np.zeros(shape, bool)
            m[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
            img[c][~m] = 0
    return img


def save_nifti(path, vol, spacing):
    """vol (D, H, W) or (C, D, H, W) in the stored order (nz, ny, nx): nibabel
    indexes (x, y, z[, t]), so reverse the axes."""
    arr = vol.transpose(2, 1, 0) if vol.ndim == 3 else vol.transpose(3, 2, 1, 0)
    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    nib.save(nib.Nifti1Image(np.ascontiguousarray(arr), affine), path)


def load_nifti(path):
    a = np.asarray(nib.load(path).dataobj)
    return a.transpose(2, 1, 0) if a.ndim == 3 else a.transpose(3, 2, 1, 0)


def load_model():
    with open(os.path.join(FIXTURE, "case.json")) as f:
        cfg = json.load(f)["config"]
    model = SegMambaRef(nslices=NSLICES, **cfg)
    model.load_state_dict(torch.load(os.path.join(FIXTURE, "model.pt")))
    model.eval()
    return model


def perturbed_model(model, seed, path):
    """A copy of model with every parameter moved by 30% of its spread, saved to path."""
    other = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            spread = float(p.std()) if p.numel() > 1 else abs(float(p)) + 0.1
            p.add_(0.3 * spread * torch.randn(p.shape, generator=gen))
    write_safetensors(path, other.state_dict())
    return other


def run(cmd, expect=0):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != expect:
        sys.stderr.write(p.stderr)
        raise SystemExit(f"{' '.join(cmd)}: exit {p.returncode}, expected {expect}")
    return p


def run_case(args, model, tmp, name, image, spacing, crd, tta, four_d=False, extra=()):
    """extra: (torch model, checkpoint) pairs that join the fixture in an ensemble."""
    cdir = os.path.join(tmp, name)
    os.makedirs(cdir)
    card_path = os.path.join(cdir, "card.json")
    with open(card_path, "w") as f:
        json.dump(crd, f)
    if four_d:
        inputs = [os.path.join(cdir, "case.nii.gz")]
        save_nifti(inputs[0], image, spacing)
    else:
        inputs = []
        for c, ch in enumerate(crd["channels"]):
            inputs.append(os.path.join(cdir, f"case-{ch['name']}.nii.gz"))
            save_nifti(inputs[-1], image[c], spacing)
    out = {k: os.path.join(cdir, k + ".nii.gz") for k in ("seg", "prob", "unc", "regions")}
    cmd = host_command(args.segmamba) + ["predict", "--model", os.path.join(FIXTURE, "model.safetensors"),
           *[a for _, path in extra for a in ("--model", path)], "--card", card_path, "-i", *inputs, "-o", out["seg"], "--probabilities", out["prob"],
           "--uncertainty", out["unc"], "--threads", "2", "--quiet"]
    if crd["output"] == "regions" and "regions" not in crd:
        cmd += ["--regions", out["regions"]]
    if not tta:
        cmd.append("--no-tta")
    run(cmd)

    ref = pipeline_ref.predict([model] + [m for m, _ in extra] if extra else model, image, spacing,
                               crd, tta=tta)
    labels = load_nifti(out["seg"])
    prob = load_nifti(out["prob"])
    unc = load_nifti(out["unc"])
    if ref is None:  # nothing but zeros
        ok = (labels == 0).all() and (prob[0] == 1).all() and (prob[1:] == 0).all() and (unc == 0).all()
        print(f"{name}: all-zero input -> {'all background' if ok else 'NOT all background'}")
        return [] if ok else [f"{name}: an all-zero volume must give background everywhere"]
    dp = float(np.abs(prob - ref["probabilities"]).max())
    if writes_masks(crd):  # -o holds one mask per output
        agree = float((labels == ref["masks"]).mean())
        # a mask may differ only where the reference is within dp of the threshold
        tie = np.abs(ref["probabilities"].astype(np.float64) - crd.get("threshold", 0.5)) <= dp
        decided = labels.shape == ref["masks"].shape and \
            not ((labels != ref["masks"]) & ~tie).any()
        print(f"{name}: masks {labels.shape}, agree {agree:.5%}")
        if not decided:
            return [f"{name}: masks differ where the reference decides ({agree:.4%} agree)"]
        # the label map the API returns for masks: the last channel on wins
        labels = np.max(labels * np.arange(1, labels.shape[0] + 1, dtype=np.uint8)[:, None, None, None],
                        axis=0)
    failures = []
    agree = float((labels == ref["labels"]).mean())
    # Where the reference's decision is within twice the probabilities'
    # measured error of a tie (best - second, or a sigmoid from its
    # threshold), float32 against float64 may decide either way; everywhere
    # else the labels must be equal.
    tie = ref["margins"] <= 2 * dp
    differ = labels != ref["labels"]
    confident = int((differ & ~tie).sum())
    du = float(np.abs(unc - ref["uncertainty"]).max())
    hist = np.bincount(ref["labels"].ravel(), minlength=prob.shape[0]).tolist()
    print(f"{name}: shape {image.shape[1:]}, spacing {spacing}, patch {crd['patch']}, "
          f"output {crd['output']}, box {ref['box']}, tta {tta}: "
          f"labels agree {agree:.5%} (reference histogram {hist}; {int(differ.sum())} differ, "
          f"all at near-ties: {confident == 0}), max |dprob| {dp:.2e}, max |dentropy| {du:.2e}")
    if confident:
        failures.append(f"{name}: {confident} voxels differ where the reference decides "
                        f"(margin above 2 x {dp:.2g}); labels agree on {agree:.4%}")
    if dp > PROB_TOL:
        failures.append(f"{name}: probabilities differ by {dp:.3g} > {PROB_TOL}")
    if du > 5 * PROB_TOL:
        failures.append(f"{name}: uncertainty differs by {du:.3g}")
    if sum(n > 0 for n in hist) < 2:
        failures.append(f"{name}: degenerate case (one label everywhere)")
    if crd["output"] == "regions" and "regions" not in crd:
        reg = load_nifti(out["regions"])
        ragree = float((reg == ref["regions"]).mean())
        rdiffer = (reg != ref["regions"]).any(axis=0)
        print(f"{name}: regions agree {ragree:.5%}")
        if (rdiffer & ~tie).any():
            failures.append(f"{name}: regions differ where the reference decides "
                            f"({ragree:.4%} agree)")
    return failures


def cli_refusals(args, tmp):
    """Each must fail with exit code 1 before any inference."""
    d = os.path.join(tmp, "refusals")
    os.makedirs(d)
    img = np.ones((8, 8, 8), np.float32)
    paths = [os.path.join(d, f"x-{n}.nii.gz") for n in ("t2f", "t2w")]
    for p in paths:
        save_nifti(p, img, (1, 1, 1))
    card_path = os.path.join(d, "card.json")
    with open(card_path, "w") as f:
        json.dump(card(["t2w", "t2f"]), f)
    model = os.path.join(FIXTURE, "model.safetensors")
    base = host_command(args.segmamba) + ["predict", "--model", model, "--card", card_path, "--quiet"]
    # An ensemble of two networks (features 4,8,12,18 and 4,8,12,20) and one of
    # two cards (side files with patches 32^3 and 16x32x32).
    with open(os.path.join(FIXTURE, "case.json")) as f:
        cfg = json.load(f)["config"]
    cfg["feat_size"] = cfg["feat_size"][:3] + [20]
    wider = os.path.join(d, "wider.safetensors")
    torch.manual_seed(0)
    write_safetensors(wider, SegMambaRef(nslices=NSLICES, **cfg).state_dict())
    good = [paths[1], paths[0]]
    cards = []
    for name, patch in (("a", [32, 32, 32]), ("b", [16, 32, 32])):
        cards.append(os.path.join(d, name + ".safetensors"))
        with open(model, "rb") as src, open(cards[-1], "wb") as dst:
            dst.write(src.read())
        with open(os.path.join(d, name + ".card.json"), "w") as f:
            json.dump(card(["t2w", "t2f"], patch=patch), f)
    exe = host_command(args.segmamba) + ["predict"]
    cases = {
        "swapped channel names": (base + ["-i", *paths, "-o", os.path.join(d, "o.nii.gz")], 1, ""),
        "input count": (base + ["-i", paths[0], paths[1], paths[0], "-o", os.path.join(d, "o.nii.gz")],
                        1, ""),
        "output over an input": (base + ["-i", paths[1], paths[0], "-o", paths[0]], 1, ""),
        "an ensemble of two networks": (
            base + ["--model", wider, "-i", *good, "-o", os.path.join(d, "o.nii.gz")], 5,
            f"segmamba: error: {model} and {wider} are not one network: features 4,8,12,18 vs "
            "4,8,12,20; an ensemble averages checkpoints of one architecture"),
        "an ensemble of two cards": (
            exe + ["--model", cards[0], "--model", cards[1], "--quiet", "-i", *good, "-o",
                   os.path.join(d, "o.nii.gz")], 1,
            f"segmamba: error: {cards[0]} and {cards[1]} have different model cards "
            f"({cards[0][:-12]}.card.json vs {cards[1][:-12]}.card.json): patch 32x32x32 vs 16x32x32; "
            "an ensemble runs one card (or give --card)"),
    }
    failures = []
    for what, (cmd, code, message) in cases.items():
        p = subprocess.run(cmd, capture_output=True, text=True)
        msg = p.stderr.strip().splitlines()[0] if p.stderr.strip() else ""
        print(f"refuses {what}: exit {p.returncode}: {msg}")
        if p.returncode != code:
            failures.append(f"{what}: exit {p.returncode}, expected {code}")
        if message and msg != message:
            failures.append(f"{what}: message {msg!r}, expected {message!r}")
    return failures


def self_ensemble(args, tmp, image):
    """The fixture twice: the same files, byte for byte, as the fixture once."""
    d = os.path.join(tmp, "self-ensemble")
    os.makedirs(d)
    card_path = os.path.join(d, "card.json")
    with open(card_path, "w") as f:
        json.dump(card(["c0", "c1"]), f)
    inputs = [os.path.join(d, f"case-c{c}.nii.gz") for c in range(2)]
    for c, p in enumerate(inputs):
        save_nifti(p, image[c], (1.0, 1.0, 1.0))
    model = os.path.join(FIXTURE, "model.safetensors")
    outs = {}
    for n in (1, 2):
        o = [os.path.join(d, f"{k}{n}.nii.gz") for k in ("seg", "prob")]
        run(host_command(args.segmamba) + ["predict", *["--model", model] * n, "--card", card_path,
                                           "-i", *inputs, "-o", o[0], "--probabilities", o[1],
                                           "--threads", "2", "--quiet"])
        outs[n] = [open(p, "rb").read() for p in o]
    same = outs[1] == outs[2]
    print(f"self-ensemble: the fixture twice {'equals' if same else 'DIFFERS FROM'} the fixture once")
    return [] if same else ["self-ensemble: the fixture twice differs from the fixture once"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--segmamba", required=True)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    print(f"test_pipeline_reference: seed {seed}; sliding window from "
          f"{'MONAI' if pipeline_ref.monai_swi else 'pipeline_ref.sliding_window'}")
    rng = np.random.default_rng(seed)
    torch.set_num_threads(2)
    model = load_model()
    failures = []
    with tempfile.TemporaryDirectory(prefix="sm_pipeline_") as tmp:
        failures += cli_refusals(args, tmp)
        failures += run_case(args, model, tmp, "crop-tta", make_image(rng, (40, 37, 50), True),
                             (1.0, 1.0, 1.0), card(["c0", "c1"]), tta=True)
        failures += run_case(args, model, tmp, "resample", make_image(rng, (30, 28, 36), False),
                             (1.3, 0.8, 1.1), card(["c0", "c1"]), tta=False, four_d=True)
        failures += run_case(args, model, tmp, "small", make_image(rng, (20, 25, 18), False),
                             (1.0, 1.0, 1.0), card(["c0", "c1"], output="regions"), tta=True)
        failures += run_case(args, model, tmp, "zeros", np.zeros((2, 12, 13, 14), np.float32),
                             (1.0, 1.0, 1.0), card(["c0", "c1"]), tta=True)
        # The heads beyond BraTS, with non-cubic patches and the card's overlap.
        failures += run_case(args, model, tmp, "sigmoid-masks", make_image(rng, (40, 37, 50), True),
                             (1.0, 1.0, 1.0),
                             card(["c0", "c1"], output="sigmoid", threshold=0.4,
                                  patch=[16, 32, 48], overlap=0.25), tta=False)
        table = [{"name": "B", "channel": 2, "label": 2}, {"name": "A", "channel": 0, "label": 3},
                 {"name": "C", "channel": 1, "label": 1}]
        failures += run_case(args, model, tmp, "sigmoid-table", make_image(rng, (26, 30, 34), False),
                             (1.4, 0.9, 1.0),
                             card(["c0", "c1"], output="sigmoid", spacing="input",
                                  patch=[32, 16, 32], regions=table), tta=False)
        rtable = [{"name": "X", "channel": 0, "label": 4}, {"name": "Y", "channel": 2, "label": 1},
                  {"name": "Z", "channel": 1, "label": 2}]
        rcard = card(["c0", "c1"], output="regions", regions=rtable, patch=[48, 32, 16])
        rcard["labels"] = ["background", "p", "q", "r", "s"]
        failures += run_case(args, model, tmp, "regions-table", make_image(rng, (36, 30, 40), True),
                             (1.2, 1.0, 0.9), rcard, tta=False)
        # Two models' logits averaged, then resampled back and the argmax.
        other_path = os.path.join(tmp, "other.safetensors")
        other = perturbed_model(model, seed, other_path)
        failures += run_case(args, model, tmp, "ensemble", make_image(rng, (34, 30, 40), True),
                             (1.2, 1.0, 0.9), card(["c0", "c1"]), tta=True,
                             extra=[(other, other_path)])
        failures += self_ensemble(args, tmp, make_image(rng, (40, 37, 50), True))
    for f in failures:
        print("FAIL " + f)
    print("test_pipeline_reference: " + ("FAILED" if failures else "passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
