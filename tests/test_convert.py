#!/usr/bin/python3
"""`segmamba convert` succeeding: each training checkpoint of
tests/fixtures/containers with a model card that uses every key the engine
writes (ct normalisation, a regions table, dicom_codes, threshold, overlap),
and the .safetensors file it writes read back here with a reader of its own
(8-byte little-endian header length, JSON header, raw data):

- the tensor names are the plain model's (tests/fixtures/tiny/
  model.safetensors, from which the containers were written): prefixes
  stripped, out_main_seg.* read as out.*, no ds_seg_from_dec* head;
- each tensor F32, of the same shape and the same bytes;
- __metadata__["card"] parses to the card given, key by key, and
  `segmamba info --json` on the result shows that card;
- `segmamba forward` on the result gives the .pt's logits bit for bit.

With torch installed, the .pt files' own tensors (torch.load, keys
normalised as docs/checkpoints.md says) are checked to be
those plain tensors too, so the expectation above is the .pt's content and
not only what the fixtures' README says it is.

usage: test_convert.py --segmamba build/segmamba
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

from host_exe import host_command
from checks import check, results  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "fixtures", "tiny")
CONTAINERS = os.path.join(HERE, "fixtures", "containers")
FIXTURES = ["nnunet.pt", "lightning.pt", "module_compiled.pt", "out_main_seg.pt"]
NSLICES = "16,8,4,2"  # tests/fixtures/tiny/case.json: the tiny model's own

# The tiny model takes 2 channels and has 3 outputs: three nested regions.
# Numbers that %.17g prints back unchanged, so the card read back can be
# compared with == (1.0 comes back as 1, equal in Python).
CARD = {
    "channels": [{"name": "ct", "normalization": "ct", "clip_lo": -1000, "clip_hi": 1000,
                  "mean": 80.5, "std": 120.1},
                 {"name": "pet", "normalization": "ct", "clip_lo": 0, "clip_hi": 25.5,
                  "mean": 1.25, "std": 3.0}],
    "spacing": [1.0, 0.75, 0.75],
    "patch": [32, 32, 48],
    "nslices": [16, 8, 4, 2],
    "fue": False,
    "labels": ["background", "NCR", "ED", "ET"],
    "output": "regions",
    "threshold": 0.4,
    "overlap": 0.25,
    "regions": [{"name": "WT", "channel": 2, "label": 2},
                {"name": "TC", "channel": 0, "label": 1},
                {"name": "ET", "channel": 1, "label": 3}],
    "dicom_codes": {
        "NCR": {"category": ["49755003", "SCT", "Morphologically Altered Structure"],
                "type": ["6574001", "SCT", "Necrosis"]},
        "ED": {"category": ["49755003", "SCT", "Morphologically Altered Structure"],
               "type": ["79654002", "SCT", "Edema"]},
        "ET": {"category": ["49755003", "SCT", "Morphologically Altered Structure"],
               "type": ["108369006", "SCT", "Neoplasm"]},
    },
}


def run(exe, *args):
    return subprocess.run([*host_command(exe), *args], capture_output=True, text=True)


def differing_keys(got, want):
    """The keys of the card want whose values got lacks or holds otherwise,
    and got's extra keys: a failure's detail."""
    if not isinstance(got, dict):
        return repr(got)
    keys = sorted(k for k in set(got) | set(want) if got.get(k, "(absent)") != want.get(k))
    return "; ".join(f"{k}: {got.get(k, '(absent)')!r}, given {want.get(k, '(absent)')!r}"
                     for k in keys)


def read_raw_safetensors(path):
    """({name: (dtype, shape, bytes)}, metadata), refusing a header whose
    offsets do not tile the data part exactly."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    meta = header.pop("__metadata__", None) or {}
    width = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8}
    tensors, spans = {}, []
    for name, info in header.items():
        begin, end = info["data_offsets"]
        count = int(np.prod(info["shape"], dtype=np.int64))
        if end - begin != count * width[info["dtype"]]:
            raise ValueError(f"{path}: {name}: {end - begin} bytes for {info['shape']} "
                             f"{info['dtype']}")
        spans.append((begin, end))
        tensors[name] = (info["dtype"], list(info["shape"]), data[begin:end])
    spans.sort()
    if [e for _, e in spans[:-1]] != [b for b, _ in spans[1:]] or \
            (spans and (spans[0][0] != 0 or spans[-1][1] != len(data))):
        raise ValueError(f"{path}: data_offsets do not tile the {len(data)} data bytes")
    return tensors, meta


def torch_state_dict(path):
    """The .pt's plain state_dict as torch reads it, keys normalised as the
    docs/checkpoints.md says: the first of network_weights/state_dict/model/module, the
    prefixes module. and _orig_mod. stripped where every key has them,
    out_main_seg.* as out.*, ds_seg_from_dec* heads left out."""
    import torch
    obj = torch.load(path, map_location="cpu")
    for key in ("network_weights", "state_dict", "model", "module"):
        if key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    sd = dict(obj)
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    sd = {("out." + k[len("out_main_seg."):] if k.startswith("out_main_seg.") else k): v
          for k, v in sd.items() if not k.startswith("ds_seg_from_dec")}
    return {k: v.detach().contiguous().numpy() for k, v in sd.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--segmamba", required=True)
    exe = os.path.abspath(ap.parse_args().segmamba)
    plain, _ = read_raw_safetensors(os.path.join(TINY, "model.safetensors"))
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
        print("torch is not installed: the .pt files' own tensors are not read; the "
              "expectation is tests/fixtures/tiny/model.safetensors, which they were written "
              "from (tests/reference/make_container_fixtures.py)")
    with tempfile.TemporaryDirectory(prefix="sm_convert_") as tmp:
        card_path = os.path.join(tmp, "card.json")
        with open(card_path, "w") as f:
            json.dump(CARD, f)
        x = os.path.join(TINY, "input.npy")
        for name in FIXTURES:
            pt = os.path.join(CONTAINERS, name)
            if have_torch:
                sd = torch_state_dict(pt)
                same = sorted(sd) == sorted(plain) and all(
                    sd[k].dtype == np.float32 and list(sd[k].shape) == plain[k][1] and
                    sd[k].astype("<f4").tobytes() == plain[k][2] for k in plain)
                check(f"{name}: torch.load, keys normalised, is the plain tiny model", same,
                      f"{len(sd)} tensors, names differing: "
                      f"{sorted(set(sd) ^ set(plain))[:6]}")
            out = os.path.join(tmp, name[:-3] + ".safetensors")
            p = run(exe, "convert", pt, "--card", card_path, "-o", out)
            if not check(f"{name}: convert exits 0", p.returncode == 0,
                         f"exit {p.returncode}: {p.stderr.strip()}"):
                continue
            try:
                got, meta = read_raw_safetensors(out)
            except (ValueError, KeyError, struct.error) as e:
                check(f"{name}: the result is well-formed safetensors", False, str(e))
                continue
            check(f"{name}: tensor names are the plain model's", sorted(got) == sorted(plain),
                  f"extra {sorted(set(got) - set(plain))}, missing {sorted(set(plain) - set(got))}")
            check(f"{name}: no ds_seg_from_dec* head",
                  not any(k.startswith("ds_seg_from_dec") for k in got), str(sorted(got)))
            bad = [k for k in plain if k in got and got[k] != plain[k]]
            check(f"{name}: every tensor F32, same shape, same bytes", not bad,
                  "; ".join(f"{k}: {got[k][:2]} against {plain[k][:2]}, bytes "
                            f"{'equal' if got[k][2] == plain[k][2] else 'differ'}"
                            for k in bad[:4]))
            try:
                card = json.loads(meta.get("card", "null"))
            except ValueError as e:
                card = f"not JSON: {e}"
            check(f"{name}: __metadata__[\"card\"] is the card given", card == CARD,
                  differing_keys(card, CARD))
            p = run(exe, "info", "--json", out)
            try:
                info_card = json.loads(p.stdout).get("card")
            except ValueError:
                info_card = p.stderr.strip()
            check(f"{name}: info --json on the result shows the card given", info_card == CARD,
                  differing_keys(info_card, CARD))
            logits = {}
            for label, model in (("pt", pt), ("safetensors", out)):
                y = os.path.join(tmp, f"{name}.{label}.npy")
                p = run(exe, "forward", "--model", model, "--input", x, "--output", y,
                        "--threads", "2", "--nslices", NSLICES, "--quiet")
                if check(f"{name}: forward on the {label}", p.returncode == 0,
                         f"exit {p.returncode}: {p.stderr.strip()}"):
                    logits[label] = np.load(y)
            if len(logits) == 2:
                a, b = logits["pt"], logits["safetensors"]
                check(f"{name}: forward on the result bit-identical to forward on the .pt",
                      a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes(),
                      f"shapes {a.shape} {b.shape}" if a.shape != b.shape else
                      f"max |diff| {np.max(np.abs(a.astype(np.float64) - b))}")
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] or not results["passed"] else 0


if __name__ == "__main__":
    sys.exit(main())
