"""Model.predict (and, for a file with an oblique affine, `segmamba
predict`) against an oracle assembled from MONAI 1.3.2's own parts, on cases
without resampling (card spacing "input"): probabilities within 1e-5,
labels, crop box and window count equal.

The oracle, written from MONAI and docs/predict.md's description of
the pipeline, shares nothing with the engine's pipeline code:
  crop        CropForeground(select_fn=x != 0): the box of voxels non-zero in
              any channel;
  normalise   per channel: zscore, NormalizeIntensity (the crop's own mean
              and population std); ct, ThresholdIntensity twice (clip to
              [clip_lo, clip_hi]) then NormalizeIntensity with the card's
              mean and std; the values the network sees are those computed
              in float64 (see normalize);
  windows     sliding_window_inference, Gaussian weights (sigma_scale
              0.125), constant zero padding of axes shorter than the patch;
  TTA         Flip of the input on each of the 8 axis sets (none, D, H, W,
              DH, DW, HW, DHW), the same Flip on the logits, their mean;
  outputs     Activations(softmax) in float64, AsDiscrete(argmax); outside
              the box label 0 with background probability 1.
The network is the package's Model.__call__ on each window (the engine's
forward), so what differs from test_forward's checks is the pipeline around
it. Each case is small (a few windows) and has a fixed seed."""
import json
import math
import os

import numpy as np
import pytest

import segmamba
from conftest import FIXTURE, THREADS, run_cli

torch = pytest.importorskip("torch")
nib = pytest.importorskip("nibabel")
monai_inferers = pytest.importorskip("monai.inferers")
mt = pytest.importorskip("monai.transforms")

MODEL = os.path.join(FIXTURE, "model.safetensors")
PROB_TOL = 1e-5
# light_training's Predictor order (spatial axes 0, 1, 2 = D, H, W).
MIRRORS = [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]


def make_card(patch, channels=None, **extra):
    c = {"channels": channels or [{"name": "a", "normalization": "zscore"},
                                  {"name": "b", "normalization": "zscore"}],
         "spacing": "input", "patch": list(patch), "nslices": [16, 8, 4, 2], "fue": False,
         "labels": ["background", "x", "y"], "output": "argmax"}
    c.update(extra)
    return c


def make_volume(shape, seed, boxes=None, scale=(40.0, 40.0), offset=(200.0, 200.0)):
    """Two channels of plane waves and noise, offset + scale * (about -4..4);
    channel c is zero outside boxes[c] ((lo, hi) per axis), so the crop box
    is their union."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.arange(n, dtype=np.float64) / n for n in shape], indexing="ij")
    vol = np.zeros((2,) + tuple(shape), np.float32)
    for c in range(2):
        v = 0.3 * rng.standard_normal(shape)
        for _ in range(3):
            k = rng.uniform(-3, 3, 3)
            v += np.cos(2 * math.pi * sum(ki * g for ki, g in zip(k, grid)) + rng.uniform(0, 6.3))
        vol[c] = offset[c] + scale[c] * v
        if boxes is not None:
            keep = np.zeros(shape, bool)
            keep[tuple(slice(lo, hi) for lo, hi in boxes[c])] = True
            vol[c][~keep] = 0
    return vol


class Counted:
    """The predictor, counting its calls (one window each: sw_batch_size 1)."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, x):
        self.calls += 1
        return self.model(x)


def normalize(x, chan):
    """One cropped channel (1, d, h, w) normalised as the card says, at the
    engine's precision: the statistics and (x - mean) / std in float64, then
    float32. MONAI's NormalizeIntensity computes in float32 and lands up to
    an ulp away, and one ulp on every input voxel moves this tiny random
    network's probabilities by about 5e-5 (measured), more than the 1e-5
    this compares at; so MONAI's result is checked against it within a few
    ulps (same statistics: per channel, the whole box, population std), and
    the float64 one is what the network sees. ct: MONAI's ThresholdIntensity
    (exact) clips first."""
    x = torch.tensor(np.asarray(x))  # MONAI's intensity transforms write in place
    if chan["normalization"] == "ct":
        x = mt.ThresholdIntensity(chan["clip_lo"], above=True, cval=chan["clip_lo"])(x)
        x = torch.as_tensor(mt.ThresholdIntensity(chan["clip_hi"], above=False,
                                                  cval=chan["clip_hi"])(x))
        mean, std = chan["mean"], chan["std"]
        monai_norm = mt.NormalizeIntensity(subtrahend=[mean], divisor=[std], channel_wise=True)
    else:
        mean, std = float(x.double().mean()), float(x.double().std(unbiased=False))
        monai_norm = mt.NormalizeIntensity(nonzero=False, channel_wise=True)
    exact = ((x.double() - mean) / std).float()
    theirs = torch.as_tensor(monai_norm(x.clone()))
    assert float((theirs - exact).abs().max()) <= 4 * float(np.spacing(np.float32(exact.abs().max())))
    return exact


@torch.no_grad()
def monai_oracle(model, vol, card, tta, overlap):
    """vol: float32 (C, D, H, W). Returns labels, probabilities, box, windows."""
    img = torch.tensor(vol)
    cropper = mt.CropForeground(select_fn=lambda x: x != 0, margin=0, allow_smaller=True)
    start, end = cropper.compute_bounding_box(img)
    box = [(int(lo), int(hi)) for lo, hi in zip(start, end)]
    x = torch.as_tensor(cropper(img))
    x = torch.cat([normalize(x[i:i + 1], ch) for i, ch in enumerate(card["channels"])])
    net = Counted(model)
    logits = None
    mirrors = MIRRORS if tta else MIRRORS[:1]
    for axes in mirrors:
        flip = mt.Flip(spatial_axis=list(axes)) if axes else (lambda t: t)
        out = monai_inferers.sliding_window_inference(
            torch.as_tensor(flip(x))[None], roi_size=card["patch"], sw_batch_size=1,
            predictor=net, overlap=overlap, mode="gaussian", sigma_scale=0.125,
            padding_mode="constant", cval=0.0)
        out = torch.as_tensor(flip(out[0]))
        logits = out if logits is None else logits + out
    logits = logits / len(mirrors)
    prob = torch.as_tensor(mt.Activations(softmax=True)(logits.double()))
    lab = torch.as_tensor(mt.AsDiscrete(argmax=True)(prob))[0]
    k = prob.shape[0]
    probs = np.zeros((k,) + vol.shape[1:], np.float32)
    probs[0] = 1.0
    labels = np.zeros(vol.shape[1:], np.uint8)
    inside = tuple(slice(lo, hi) for lo, hi in box)
    probs[(slice(None),) + inside] = prob.float().numpy()
    labels[inside] = lab.numpy().astype(np.uint8)
    return {"labels": labels, "probabilities": probs, "box": box, "windows": net.calls}


def compare(name, ours, ref):
    dp = float(np.abs(ours["probabilities"] - ref["probabilities"]).max())
    agree = float((ours["labels"] == ref["labels"]).mean())
    hist = np.bincount(ref["labels"].ravel(), minlength=3).tolist()
    print(f"{name}: box {ref['box']}, {ref['windows']} windows (ours {ours.get('windows')}), "
          f"max |dprob| {dp:.3g}, labels agree {agree:.6f}, oracle label histogram {hist}")
    assert sum(n > 0 for n in hist) >= 2, "degenerate case: one label everywhere"
    if "box" in ours:  # Model.predict says; the CLI's files do not
        assert [tuple(b) for b in ours["box"]] == ref["box"]
        assert ours["windows"] == ref["windows"]
    assert ours["probabilities"].shape == ref["probabilities"].shape
    assert dp <= PROB_TOL
    assert np.array_equal(ours["labels"], ref["labels"])


def run_api(name, vol, card, tta, overlap=None):
    """Model.predict (overlap None: the card's) against the oracle."""
    with segmamba.Model(MODEL, threads=THREADS, card=card) as m:
        ours = m.predict(vol, spacing=(1.0, 1.0, 1.0), tta=tta, overlap=overlap,
                         outputs=("labels", "probabilities", "box", "windows"))
        ref = monai_oracle(m, vol, card, tta,
                           card.get("overlap", 0.5) if overlap is None else overlap)
    compare(name, ours, ref)
    return ref


def test_padding():
    # 20 and 25 < 32: D and W padded (by 6 + 6 and 3 + 4: the odd one
    # after), H (44) two windows.
    vol = make_volume((20, 44, 25), seed=101)
    ref = run_api("padding", vol, make_card((32, 32, 32)), tta=False)
    assert ref["windows"] == 2


def test_noncubic_patch():
    # Crop box 33x24x50 (the union of the channels' boxes): 2 x 2 x 2
    # windows of 32x16x48, each axis with its own step (16, 8, 24).
    vol = make_volume((36, 24, 52), seed=102,
                      boxes=[((1, 34), (0, 23), (0, 50)), ((2, 33), (1, 24), (1, 49))])
    ref = run_api("noncubic 32x16x48", vol, make_card((32, 16, 48)), tta=False)
    assert ref["box"] == [(1, 34), (0, 24), (0, 50)] and ref["windows"] == 8


def test_overlap_025_from_card():
    # The card's overlap 0.25 (predict's overlap=None): steps 12, 24, 12.
    vol = make_volume((40, 44, 36), seed=103)
    ref = run_api("overlap 0.25 (card)", vol, make_card((16, 32, 16), overlap=0.25),
                  tta=False)
    assert ref["windows"] == 3 * 2 * 3


def test_overlap_075_argument():
    # predict's overlap=0.75 over the card's 0.5: steps 4, 8, 4.
    vol = make_volume((28, 40, 24), seed=104)
    ref = run_api("overlap 0.75 (argument)", vol, make_card((16, 32, 16), overlap=0.5),
                  tta=False, overlap=0.75)
    assert ref["windows"] == 4 * 2 * 3


def test_tta_mirrors():
    # Crop box 30x34x29: D and W padded unevenly (1+1, 1+2), so a flip
    # moves the windows' grid; 2 windows per pass, 8 passes.
    vol = make_volume((33, 36, 31), seed=105,
                      boxes=[((2, 31), (1, 35), (0, 29)), ((1, 30), (2, 34), (1, 28))])
    ref = run_api("tta", vol, make_card((32, 32, 32)), tta=True)
    assert ref["box"] == [(1, 31), (1, 35), (0, 29)] and ref["windows"] == 8 * 2


def test_ct_card():
    # Channel a a CT-like range (about -900..1300 HU) clipped to [-200, 400],
    # then the card's mean and std; channel b zscore.
    chans = [{"name": "ct", "normalization": "ct", "clip_lo": -200, "clip_hi": 400,
              "mean": 80.5, "std": 120.25},
             {"name": "b", "normalization": "zscore"}]
    vol = make_volume((36, 28, 34), seed=106, scale=(280.0, 40.0), offset=(150.0, 200.0),
                      boxes=[((0, 35), (1, 28), (2, 34)), ((1, 35), (0, 27), (0, 33))])
    inside = vol[0][vol[0] != 0]
    below, above = float((inside < -200).mean()), float((inside > 400).mean())
    print(f"ct channel: {below:.1%} below clip_lo, {above:.1%} above clip_hi")
    assert below > 0.05 and above > 0.05  # the clip matters on both sides
    run_api("ct card", vol, make_card((32, 16, 32), channels=chans), tta=False)


def test_oblique_affine_cli(exe, tmp_path):
    """`segmamba predict` on a 4D NIfTI whose affine rotates the axes (about
    two axes) with anisotropic voxels (1.1 x 0.8 x 1.3 mm along x, y, z):
    with card spacing "input" the grid is kept (no resampling), the outputs
    carry the input's affine, and the values are the oracle's on the stored
    voxel grid (MONAI's LoadImage reads the files)."""
    card = make_card((32, 16, 32))
    vol = make_volume((30, 37, 28), seed=107)  # (D, H, W) = stored (z, y, x)
    a, b = math.radians(25), math.radians(-40)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag([1.1, 0.8, 1.3])
    affine[:3, 3] = [-20.5, 13.0, 7.25]
    src = str(tmp_path / "case.nii.gz")
    nib.save(nib.Nifti1Image(np.ascontiguousarray(vol.transpose(3, 2, 1, 0)), affine), src)
    card_path = str(tmp_path / "card.json")
    with open(card_path, "w") as f:
        json.dump(card, f)
    seg, prob = str(tmp_path / "seg.nii.gz"), str(tmp_path / "prob.nii.gz")
    run_cli(exe, "predict", "--model", MODEL, "--card", card_path, "-i", src, "-o", seg,
            "--probabilities", prob, "--no-tta", "--threads", str(THREADS), "--quiet")

    load = mt.LoadImage(image_only=True, ensure_channel_first=True)
    x = load(src)  # (C, x, y, z)
    assert np.allclose(np.asarray(x.affine), affine, atol=1e-5)
    out_seg, out_prob = load(seg), load(prob)
    assert tuple(out_seg.shape) == (1,) + tuple(x.shape[1:])
    assert tuple(out_prob.shape) == (3,) + tuple(x.shape[1:])
    assert np.array_equal(np.asarray(out_seg.affine), np.asarray(x.affine))
    # The 4D probabilities' geometry as NIfTI defines it (nibabel): MONAI's
    # loader "rectifies" a 4D header (correct_nifti_header_if_necessary takes
    # the translation column's norm for a 4th spacing, finds it differs from
    # pixdim[4] and, the qform being unset, puts the qform's affine in).
    want = nib.load(src).header
    for f in (seg, prob):
        got = nib.load(f).header
        assert got["sform_code"] == want["sform_code"] > 0
        assert np.array_equal(got.get_sform(), want.get_sform())
        assert got.get_zooms()[:3] == want.get_zooms()[:3]
    with segmamba.Model(MODEL, threads=THREADS, card=card) as m:
        stored = np.ascontiguousarray(np.asarray(x).transpose(0, 3, 2, 1), np.float32)
        assert np.array_equal(stored, vol)
        ref = monai_oracle(m, stored, card, tta=False, overlap=0.5)
    ours = {"labels": np.asarray(out_seg)[0].transpose(2, 1, 0).astype(np.uint8),
            "probabilities": np.asarray(out_prob).transpose(0, 3, 2, 1)}
    compare("oblique affine (CLI)", ours, ref)
