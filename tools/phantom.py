#!/usr/bin/python3
"""Deterministic BraTS-like phantoms for the shipped demo model.

A case is four MRI-like channels (t2w, t2f, t1n, t1c, the BraTS 2023 order)
of a skull-stripped "brain" at 1 mm, zero outside it (so the pipeline's
crop to the non-zero box matters), and a label map with BraTS's labels:
0 background, 1 NCR (necrotic core), 2 ED (oedema), 3 ET (enhancing rim),
nested as NCR inside ET inside ED.

What a case holds:
  * brain: a perturbed, egg-shaped ellipsoid (random axes, position and
    low-frequency boundary perturbation); white matter inside a grey-matter
    cortex shell, sulcal CSF at the surface, a midline fissure in the upper
    half and two lateral ventricles (CSF);
  * tumour: three nested perturbed ellipsoids at a random place in the brain,
    each with its own random orientation, axes and boundary noise: the
    oedema (possibly off-centre), the tumour core (ET rim) and the necrosis,
    which is kept at least a rim's width inside the core;
  * contrast per channel as in real MRI (relative levels, jittered per case):
      tissue  t2w   t2f   t1n   t1c
      WM      0.45  0.48  0.78  0.80
      GM      0.62  0.60  0.58  0.60
      CSF     1.00  0.12  0.22  0.22   bright on T2, suppressed on FLAIR
      ED      0.85  0.95  0.50  0.52   bright on T2 and FLAIR
      ET      0.68  0.74  0.56  1.15   bright on T1 post-contrast
      NCR     0.95  0.50  0.30  0.27   dark on T1 and T1c
    tissue boundaries are soft over about a voxel (partial volume), with a
    little texture inside each tissue;
  * a smooth multiplicative bias field per channel (shared part + own part),
    Rician noise, and a random global intensity scale per channel; values
    are rounded to integers (int16 files, like BraTS), >= 1 inside the brain.

Every random choice comes from numpy's Generator seeded with
SeedSequence([seed, index]), so a case depends on (seed, index) only, and
different seeds give disjoint streams (training, validation and the held-out
evaluation use different seeds). A 80x96x96 case takes about 0.1-0.2 s.

    /usr/bin/python3 tools/phantom.py --out DIR --cases N --seed S [--start K]

writes DIR/<id>/<id>-{t2w,t2f,t1n,t1c}.nii.gz (int16) and <id>-seg.nii.gz
(uint8), <id> = BraTS-PHT-<index:05d>-<seed:03d>. Import it for in-memory
arrays: `generate(seed, index)` returns a dict with "image" (4, D, H, W)
float32 in the stored (nz, ny, nx) voxel order, "seg" (D, H, W) uint8,
"spacing" (1, 1, 1) and "id".
"""

import argparse
import math
import os
import sys
import time

import numpy as np

CHANNELS = ("t2w", "t2f", "t1n", "t1c")
LABEL_NAMES = ("background", "NCR", "ED", "ET")
SHAPE = (80, 96, 96)  # (D, H, W) = (z, y, x) voxels at 1 mm

# Relative intensity per tissue and channel (t2w, t2f, t1n, t1c).
TISSUE = {
    "wm": (0.45, 0.48, 0.78, 0.80),
    "gm": (0.62, 0.60, 0.58, 0.60),
    "csf": (1.00, 0.12, 0.22, 0.22),
    "ed": (0.85, 0.95, 0.50, 0.52),
    "et": (0.68, 0.74, 0.56, 1.15),
    "ncr": (0.95, 0.50, 0.30, 0.27),
}


def case_rng(seed, index):
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def case_id(seed, index):
    return f"BraTS-PHT-{int(index):05d}-{int(seed):03d}"


def _basis(n, k):
    """(n, k) Gaussian bumps spread evenly over an axis of n voxels (a little
    beyond both ends), width = their spacing: a smooth interpolation basis."""
    centres = np.linspace(-0.15 * n, 1.15 * n, k)
    s = centres[1] - centres[0]
    x = np.arange(n, dtype=np.float64) + 0.5
    return np.exp(-0.5 * ((x[:, None] - centres[None, :]) / s) ** 2).astype(np.float32)


def smooth_fields(rng, shape, count, k):
    """`count` smooth random fields over `shape`, each about zero-mean, unit-std:
    random coefficients on a k[0] x k[1] x k[2] grid of Gaussian bumps, evaluated
    separably (three small matrix products). Larger k = finer detail."""
    D, H, W = shape
    coef = rng.standard_normal((count, *k)).astype(np.float32)
    m0, m1, m2 = _basis(D, k[0]), _basis(H, k[1]), _basis(W, k[2])
    t = coef @ m2.T                       # (f, k0, k1, W)
    t = np.swapaxes(t, 2, 3) @ m1.T       # (f, k0, W, H)
    t = np.moveaxis(t, 1, 3) @ m0.T       # (f, W, H, D)
    f = np.ascontiguousarray(t.transpose(0, 3, 2, 1))  # (f, D, H, W)
    f -= f.mean(axis=(1, 2, 3), keepdims=True)
    f /= f.std(axis=(1, 2, 3), keepdims=True) + 1e-6
    return f


def _sigmoid(v):
    return 0.5 + 0.5 * np.tanh(0.5 * v)


def _rotation(rng):
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))[None, :]


def _ellipsoid_distance(grid, centre, radii_scale, rot):
    """|R^T (p - c) / scale|: a distance in mm under a rotated, anisotropic metric."""
    z, y, x = grid
    dz, dy, dx = z - centre[0], y - centre[1], x - centre[2]
    acc = None
    for i in range(3):
        qi = (rot[0, i] * dz + rot[1, i] * dy + rot[2, i] * dx) / radii_scale[i]
        acc = qi * qi if acc is None else acc + qi * qi
    return np.sqrt(acc)


def generate(seed, index, shape=SHAPE):
    """One phantom: dict(image (4, D, H, W) float32, seg (D, H, W) uint8,
    spacing (1, 1, 1), id, info)."""
    rng = case_rng(seed, index)
    D, H, W = shape
    f32 = np.float32
    grid = (np.arange(D, dtype=f32)[:, None, None], np.arange(H, dtype=f32)[None, :, None],
            np.arange(W, dtype=f32)[None, None, :])
    size = (D + H + W) / (80 + 96 + 96)  # 1 for the default shape

    low = smooth_fields(rng, shape, 6, (4, 4, 4))     # brain outline, bias (shared + 4)
    mid = smooth_fields(rng, shape, 4, (9, 10, 10))   # cortex, ED, core, NCR outlines
    high = smooth_fields(rng, shape, 2, (18, 21, 21))  # texture: brain, tumour

    # ---- brain ------------------------------------------------------------
    centre = np.array(shape, np.float64) / 2 + rng.uniform(-3, 3, 3) * size
    axes = np.array([D * rng.uniform(0.36, 0.40), H * rng.uniform(0.39, 0.43),
                     W * rng.uniform(0.33, 0.38)])
    z, y, x = grid
    yn = (y - centre[1]) / axes[1]
    egg = 1 + 0.1 * yn  # wider at the back (high H) than at the front
    rho = np.sqrt(((z - centre[0]) / (axes[0] * egg)) ** 2 + yn ** 2
                  + ((x - centre[2]) / (axes[2] * egg)) ** 2)
    rb = rho * (1 + 0.04 * low[0])
    brain = rb < 1.0
    gm = _sigmoid((rb - (0.80 + 0.04 * mid[0])) / 0.02)
    csf = _sigmoid((rb - 0.965) / 0.008)
    # interhemispheric fissure: a CSF sheet on the midline, in the upper part
    mid_x = centre[2] + 1.5 * low[0, :, :, :1]
    upper = _sigmoid(((z - centre[0]) / axes[0] - 0.2) / 0.05)
    csf = np.maximum(csf, _sigmoid((1.0 - np.abs(x - mid_x)) / 0.3) * upper)
    for side in (-1.0, 1.0):  # lateral ventricles
        vc = (centre[0] + rng.uniform(-0.15, 0.05) * axes[0], centre[1] + rng.uniform(-0.1, 0.1) * axes[1],
              centre[2] + side * rng.uniform(0.12, 0.2) * axes[2])
        va = (rng.uniform(0.22, 0.3) * axes[0], rng.uniform(0.3, 0.42) * axes[1],
              rng.uniform(0.07, 0.12) * axes[2])
        rv = np.sqrt(((z - vc[0]) / va[0]) ** 2 + ((y - vc[1]) / va[1]) ** 2 + ((x - vc[2]) / va[2]) ** 2)
        csf = np.maximum(csf, _sigmoid((1.0 - rv) * min(va) / 0.5))

    # ---- tumour -----------------------------------------------------------
    while True:  # a centre well inside the brain
        v = rng.uniform(-1, 1, 3)
        if v @ v <= 1:
            break
    tc = centre + 0.55 * v * axes
    r_ed = rng.uniform(12, 24) * size
    r_core = r_ed * rng.uniform(0.42, 0.7)
    r_ncr = r_core * rng.uniform(0.45, 0.8)
    rim = max(1.5, 0.15 * r_core)

    def aniso():
        a = rng.uniform(0.75, 1.3, 3)
        return a / np.cbrt(a.prod())

    d_core = _ellipsoid_distance(grid, tc, aniso(), _rotation(rng))
    ed_centre = tc + rng.uniform(-0.25, 0.25, 3) * r_ed
    d_ed = _ellipsoid_distance(grid, ed_centre, aniso(), _rotation(rng))
    d_ncr = _ellipsoid_distance(grid, tc + rng.uniform(-0.15, 0.15, 3) * r_core, aniso(), _rotation(rng))
    d_ed *= 1 + rng.uniform(0.15, 0.3) * mid[1]
    d_core *= 1 + rng.uniform(0.08, 0.16) * mid[2]
    d_ncr *= 1 + rng.uniform(0.1, 0.2) * mid[3]
    w = 0.35  # mm: edge softness (partial volume)
    m_core = _sigmoid((r_core - d_core) / w)
    m_ed = np.maximum(_sigmoid((r_ed - d_ed) / w), m_core)
    m_ncr = np.minimum(_sigmoid((r_ncr - d_ncr) / w), _sigmoid((r_core - rim - d_core) / w))

    seg = np.zeros(shape, np.uint8)
    seg[(m_ed > 0.5) & brain] = 2
    seg[(m_core > 0.5) & brain] = 3
    seg[(m_ncr > 0.5) & brain] = 1

    # ---- intensities --------------------------------------------------------
    tissue = {k: np.array(v) * rng.uniform(0.92, 1.08, 4) for k, v in TISSUE.items()}
    tex_b = 1 + 0.03 * high[0]
    tex_t = 1 + 0.06 * high[1]
    bias_amp = rng.uniform(0.06, 0.2)
    noise = rng.uniform(0.015, 0.035)
    scale = rng.uniform(200, 2500, 4)
    image = np.zeros((4, *shape), f32)
    for c in range(4):
        t = tissue["wm"][c] + (tissue["gm"][c] - tissue["wm"][c]) * gm
        t += (tissue["csf"][c] - t) * csf
        t *= tex_b
        t += (tissue["ed"][c] - t) * m_ed
        t += (tissue["et"][c] * tex_t - t) * m_core
        t += (tissue["ncr"][c] * tex_t - t) * m_ncr
        t *= np.exp(bias_amp * (0.7 * low[1] + 0.5 * low[2 + c]))
        n1 = rng.standard_normal(shape, dtype=f32)
        n2 = rng.standard_normal(shape, dtype=f32)
        t = np.sqrt((t + noise * n1) ** 2 + (noise * n2) ** 2)  # Rician
        t = np.maximum(np.rint(t * scale[c]), 1.0)
        image[c] = np.where(brain, t, 0.0)
    counts = np.bincount(seg.ravel(), minlength=4)
    info = dict(seed=int(seed), index=int(index), tumour_centre=[round(float(v), 1) for v in tc],
                radii_mm=[round(r_ed, 1), round(r_core, 1), round(r_ncr, 1)],
                voxels={n: int(counts[i]) for i, n in enumerate(LABEL_NAMES)})
    return dict(image=image, seg=seg, spacing=(1.0, 1.0, 1.0), id=case_id(seed, index), info=info)


def affine_for(shape, spacing=(1.0, 1.0, 1.0)):
    """A BraTS-like (LPS data seen as RAS by nibabel) affine: x and y flipped,
    centred on the volume. nibabel's axes are (x, y, z) = (W, H, D)."""
    D, H, W = shape
    sz, sy, sx = spacing
    a = np.diag([-sx, -sy, sz, 1.0])
    a[:3, 3] = [sx * (W - 1) / 2, sy * (H - 1) / 2, -sz * (D - 1) / 2]
    return a


def save_volume(path, vol, dtype, spacing=(1.0, 1.0, 1.0)):
    """vol (D, H, W) in the stored voxel order (nz, ny, nx); nibabel indexes (x, y, z)."""
    import nibabel as nib

    arr = np.ascontiguousarray(vol.transpose(2, 1, 0)).astype(dtype)
    img = nib.Nifti1Image(arr, affine_for(vol.shape, spacing))
    img.header.set_data_dtype(dtype)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_slope_inter(1.0, 0.0)
    nib.save(img, path)


def load_volume(path):
    """A NIfTI file as (D, H, W) float32 in the stored voxel order, and its spacing (z, y, x)."""
    import nibabel as nib

    img = nib.load(path)
    a = np.asarray(img.dataobj, dtype=np.float32).transpose(2, 1, 0)
    zooms = img.header.get_zooms()[:3]
    return np.ascontiguousarray(a), (float(zooms[2]), float(zooms[1]), float(zooms[0]))


def case_paths(out_dir, cid):
    d = os.path.join(out_dir, cid)
    return dict(dir=d, channels=[os.path.join(d, f"{cid}-{ch}.nii.gz") for ch in CHANNELS],
                seg=os.path.join(d, f"{cid}-seg.nii.gz"))


def write_case(out_dir, case, float32=False):
    """Writes one generated case in the BraTS layout; returns its paths."""
    p = case_paths(out_dir, case["id"])
    os.makedirs(p["dir"], exist_ok=True)
    for c, path in enumerate(p["channels"]):
        save_volume(path, case["image"][c], np.float32 if float32 else np.int16, case["spacing"])
    save_volume(p["seg"], case["seg"], np.uint8, case["spacing"])
    return p


def main(argv=None):
    ap = argparse.ArgumentParser(description="Deterministic BraTS-like phantoms as NIfTI (BraTS layout).")
    ap.add_argument("--out", required=True, help="output directory (one sub-directory per case)")
    ap.add_argument("--cases", type=int, default=1, help="number of cases (default 1)")
    ap.add_argument("--seed", type=int, default=2024, help="seed (default 2024)")
    ap.add_argument("--start", type=int, default=0, help="first case index (default 0)")
    ap.add_argument("--shape", type=int, nargs=3, default=list(SHAPE), metavar=("D", "H", "W"),
                    help="volume (D, H, W) = (z, y, x) in voxels (default 80 96 96)")
    ap.add_argument("--float32", action="store_true", help="float32 image files instead of int16")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.cases < 0 or args.start < 0 or min(args.shape) < 16:
        ap.error("--cases and --start must be >= 0 and each side >= 16")
    for i in range(args.start, args.start + args.cases):
        t0 = time.perf_counter()
        case = generate(args.seed, i, tuple(args.shape))
        p = write_case(args.out, case, args.float32)
        if not args.quiet:
            v = case["info"]["voxels"]
            print(f"{case['id']}: {p['dir']}  NCR {v['NCR']}  ED {v['ED']}  ET {v['ET']} voxels  "
                  f"({time.perf_counter() - t0:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
