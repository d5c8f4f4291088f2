"""A Model as the predictor of MONAI's sliding_window_inference (Gaussian
mode, overlap 0.5) against the engine's own predict without TTA, on a
volume larger than one window: probabilities within 1e-5, labels equal."""
import os

import numpy as np
import pytest

import segmamba
from conftest import FIXTURE, THREADS

torch = pytest.importorskip("torch")
monai_inferers = pytest.importorskip("monai.inferers")

PATCH = [32, 32, 32]


def test_sliding_window_inference(tmp_path):
    # The tiny fixture with a card that makes predict's pre-processing the
    # identity but for the z-score: no resampling ("input" spacing), a volume
    # with no zero voxel (no crop).
    card = {"channels": [{"name": "a", "normalization": "zscore"},
                         {"name": "b", "normalization": "zscore"}],
            "spacing": "input", "patch": PATCH, "nslices": [16, 8, 4, 2],
            "labels": ["background", "x", "y"], "output": "argmax"}
    rng = np.random.default_rng(17)
    shape = (2, 48, 56, 40)  # larger than one 32^3 window on every axis
    z, y, x = np.meshgrid(*[np.linspace(0, 1, n) for n in shape[1:]], indexing="ij")
    vol = np.stack([100 + 30 * np.sin(6 * z + 4 * y) + rng.normal(0, 5, shape[1:]),
                    50 + 20 * np.cos(5 * x - 3 * z) + rng.normal(0, 5, shape[1:])])
    vol = vol.astype(np.float32)
    assert (vol != 0).all()
    with segmamba.Model(os.path.join(FIXTURE, "model.safetensors"), threads=THREADS,
                        card=card) as m:
        ours = m.predict(vol, spacing=(1.0, 1.0, 1.0), tta=False, overlap=0.5,
                         outputs=("labels", "probabilities", "windows"))
        # predict's z-score (sm_normalize: the volume's mean and population std, in double)
        mean = vol.astype(np.float64).mean(axis=(1, 2, 3), keepdims=True)
        std = vol.astype(np.float64).std(axis=(1, 2, 3), keepdims=True)
        normed = ((vol - mean) / np.maximum(std, 1e-8)).astype(np.float32)
        with torch.no_grad():
            logits = monai_inferers.sliding_window_inference(
                torch.from_numpy(normed)[None], roi_size=PATCH, sw_batch_size=1, predictor=m,
                overlap=0.5, mode="gaussian")
        prob = torch.softmax(logits[0].double(), 0).float().numpy()
    diff = float(np.abs(prob - ours["probabilities"]).max())
    agree = float((prob.argmax(0) == ours["labels"]).mean())
    hist = np.bincount(ours["labels"].ravel(), minlength=3).tolist()
    print(f"{ours['windows']} windows, max |dprob| {diff:.3g}, labels agree {agree:.6f}, "
          f"label histogram {hist}")
    assert ours["windows"] > 1 and min(hist) > 0
    assert diff <= 1e-5
    assert np.array_equal(prob.argmax(0), ours["labels"])
