"""SegMamba inference on the CPU, in process: the segmamba engine (libsegmamba)
from Python, NumPy arrays in and out.

    import numpy as np, segmamba
    with segmamba.Model("model.safetensors", threads=4) as m:
        logits = m.forward(np.zeros((4, 128, 128, 128), np.float32))   # (K, 128, 128, 128)
        img = segmamba.read_nifti("case-0000.nii.gz")                  # geometry kept
        out = m.predict(img, outputs=("labels", "probabilities"))
        segmamba.write_nifti("seg.nii.gz", out["labels"], like=img)

A thin layer over the engine's C API (include/segmamba.h and
include/segmamba_pipeline.h): the same checkpoints, model cards, pipeline and
messages as the `segmamba` command. Every failure the engine reports is a
segmamba.Error whose .status is the status name ("E_SHAPE", ...) and whose
.code is the number the CLI exits with. The GIL is released while the
network runs, so threads run models side by side (one model per thread for
parallel forwards; several threads on one model take turns). Ctrl-C during
predict() cancels it and raises KeyboardInterrupt.
"""

import json
import os

import numpy as np

from . import _segmamba
from ._segmamba import Error

__all__ = ["Error", "Image", "Model", "build_info", "metrics", "read_nifti", "write_nifti",
           "set_threads", "get_threads", "__version__"]

__version__ = _segmamba.build_info()["version"]

# --conv names, as the CLI takes them: (segmamba_conv_backend, Winograd tile).
_CONV = {"auto": (0, 0), "onednn": (1, 0), "blas": (2, 0), "ref": (3, 0), "winograd": (4, 0),
         "winograd2": (4, 2), "winograd3": (4, 3), "winograd4": (4, 4)}
_OUTPUTS = ("labels", "probabilities", "regions", "masks", "uncertainty", "box", "windows")


def _error(status, code, message):
    e = Error(message)
    e.status, e.code = status, code
    return e


def _arg_error(message):
    return _error("E_ARG", 1, message)


def build_info():
    """How the engine was built: version, onednn, openmp, cuda ("not built",
    "built", "emulated"), isa (the kernel level in use), cuda_device (a GPU
    the CUDA backend can use) and cuda_info (which, or why not)."""
    return _segmamba.build_info()


def set_threads(n):
    """Threads for every later call, process-wide (0: all cores); returns the
    count now in use."""
    return _segmamba.set_threads(int(n))


def get_threads():
    """The thread count the engine's parallel work uses now."""
    return _segmamba.get_threads()


def _float32_c(x, what):
    """x as a C-contiguous float32 array: x itself when it already is one
    (read-only and memory-mapped arrays included: no copy), else one
    conversion."""
    try:
        view = memoryview(x)
        if view.format in ("f", "<f", "=f") and view.c_contiguous:
            return x
    except TypeError:
        pass
    try:
        a = np.asarray(x)
    except Exception as e:  # noqa: BLE001 - whatever the object raised, said once
        raise _arg_error(f"{what}: cannot be read as an array ({e})") from None
    if a.dtype.kind not in "biuf":
        raise _arg_error(f"{what}: dtype {a.dtype} cannot be converted to float32")
    return np.ascontiguousarray(a, dtype=np.float32)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


class Image:
    """A NIfTI volume as read_nifti returns it: .array, float32 (C, D, H, W)
    in the file's stored voxel order (C = 1 for a 3D file; the memory is the
    engine's, not copied), .spacing (mm along D, H, W), .affine (4x4, voxel
    (i, j, k) = (W, H, D) to world mm) and the file's header, which
    write_nifti(..., like=image) reuses; .paths, the files it came from.
    np.asarray(image) is .array."""

    def __init__(self, raw, paths):
        self._raw = raw
        self.paths = paths
        self.array = np.asarray(raw)
        g = raw.geometry
        self.spacing = tuple(g["spacing"])
        self.affine = np.array(g["affine"])

    @property
    def shape(self):
        return self.array.shape

    def __array__(self, dtype=None, copy=None):
        return self.array if dtype is None else self.array.astype(dtype)

    def __repr__(self):
        return f"Image(shape={self.array.shape}, spacing={self.spacing})"


def read_nifti(path):
    """Reads a NIfTI-1/2 file (.nii or .nii.gz; any scalar type, scaling
    applied; a 4D file's 4th axis as channels) into an Image; given a list
    of 3D files, one channel each (BraTS's t2w, t2f, t1n, t1c), which must
    share dims and affine (the error names both files and what differs)."""
    paths = [os.fspath(path)] if isinstance(path, (str, bytes, os.PathLike)) else \
        [os.fspath(p) for p in path]
    return Image(_segmamba.read_nifti(paths), paths)


def write_nifti(path, array, like=None, affine=None, spacing=None):
    """Writes array, (D, H, W) or (C, D, H, W), as NIfTI (gzip when path ends
    in .gz; atomically: nothing is left behind on failure). uint8, bool and
    integer arrays (values 0..255) are written as uint8, floats as float32.
    The geometry comes from like (an Image, or the path of a NIfTI file:
    its sform, qform, pixdim and codes are kept, and the grid must match),
    else from affine (4x4), else from spacing (mm along D, H, W; identity
    directions), else 1 mm."""
    a = np.asarray(array)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise _error("E_SHAPE", 6, f"array: expected (D, H, W) or (C, D, H, W), got shape {a.shape}")
    if a.dtype.kind == "f":
        a, is_float = np.ascontiguousarray(a, dtype=np.float32), True
    elif a.dtype.kind in "biu":
        if a.size and (a.min() < 0 or a.max() > 255):
            raise _arg_error(f"array: integer values must be 0..255 to be written as uint8, "
                             f"got {a.min()}..{a.max()}")
        a, is_float = np.ascontiguousarray(a, dtype=np.uint8), False
    else:
        raise _arg_error(f"array: dtype {a.dtype} cannot be written as NIfTI")
    if like is not None and not isinstance(like, Image):
        like = read_nifti(like)
    if like is None:
        if affine is None:
            sp = (1.0, 1.0, 1.0) if spacing is None else tuple(float(s) for s in spacing)
            affine = np.diag([sp[2], sp[1], sp[0], 1.0])
        affine = tuple(tuple(float(v) for v in row) for row in np.asarray(affine, float))
    _segmamba.write_nifti(os.fspath(path), a, is_float, like._raw if like else None, affine)


def metrics(pred, ref, spacing, regions="brats", empty_both_one=False):
    """Dice and HD95 (mm, medpy's definition) of two (D, H, W) label maps
    per region, as `segmamba metrics` computes them: {name: {"dice", "hd95",
    "n_pred", "n_ref"}}. regions: "brats" (TC = {1, 3}, WT = {1, 2, 3}, ET =
    {3}), a list of labels (one region each), or {name: [labels]}. A region
    empty in either map scores Dice 0 and HD95 50 (the official rule); with
    empty_both_one, one empty in both scores 1 and 0."""
    def labels(x, what):
        a = np.asarray(x)
        if a.ndim == 4 and a.shape[0] == 1:
            a = a[0]
        if a.dtype.kind == "f":
            r = np.rint(a)
            if a.size and np.abs(a - r).max() > 1e-3:
                raise _arg_error(f"{what}: not a label map (non-integer values)")
            a = r
        if a.size and (a.min() < 0 or a.max() > 255):
            raise _arg_error(f"{what}: labels must be 0..255")
        return np.ascontiguousarray(a, dtype=np.uint8)

    if isinstance(regions, str):
        if regions != "brats":
            raise _arg_error(f"regions: 'brats', a list of labels or a dict, not '{regions}'")
        table = None
    elif isinstance(regions, dict):
        table = [(str(k), [int(v) for v in np.atleast_1d(vs)]) for k, vs in regions.items()]
    else:
        table = [(str(int(l)), [int(l)]) for l in regions]
    sp = tuple(float(s) for s in spacing)
    return _segmamba.metrics(labels(pred, "pred"), labels(ref, "ref"), sp, table,
                             bool(empty_both_one))


class Model:
    """A SegMamba checkpoint (.pt or .safetensors) opened by the engine.

    Model(path, threads=None, conv="auto", nslices=None, fue=None,
          precision="fp32", backend="cpu", card=None)

    threads: the engine's threads for this model's calls (applied
        process-wide at each call, as segmamba_set_threads; None leaves the
        setting alone: all cores by default).
    conv: auto, winograd, winograd2, winograd3, winograd4, onednn, blas or ref
        (docs/convolution-backends.md).
    nslices: four inter-slice scan lengths (default: the card's, else
        64, 32, 16, 8 for 128^3 windows).
    fue: True or False forces feature-level uncertainty estimation; None:
        as the card says.
    precision: fp32, bf16 (oneDNN convolutions on CPUs with AVX512_BF16;
        elsewhere fp32, and config["precision"] says so) or tf32 (CUDA GEMMs).
    backend: cpu, or cuda (an engine built with CUDA, on a GPU).
    card: the model card for predict(): a path to a card JSON file or a
        dict (docs/model-cards.md); None: the checkpoint's (its metadata or
        a MODEL.card.json next to it), else the BraTS defaults (a model that
        does not take 4 channels: the generic card), as `segmamba predict`.

    Use as a context manager, or call close(); the memory is also freed
    when the object goes.
    """

    def __init__(self, path, threads=None, conv="auto", nslices=None, fue=None,
                 precision="fp32", backend="cpu", card=None):
        if conv not in _CONV:
            raise _arg_error(f"conv: one of {', '.join(_CONV)}, not {conv!r}")
        if precision not in ("fp32", "bf16", "tf32"):
            raise _arg_error(f"precision: fp32, bf16 or tf32, not {precision!r}")
        if backend not in ("cpu", "cuda"):
            raise _arg_error(f"backend: cpu or cuda, not {backend!r}")
        if threads is not None and (int(threads) < 1):
            raise _arg_error(f"threads: a positive number, not {threads!r}")
        if nslices is not None:
            nslices = tuple(int(v) for v in nslices)
            if len(nslices) != 4 or min(nslices) < 1:
                raise _arg_error(f"nslices: four positive integers, not {nslices!r}")
        card_path = card_json = None
        if isinstance(card, dict):
            card_json = json.dumps(card)
        elif card is not None:
            card_path = os.fspath(card)
        self.path = os.fspath(path)
        self._m = _segmamba._Model(
            self.path, _CONV[conv][0], _CONV[conv][1], nslices,
            0 if fue is None else 1 if fue else 2, precision == "bf16", precision == "tf32",
            1 if backend == "cuda" else 0, card_path, card_json, int(threads or 0))
        self._config = self._m.config()
        self._card = json.loads(self._m.card_json())

    # ---- what the model is

    @property
    def config(self):
        """The configuration read from the weights: family, mamba_type,
        in_channels, out_channels, depths, features, hidden_size, d_state,
        d_conv, expand, dt_rank, nslices, fue, parameters, backend,
        precision, arena_bytes (the activations' arena of the largest input so
        far), weight_bytes (the weights held, every copy and layout the
        backends keep), ignored (checkpoint tensors inference does not use) and
        card (the model card, as the dict `card` gives)."""
        c = self._m.config()
        return {"family": c["family"], "mamba_type": c["mamba_type"],
                "in_channels": c["in_chans"], "out_channels": c["out_chans"],
                "depths": c["depths"], "features": c["feat_size"],
                "hidden_size": c["hidden_size"], "d_state": c["d_state"], "d_conv": c["d_conv"],
                "expand": c["expand"], "dt_rank": c["dt_rank"], "nslices": c["nslices"],
                "fue": c["fue"], "parameters": c["parameters"], "backend": c["backend"],
                "precision": c["precision"], "arena_bytes": c["arena_bytes"],
                "weight_bytes": c["weight_bytes"], "ignored": c["ignored"], "card": self.card}

    @property
    def card(self):
        """The model card predict() follows, as a dict (the JSON of
        docs/model-cards.md), with "origin" saying where it came from and
        "generic" whether it is the generic card of a card-less model."""
        return dict(self._card, origin=self._m.card_origin(),
                    generic=self._config["generic_card"])

    @property
    def profile(self):
        """Where the last forward's time went (summed over a batch or a
        predict's windows... of the last network call): seconds, of which
        seconds_conv (seconds_conv3x3x3 of it), seconds_scan, seconds_norm,
        seconds_other; flops (a multiply-add counts 2)."""
        return self._m.profile()

    def layers(self):
        """Every layer (graph node) in run order with its time in the last
        forward: op, backend, kernel, conv3x3x3, level, in/out_channels,
        seconds."""
        return self._m.layers()

    # ---- running it

    def forward(self, x, out=None):
        """Logits of x, float32 (C, D, H, W) or (N, C, D, H, W) with C the
        model's input channels and D, H, W multiples of 16 (and, with the
        v3 Mamba, stage token counts divisible by nslices): (K, D, H, W) or
        (N, K, D, H, W). A C-contiguous float32 x (read-only and
        memory-mapped arrays too) is read in place; anything else is
        converted once. out: a C-contiguous float32 array of the logits'
        shape to write into. The GIL is released while the network runs."""
        a = _float32_c(x, "input")
        shape = memoryview(a).shape
        if out is None:
            c = self._config
            if len(shape) in (4, 5) and shape[-4] == c["in_chans"]:
                out = np.empty(shape[:-4] + (c["out_chans"],) + shape[-3:], np.float32)
            else:
                out = np.empty(0, np.float32)  # the engine refuses the shape first
        self._m.forward(a, out)
        return out

    def __call__(self, x):
        """forward() for a torch tensor or an array (N, C, D, H, W) or (C, D,
        H, W): a tensor gives a float32 tensor on x's device (computed on
        the CPU), so a Model can be the predictor of MONAI's
        sliding_window_inference; an array gives an array."""
        torch = _torch()
        if torch is not None and isinstance(x, torch.Tensor):
            t = x.detach()
            y = self.forward(t.to("cpu", torch.float32).contiguous().numpy())
            return torch.from_numpy(y).to(x.device)
        return self.forward(x)

    def predict(self, volume, spacing=None, tta=True, overlap=None, outputs=("labels",),
                progress=None):
        """The pipeline of `segmamba predict` on an in-memory (C, D, H, W)
        volume (an Image from read_nifti, or an array with spacing, mm along
        D, H, W; a (D, H, W) array is one channel): crop to the non-zero box,
        normalise per the card, resample to the card's spacing, sliding
        windows (Gaussian weights; overlap: None is the card's, default 0.5;
        0 none; at most 0.95), 8-way mirror averaging unless tta=False,
        softmax and argmax (or the card's sigmoid heads), uncrop.

        outputs, any of: labels ((D, H, W) uint8), probabilities ((K, D, H,
        W) float32), regions ((3, D, H, W) uint8 TC, WT, ET: BraTS models),
        masks ((K, D, H, W) uint8, regions and sigmoid cards), uncertainty
        ((D, H, W) float32 entropy, nats), box (the crop box, [lo, hi) per
        axis), windows (network forwards run). Returns {name: value}.

        progress(done, total), if given, is called after each window; a true
        return value cancels (segmamba.Error E_CANCELLED). Ctrl-C cancels
        too and raises KeyboardInterrupt. The GIL is released between
        windows."""
        paths = None
        if isinstance(volume, Image):
            if spacing is None:
                spacing = volume.spacing
            paths = volume.paths if len(volume.paths) in (1, volume.shape[0]) else None
            volume = volume.array
        if spacing is None:
            raise _arg_error("spacing: mm along (D, H, W) is needed for an array")
        sp = tuple(float(s) for s in spacing)
        if len(sp) != 3:
            raise _arg_error(f"spacing: three values (D, H, W), not {spacing!r}")
        want = tuple(outputs)
        for o in want:
            if o not in _OUTPUTS:
                raise _arg_error(f"outputs: any of {', '.join(_OUTPUTS)}, not {o!r}")
        if "regions" in want and not self._brats_card():
            raise _arg_error(f"regions needs a BraTS model (labels background, NCR, ED, ET); "
                             f"the model card ({self._m.card_origin()}) has other labels")
        if overlap is None:
            ov = 0.0
        elif not 0.0 <= float(overlap) <= 0.95:
            raise _arg_error(f"overlap: a number from 0 to 0.95, not {overlap!r}")
        else:
            ov = float(overlap) if float(overlap) > 0.0 else -1.0  # the API's "none"
        v = _float32_c(volume, "volume")
        if memoryview(v).ndim == 3:
            v = np.asarray(v)[None]
        r = self._m.predict(v, sp, 0 if tta else 1, ov, "probabilities" in want,
                            "regions" in want, "uncertainty" in want, progress, paths)
        res = {}
        for o in want:
            if o in ("box", "windows"):
                res[o] = r[o]
            elif o in r:
                res[o] = np.asarray(r[o])
            else:
                raise _arg_error(f"outputs: this model card ({self._card['output']}) gives no {o}")
        return res

    def _brats_card(self):
        c = self._card
        return ((c["output"] == "argmax" and len(c["labels"]) == 4) or
                (c["output"] == "regions" and "regions" not in c))

    # ---- lifetime

    def close(self):
        """Frees the weights and buffers now; later calls raise Error."""
        self._m.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        c = self._config
        return (f"Model({self.path!r}: {c['family']}, {c['in_chans']}->{c['out_chans']} "
                f"channels, {c['parameters']} parameters)")
