"""Independent Python reference of the official inference pipeline (spec section 4).

Written from the spec and the behaviour of the code the official SegMamba
prediction runs (nnU-Net-style preprocessing, MONAI's sliding window,
light_training's mirror averaging); nothing here is shared with the C engine.

    predict(model, image, spacing, card, tta=True, overlap=None)
        -> dict(labels, probabilities, uncertainty, regions, box, masks, margins)

image: float32 (C, D, H, W); spacing: mm along (D, H, W); card: the model
card as a dict (the JSON form of src/clinical/card.h: argmax, regions with
the card's "regions" table (BraTS by default), sigmoid with "threshold", any
patch, "overlap", "spacing": "input"); model: a callable taking a
torch tensor (1, C, d, h, w) and returning logits (1, K, d, h, w), or a list
of them, an ensemble: each model's sliding window and mirror average over
the whole case, then the mean of the models' logits (nnU-Net v2's
predict_logits_from_preprocessed_data: summed over the folds, divided by
their number), then everything else as for one model.

When MONAI is importable, its sliding_window_inference is the sliding
window; otherwise `sliding_window` below, which follows MONAI's documented
behaviour (pad short axes symmetrically, windows at min(i*step, n-roi),
compute_importance_map's Gaussian, weighted sum over summed weights).
"""

import math

import numpy as np
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F

try:  # pragma: no cover - depends on the machine
    from monai.inferers import sliding_window_inference as monai_swi
except Exception:  # noqa: BLE001 - any import failure means "not usable"
    monai_swi = None


def nonzero_box(image):
    """nnU-Net's crop: union of x != 0 over channels, holes filled, its bounding box."""
    mask = np.any(image != 0, axis=0)
    mask = ndi.binary_fill_holes(mask)
    if not mask.any():
        return None
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.where(mask.any(axis=other))[0]
        box.append((int(hit[0]), int(hit[-1]) + 1))
    return box


def normalize(x, chan):
    x = x.astype(np.float32)
    if chan.get("normalization", "zscore") == "ct":
        x = np.clip(x, chan["clip_lo"], chan["clip_hi"])
        mean, std = chan["mean"], chan["std"]
    else:
        mean, std = float(x.astype(np.float64).mean()), float(x.astype(np.float64).std())
    return ((x - mean) / max(std, 1e-8)).astype(np.float32)


def new_shape(shape, spacing, target):
    # nnU-Net's compute_new_shape: int(round(old_spacing / new_spacing * old_shape))
    return [int(round(s / t * n)) for n, s, t in zip(shape, spacing, target)]


def resize_cubic(x, shape):
    """skimage.transform.resize(order=3, mode="edge", anti_aliasing=False), which
    is scipy's zoom with grid_mode=True and mode "nearest", clipped to the input range."""
    x64 = x.astype(np.float64)
    zoom = [o / i for o, i in zip(shape, x.shape)]
    out = ndi.zoom(x64, zoom, order=3, mode="nearest", grid_mode=True)
    assert list(out.shape) == list(shape), (out.shape, shape)
    return np.clip(out, x64.min(), x64.max()).astype(np.float32)


def gaussian_map(roi):
    """MONAI compute_importance_map(mode="gaussian", sigma_scale=0.125)."""
    m = None
    for n in roi:
        i = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        g = np.exp(-(i ** 2) / (2 * (0.125 * n) ** 2))
        m = g if m is None else np.multiply.outer(m, g)
    m = m.astype(np.float32)
    return np.maximum(m, max(float(m.min()), 1e-3))


def sliding_window(x, roi, model, overlap=0.5):
    """x: torch (1, C, *spatial). Returns (1, K, *spatial) logits."""
    spatial = list(x.shape[2:])
    pads = []
    for n, r in zip(spatial, roi):
        d = max(r - n, 0)
        pads.append((d // 2, d - d // 2))
    # F.pad takes the last axis first
    xp = F.pad(x, [p for lohi in reversed(pads) for p in lohi])
    padded = list(xp.shape[2:])
    starts = []
    for n, r in zip(padded, roi):
        step = max(int(r * (1 - overlap)), 1)
        count = math.ceil((n - r) / step) + 1 if n > r else 1
        starts.append([min(i * step, n - r) for i in range(count)])
    w = torch.from_numpy(gaussian_map(roi))
    acc = None
    wsum = torch.zeros(padded)
    for z in starts[0]:
        for y in starts[1]:
            for q in starts[2]:
                sl = (slice(z, z + roi[0]), slice(y, y + roi[1]), slice(q, q + roi[2]))
                out = model(xp[(slice(None), slice(None)) + sl])
                if acc is None:
                    acc = torch.zeros((1, out.shape[1], *padded))
                acc[(slice(None), slice(None)) + sl] += w * out
                wsum[sl] += w
    acc = acc / wsum
    cut = tuple(slice(lo, lo + n) for (lo, _), n in zip(pads, spatial))
    return acc[(slice(None), slice(None)) + cut]


def window_infer(x, roi, model, overlap=0.5):
    if monai_swi is not None:
        return monai_swi(x, roi, 1, model, overlap=overlap, mode="gaussian", sigma_scale=0.125)
    return sliding_window(x, roi, model, overlap)


# The BraTS regions table (outputs TC, WT, ET): rows in order, a later one
# overwriting: ET -> 3, else TC -> 1, else WT -> 2.
BRATS_REGIONS = [{"name": "WT", "channel": 1, "label": 2}, {"name": "TC", "channel": 0, "label": 1},
                 {"name": "ET", "channel": 2, "label": 3}]


def region_table(card, k):
    """The (channel, label) rows that make the label map of a regions or sigmoid card."""
    out = card.get("output", "argmax")
    if "regions" in card:
        return [(r["channel"], r["label"]) for r in card["regions"]]
    if out == "regions":
        return [(r["channel"], r["label"]) for r in BRATS_REGIONS]
    # sigmoid: "last_wins", one channel, or masks (whose label map is last-wins too)
    return [(c, c + 1) for c in range(k)]


# light_training Predictor.maybe_mirror_and_predict: this order, summed, / 8.
MIRRORS = [(), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]


@torch.no_grad()
def predict(model, image, spacing, card, tta=True, overlap=None):
    c, d, h, w = image.shape
    chans = card["channels"]
    roi = card["patch"]
    target = card.get("spacing", [1.0, 1.0, 1.0])
    if target == "input":  # the input's own spacing: no resampling
        target = list(spacing)
    regions_card = card.get("output", "argmax") in ("regions", "sigmoid")
    overlap = card.get("overlap", 0.5) if overlap is None else overlap
    box = nonzero_box(image)
    if box is None:
        return None
    crop = image[(slice(None),) + tuple(slice(lo, hi) for lo, hi in box)]
    x = np.stack([normalize(crop[i], chans[i]) for i in range(c)])
    cshape = list(x.shape[1:])
    rshape = new_shape(cshape, spacing, target)
    if rshape != cshape:
        x = np.stack([resize_cubic(x[i], rshape) for i in range(c)])
    xt = torch.from_numpy(np.ascontiguousarray(x))[None]
    mirrors = MIRRORS if tta else MIRRORS[:1]
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    total = None
    for net in models:
        logits = None
        for axes in mirrors:
            xi = torch.flip(xt, axes) if axes else xt
            out = window_infer(xi, roi, net, overlap)
            out = torch.flip(out, axes) if axes else out
            logits = out if logits is None else logits + out
        logits = logits / len(mirrors)
        total = logits if total is None else total + logits
    logits = total / len(models)
    if rshape != cshape:
        # light_training Predictor.predict_raw_probability
        logits = F.interpolate(logits, size=cshape, mode="trilinear")
    logits = logits[0].numpy().astype(np.float64)

    k = logits.shape[0]
    masks = None
    if regions_card:
        prob = 1 / (1 + np.exp(-logits))
        t = card.get("threshold", 0.5)
        on = logits > math.log(t / (1 - t))  # sigmoid(l) > t
        masks = on.astype(np.uint8)
        # how far the closest channel is from its threshold
        margin = np.abs(prob - t).min(axis=0)
        lab = np.zeros(on.shape[1:], np.int64)
        for ch, label in region_table(card, k):  # in order, later rows overwrite
            lab[on[ch]] = label
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = -(prob * np.log(prob) + (1 - prob) * np.log(1 - prob))
        ent = np.nan_to_num(ent).mean(axis=0)
    else:
        e = np.exp(logits - logits.max(axis=0, keepdims=True))
        prob = e / e.sum(axis=0, keepdims=True)
        lab = logits.argmax(axis=0)
        top = np.sort(prob, axis=0)
        margin = top[-1] - top[-2] if k > 1 else np.ones(prob.shape[1:])  # best - second
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = -np.nansum(np.where(prob > 0, prob * np.log(prob), 0.0), axis=0)

    labels = np.zeros((d, h, w), np.uint8)
    probs = np.zeros((k, d, h, w), np.float32)
    if not regions_card:
        probs[0] = 1.0
    unc = np.zeros((d, h, w), np.float32)
    sl = tuple(slice(lo, hi) for lo, hi in box)
    labels[sl] = lab
    probs[(slice(None),) + sl] = prob
    unc[sl] = ent
    # the decision's distance from a tie, in probability: outside the box
    # (background without a window) nothing is close to one
    margins = np.ones((d, h, w), np.float64)
    margins[sl] = margin
    regions = np.stack([(labels == 1) | (labels == 3), (labels >= 1) & (labels <= 3), labels == 3])
    full_masks = None
    if masks is not None:
        full_masks = np.zeros((k, d, h, w), np.uint8)
        full_masks[(slice(None),) + sl] = masks
    return dict(labels=labels, probabilities=probs, uncertainty=unc,
                regions=regions.astype(np.uint8), box=box, masks=full_masks, margins=margins)
