#!/usr/bin/python3
"""A catalogue of hostile and broken inputs, each through the CLI as a user
meets it: the exact error line, the exit code (`segmamba help`), and no
output file (nor a temporary one) left behind.

Every case prints `ok|FAIL exit N: <name>: <the error line>`, so the log is
the catalogue. Numbers inside the expected messages (offsets, sizes, voxel
positions) are computed here from the files as Python's zipfile, json,
pickletools, numpy and nibabel see them.

Covered elsewhere and not repeated here: tensors missing, extra or
mis-shaped (test_cli.py, exit 5), inputs of the wrong channel count or side
(test_cli.py, exit 6), every nibabel sample file and the reader's refusals
at the library level (test_nifti_nibabel.py, test_nifti.c), damaged zip
records (test_zip.c) and pickle opcodes (test_checkpoint.c), a volume
smaller than the patch against the reference pipeline
(test_pipeline_reference.py; here only as the control run).

usage: test_bad_inputs.py --segmamba build/segmamba
"""
import argparse
import contextlib
import gzip
import json
import os
import pickletools
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib

import nibabel as nib
import numpy as np

from host_exe import host_command

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
from safetensors_read import write_safetensors_f32  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "fixtures", "tiny")
MODEL_ST = os.path.join(FIXTURE, "model.safetensors")
MODEL_PT = os.path.join(FIXTURE, "model.pt")
CAP_NOTE = "(SEGMAMBA_MAX_MEMORY; default: the machine's physical memory)"

results = {"passed": 0, "failed": 0, "skipped": 0}


def report(ok, code, name, line):
    results["passed" if ok else "failed"] += 1
    print(f"{'ok  ' if ok else 'FAIL'} exit {code}: {name}: {line}", flush=True)


def leftovers(path):
    """The output itself, or a temporary file next to it."""
    d, base = os.path.split(path)
    try:
        names = os.listdir(d or ".")
    except OSError:
        return []
    return [n for n in names if n == base or n.startswith(base + ".tmp-")]


def expect(exe, name, args, code, message, outputs=(), env=None, prefix=()):
    """Runs segmamba ARGS (after PREFIX, a command that runs it); the last
    stderr line must be exactly 'segmamba: error: MESSAGE', the exit code
    CODE, and none of OUTPUTS may exist afterwards."""
    full_env = dict(os.environ, **(env or {}))
    p = subprocess.run([*prefix, *host_command(exe), *args], capture_output=True, text=True,
                       env=full_env)
    lines = p.stderr.strip().splitlines()
    last = lines[-1] if lines else ""
    want = "segmamba: error: " + message
    left = [n for o in outputs for n in leftovers(o)]
    ok = p.returncode == code and last == want and not left
    report(ok, p.returncode, name, last)
    if not ok:
        if p.returncode != code:
            print(f"     want exit {code}")
        if last != want:
            print(f"     want: {want}")
        if left:
            print(f"     left behind: {left}")
    return p


# ---- checkpoints ----------------------------------------------------------

def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    header.pop("__metadata__", None)
    data = blob[8 + n:]
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[b:e], "<f4").reshape(t["shape"]).copy()
    return out, header, n


def stored_zip(path, members):
    """A zip with uncompressed members, as torch.save writes them."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members:
            z.writestr(name, data)


def opcode_position(pkl, name, arg=None):
    for op, a, pos in pickletools.genops(pkl):
        if op.name == name and (arg is None or a == arg):
            return pos
    raise ValueError(f"no {name} {arg} in the pickle")


def checkpoint_cases(exe, tmp):
    tensors, header, header_len = read_safetensors(MODEL_ST)
    size_st = os.path.getsize(MODEL_ST)

    # A .pt cut in half has lost its zip directory, which lives at the end.
    p = os.path.join(tmp, "half.pt")
    with open(MODEL_PT, "rb") as f:
        blob = f.read()
    with open(p, "wb") as f:
        f.write(blob[:len(blob) // 2])
    expect(exe, "truncated .pt", ["info", p], 3,
           f"{p}: not a zip archive, or truncated: no end-of-central-directory record")

    # A damaged central directory: its first record's signature overwritten.
    p = os.path.join(tmp, "damaged.pt")
    eocd = blob.rindex(b"PK\x05\x06")
    cd_offset = struct.unpack("<I", blob[eocd + 16:eocd + 20])[0]
    if cd_offset == 0xFFFFFFFF:  # ZIP64: the real offset is in the ZIP64 record
        z64 = blob.rindex(b"PK\x06\x06")
        cd_offset = struct.unpack("<Q", blob[z64 + 48:z64 + 56])[0]
    damaged = bytearray(blob)
    damaged[cd_offset:cd_offset + 4] = b"XXXX"
    with open(p, "wb") as f:
        f.write(bytes(damaged))
    expect(exe, "corrupt .pt (zip directory)", ["info", p], 3,
           f"{p}: zip central directory is damaged at offset {cd_offset}")

    # A pickle that names os.system: refused before anything runs.
    marker = os.path.join(tmp, "pwned")
    pkl = (b"\x80\x02cos\nsystem\nq\x00X" + struct.pack("<I", len("touch " + marker)) +
           ("touch " + marker).encode() + b"\x85q\x01Rq\x02.")
    p = os.path.join(tmp, "evil.pt")
    stored_zip(p, [("evil/data.pkl", pkl), ("evil/version", b"3\n")])
    pos = opcode_position(pkl, "GLOBAL", "os system")
    expect(exe, "pickle naming os.system", ["info", p], 4,
           f"{p}: data.pkl byte {pos}: refusing pickle global 'os.system': only state_dict data "
           "(tensors in a dict) is loaded; if this file holds a whole model, save "
           "model.state_dict() instead")
    report(not os.path.exists(marker), 4, "os.system never ran", f"{marker} absent")

    # A whole pickled module, as torch.save(model) writes it.
    import torch
    p = os.path.join(tmp, "whole_model.pt")
    torch.save(torch.nn.Linear(2, 2), p)
    with zipfile.ZipFile(p) as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    glob = next((a, pos) for op, a, pos in pickletools.genops(pkl)
                if op.name == "GLOBAL" and not a.startswith(("torch._utils", "collections")))
    module, cls = glob[0].split(" ")
    expect(exe, "whole pickled model (torch.save(model))", ["info", p], 4,
           f"{p}: data.pkl byte {glob[1]}: refusing pickle global '{module}.{cls}': only "
           "state_dict data (tensors in a dict) is loaded; if this file holds a whole model, "
           "save model.state_dict() instead")

    # A training checkpoint whose state_dict is fine but which holds, beside
    # it, an object that pickles as a call to os.system: refused, nothing run.
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + marker,))

    sd = {k: torch.from_numpy(v.copy()) for k, v in tensors.items()}
    p = os.path.join(tmp, "evil_container.pt")
    torch.save({"state_dict": sd, "epoch": 3, "evil": Evil()}, p)
    with zipfile.ZipFile(p) as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    glob = next((a, pos) for op, a, pos in pickletools.genops(pkl)
                if op.name == "GLOBAL" and a.endswith(" system"))
    module, name = glob[0].split(" ")
    expect(exe, "container with a code global beside its state_dict", ["info", p], 4,
           f"{p}: data.pkl byte {glob[1]}: refusing pickle global '{module}.{name}': only "
           "state_dict data (tensors in a dict) is loaded; if this file holds a whole model, "
           "save model.state_dict() instead")
    report(not os.path.exists(marker), 4, "os.system beside a state_dict never ran",
           f"{marker} absent")

    # Tensors of a dtype the engine does not take.
    p = os.path.join(tmp, "uint8.pt")
    torch.save({"w": torch.zeros(3, dtype=torch.uint8)}, p)
    with zipfile.ZipFile(p) as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    pos = opcode_position(pkl, "GLOBAL", "torch ByteStorage")
    expect(exe, "uint8 tensor in a .pt", ["info", p], 4,
           f"{p}: data.pkl byte {pos}: tensor storage type 'torch.ByteStorage' is not "
           "supported: weights must be float32, float16, bfloat16 or float64")
    p = os.path.join(tmp, "fp8.safetensors")
    victim = sorted(tensors)[0]
    write_safetensors_f32(p, tensors, header_edit=lambda h: h[victim].update(dtype="F8_E4M3"))
    expect(exe, "unsupported safetensors dtype", ["info", p], 4,
           f"{p}: tensor '{victim}' has dtype 'F8_E4M3', which is not supported")

    # A truncated safetensors file: the first tensor (in header order) whose
    # data runs past the end is named.
    p = os.path.join(tmp, "cut.safetensors")
    cut = size_st - 1000
    with open(MODEL_ST, "rb") as f:
        blob = f.read()
    with open(p, "wb") as f:
        f.write(blob[:cut])
    data_size = cut - 8 - header_len
    raw_header = json.loads(blob[8:8 + header_len])
    name, t = next((k, v) for k, v in raw_header.items()
                   if k != "__metadata__" and v["data_offsets"][1] > data_size)
    b, e = t["data_offsets"]
    expect(exe, "truncated .safetensors", ["info", p], 3,
           f"{p}: tensor '{name}' has data_offsets [{b}, {e}] outside the {data_size} bytes of "
           "data (truncated?)")

    p = os.path.join(tmp, "long_header.safetensors")
    with open(p, "wb") as f:
        f.write(struct.pack("<Q", size_st) + blob[8:])
    expect(exe, "safetensors header length past the end", ["info", p], 3,
           f"{p}: safetensors header length {size_st} is larger than the file ({size_st} bytes)")

    p = os.path.join(tmp, "array_header.safetensors")
    text = b"[1, 2, 3]"
    with open(p, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
    expect(exe, "safetensors header not an object", ["info", p], 3,
           f"{p}: safetensors header is not a JSON object")

    p = os.path.join(tmp, "not_a_model.safetensors")
    with open(p, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + bytes(64))
    n = struct.unpack("<Q", b"\x89PNG\r\n\x1a\n")[0]
    expect(exe, "a PNG given as the model", ["info", p], 3,
           f"{p}: safetensors header length {n} is larger than the file (72 bytes)")

    # Non-finite weights: refused at load, naming the tensor and element.
    victim = "vit.stages.0.0.mamba.x_proj_s.weight"
    bad = {k: v.copy() for k, v in tensors.items()}
    bad[victim].reshape(-1)[5] = np.nan
    bad[victim].reshape(-1)[9] = np.nan
    p = os.path.join(tmp, "nan.safetensors")
    write_safetensors_f32(p, bad)
    numel = bad[victim].size
    expect(exe, "NaN weights (safetensors)", ["info", p], 5,
           f"{p}: tensor '{victim}' holds NaN at element 5 (2 of its {numel} values are not "
           "finite); a checkpoint with non-finite weights cannot give a valid segmentation")
    sd = {k: torch.from_numpy(v.copy()) for k, v in tensors.items()}
    victim2 = sorted(sd)[-1]
    sd[victim2].view(-1)[0] = -float("inf")
    p = os.path.join(tmp, "inf.pt")
    torch.save(sd, p)
    out = os.path.join(tmp, "inf_logits.npy")
    expect(exe, "-inf weights (.pt), forward", ["forward", "--model", p, "--input",
                                                os.path.join(FIXTURE, "input.npy"), "--output", out],
           5, f"{p}: tensor '{victim2}' holds -inf at element 0 (1 of its {sd[victim2].numel()} "
           "values are not finite); a checkpoint with non-finite weights cannot give a valid "
           "segmentation", outputs=[out])

    # The memory cap.
    expect(exe, "file larger than SEGMAMBA_MAX_MEMORY", ["info", MODEL_ST], 7,
           f"{MODEL_ST}: reading the file would need {size_st + 1} bytes, more than the memory "
           f"limit of {100 * 1024} bytes {CAP_NOTE}", env={"SEGMAMBA_MAX_MEMORY": "100K"})
    expect(exe, "SEGMAMBA_MAX_MEMORY not a size", ["info", MODEL_ST], 1,
           "SEGMAMBA_MAX_MEMORY='lots' is not a size in bytes (such as 8G, 512M or 1000000)",
           env={"SEGMAMBA_MAX_MEMORY": "lots"})
    forward_over_cap(exe, tmp)


def forward_over_cap(exe, tmp):
    """A forward is held to the cap as a whole (its arena plus the weights):
    refused (exit 7, nothing written), naming what it would need, under a
    1 MiB cap and one byte below that need, and run at exactly it. On the
    BLAS backend (weights as they are, repacked) the need is bench's arena
    for the size plus 4 bytes per parameter, exactly."""
    x = os.path.join(FIXTURE, "input.npy")
    out = os.path.join(tmp, "cap_logits.npy")
    args = ["forward", "--model", MODEL_ST, "--input", x, "--output", out, "--threads", "2",
            "--conv", "blas"]

    def refused(name, cap):
        p = subprocess.run([*host_command(exe), *args], capture_output=True, text=True,
                           env=dict(os.environ, SEGMAMBA_MAX_MEMORY=str(cap)))
        last = (p.stderr.strip().splitlines() or [""])[-1]
        m = re.fullmatch(r"segmamba: error: forward: a 32x32x32 input \(activations [\d.]+ MiB, "
                         r"weights [\d.]+ MiB\) would need (\d+) bytes, more than the memory limit "
                         rf"of {cap} bytes " + re.escape(CAP_NOTE), last)
        report(p.returncode == 7 and m is not None and not leftovers(out), p.returncode, name, last)
        return int(m.group(1)) if m else 0

    need = refused("forward above SEGMAMBA_MAX_MEMORY (1 MiB)", 1 << 20)
    js = os.path.join(tmp, "cap_bench.json")
    b = subprocess.run([*host_command(exe), "bench", "--model", MODEL_ST, "--size", "32",
                        "--repeat", "1", "--threads", "2", "--conv", "blas", "--json", js],
                       capture_output=True, text=True)
    want = 0
    if b.returncode == 0:
        with open(js) as f:
            doc = json.load(f)
        want = doc["arena_bytes"] + 4 * doc["n_params"]
    report(b.returncode == 0 and need == want > 0, b.returncode,
           "forward's need is bench's arena plus 4 bytes per parameter", f"{need} == {want}")
    if need > 0:
        refused("forward one byte below its need", need - 1)
        q = subprocess.run([*host_command(exe), *args], capture_output=True, text=True,
                           env=dict(os.environ, SEGMAMBA_MAX_MEMORY=str(need)))
        report(q.returncode == 0 and os.path.exists(out), q.returncode,
               "forward at exactly its need runs", q.stderr.strip()[-200:])


# ---- forward's .npy input -------------------------------------------------

def forward_cases(exe, tmp):
    x = np.load(os.path.join(FIXTURE, "input.npy"))
    out = os.path.join(tmp, "logits.npy")
    base = ["forward", "--model", MODEL_ST, "--output", out, "--nslices", "16,8,4,2"]
    p = os.path.join(tmp, "nan_input.npy")
    y = x.copy()
    y[0, 0, 2, 3, 4] = np.nan
    y[0, 1, 0, 0, 0] = np.inf  # later in C order: the NaN is the first
    np.save(p, y)
    expect(exe, "NaN and inf in forward's input", base + ["--input", p], 4,
           f"{p}: element [0, 0, 2, 3, 4] is NaN (2 of {y.size} values are not finite); "
           "replace NaN and infinite values before running the model", outputs=[out])
    p = os.path.join(tmp, "truncated.npy")
    with open(os.path.join(FIXTURE, "input.npy"), "rb") as f:
        blob = f.read()
    with open(p, "wb") as f:
        f.write(blob[:-7])
    expect(exe, "truncated .npy input", base + ["--input", p], 3,
           f"{p}: npy data is {x.nbytes - 7} bytes but the shape and dtype need {x.nbytes} "
           "(truncated?)", outputs=[out])


# ---- predict's NIfTI inputs -----------------------------------------------

SHAPE = (20, 24, 16)  # x, y, z: smaller than the 32^3 patch on every axis
AFFINE = np.array([[-1.0, 0, 0, 10], [0, 1.0, 0, -20], [0, 0, 1.0, 5], [0, 0, 0, 1]])


def predict_setup(tmp, rng):
    card = {"channels": [{"name": "c0", "normalization": "zscore"},
                         {"name": "c1", "normalization": "zscore"}],
            "spacing": [1.0, 1.0, 1.0], "patch": [32, 32, 32], "nslices": [16, 8, 4, 2],
            "fue": False, "labels": ["background", "a", "b"], "output": "argmax"}
    card_path = os.path.join(tmp, "card.json")
    with open(card_path, "w") as f:
        json.dump(card, f)
    good = []
    for c in range(2):
        p = os.path.join(tmp, f"img{c}.nii.gz")
        nib.Nifti1Image((100 + 20 * rng.standard_normal(SHAPE)).astype(np.float32),
                        AFFINE).to_filename(p)
        good.append(p)
    return card_path, good


def raw_nifti(path, img):
    """Writes img uncompressed (path ends in .nii)."""
    img.to_filename(path)


def patch_bytes(path, offset, data, gz=False):
    opener = gzip.open if gz else open
    with opener(path, "rb") as f:
        b = bytearray(f.read())
    b[offset:offset + len(data)] = data
    with opener(path, "wb") as f:
        f.write(bytes(b))


def nifti_cases(exe, tmp, rng):
    card_path, good = predict_setup(tmp, rng)
    seg = os.path.join(tmp, "seg.nii.gz")
    base = ["predict", "--model", MODEL_ST, "--card", card_path, "--no-tta", "--quiet",
            "-o", seg]

    def run_with(name, second, code, message, env=None):
        expect(exe, name, base + ["-i", good[0], second], code, message, outputs=[seg], env=env)

    # The control: the good pair (smaller than the patch, so padded) works.
    p = subprocess.run(host_command(exe) + [*base, "-i", *good], capture_output=True, text=True)
    ok = p.returncode == 0 and os.path.exists(seg) and nib.load(seg).shape == SHAPE and \
        np.allclose(nib.load(seg).affine, AFFINE)
    report(ok, p.returncode, "control: a volume smaller than the patch is padded and segmented",
           p.stderr.strip()[-200:] or f"wrote {seg} {nib.load(seg).shape if ok else ''}")
    if os.path.exists(seg):
        os.remove(seg)

    data = (100 + 20 * rng.standard_normal(SHAPE)).astype(np.float32)
    p = os.path.join(tmp, "trunc.nii")
    raw_nifti(p, nib.Nifti1Image(data, AFFINE))
    os.truncate(p, os.path.getsize(p) - 100)
    run_with("truncated .nii", p, 3,
             f"{p}: data truncated: {data.nbytes - 100} of the {data.nbytes} data bytes are present")

    # A .nii.gz cut in half: the bytes that still inflate are counted.
    p = os.path.join(tmp, "trunc.nii.gz")
    nib.Nifti1Image(data, AFFINE).to_filename(p)
    os.truncate(p, os.path.getsize(p) // 2)
    with open(p, "rb") as f:
        present = len(zlib.decompressobj(16 + 15).decompress(f.read())) - 352
    run_with("truncated .nii.gz", p, 3,
             f"{p}: data truncated: {present} of the {data.nbytes} data bytes are present")

    # The gzip trailer's CRC no longer matches the data.
    p = os.path.join(tmp, "crc.nii.gz")
    nib.Nifti1Image(data, AFFINE).to_filename(p)
    with open(p, "r+b") as f:
        f.seek(-8, os.SEEK_END)
        crc = f.read(4)
        f.seek(-8, os.SEEK_END)
        f.write(bytes(b ^ 0xFF for b in crc))
    run_with("gzip-corrupt .nii.gz (CRC)", p, 3, f"{p}: corrupt gzip stream (incorrect data check)")

    p = os.path.join(tmp, "garbage.nii.gz")
    with open(p, "wb") as f:
        f.write(b"\x1f\x8b\x08\x00" + bytes(range(7, 250)))
    run_with("gzip-corrupt deflate data", p, 3, f"{p}: corrupt gzip stream ({gzip_message(p)})")

    p = os.path.join(tmp, "zero.nii")
    raw_nifti(p, nib.Nifti1Image(data, AFFINE))
    patch_bytes(p, 42, struct.pack("<h", 0))  # dim[1]
    run_with("zero dimension", p, 3, f"{p}: dimension 1 is 0 (must be at least 1)")

    p = os.path.join(tmp, "negative.nii")
    raw_nifti(p, nib.Nifti1Image(data, AFFINE))
    patch_bytes(p, 44, struct.pack("<h", -5))  # dim[2]
    run_with("negative dimension", p, 3, f"{p}: dimension 2 is -5 (must be at least 1)")

    p = os.path.join(tmp, "absurd.nii")
    raw_nifti(p, nib.Nifti1Image(data, AFFINE))
    patch_bytes(p, 42, struct.pack("<3h", 30000, 30000, 30000))
    run_with("absurd dimensions (30000^3)", p, 4,
             f"{p}: absurd dimensions (dim[3] = 30000, {30000 ** 3} elements so far; at most "
             f"{1 << 20} per side and {1 << 32} in all)")

    p = os.path.join(tmp, "five.nii")
    nib.Nifti1Image(np.ones(SHAPE + (1, 2), np.float32), AFFINE).to_filename(p)
    run_with("5D data", p, 4, f"{p}: 5D image (dim[5] = 2); only 3D images and 4D channel "
             "stacks are supported")
    p = os.path.join(tmp, "complex.nii")
    nib.Nifti1Image(np.ones(SHAPE, np.complex64), AFFINE).to_filename(p)
    run_with("complex datatype", p, 4, f"{p}: datatype COMPLEX64 (code 32) is not supported: "
             "only scalar integer (8 to 64 bits) and float32/float64 images can be segmented")
    p = os.path.join(tmp, "rgb.nii.gz")
    rgb = np.zeros(SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.Nifti1Image(rgb, AFFINE).to_filename(p)
    run_with("RGB datatype", p, 4, f"{p}: datatype RGB24 (code 128) is not supported: only "
             "scalar integer (8 to 64 bits) and float32/float64 images can be segmented")

    p = os.path.join(tmp, "moved.nii.gz")
    moved = AFFINE.copy()
    moved[0, 3] += 0.5
    nib.Nifti1Image(data, moved).to_filename(p)
    run_with("modalities with different origins", p, 6,
             f"{good[0]} and {p}: affines differ: element [0][3] is {AFFINE[0, 3]:.6g} vs "
             f"{moved[0, 3]:.6g} mm (origin)")
    p = os.path.join(tmp, "spacing.nii.gz")
    img = nib.Nifti1Image(data, AFFINE)
    img.header.set_zooms((1.0, 1.0, 1.2))
    img.to_filename(p)
    run_with("modalities with different spacing", p, 6,
             f"{good[0]} and {p}: voxel spacing differs: 1x1x1 vs 1x1x1.2 mm")
    p = os.path.join(tmp, "dims.nii.gz")
    other = (SHAPE[0], SHAPE[1], SHAPE[2] + 1)
    nib.Nifti1Image(np.ones(other, np.float32), AFFINE).to_filename(p)
    run_with("modalities with different dims", p, 6,
             f"{good[0]} and {p}: dims differ: {'x'.join(map(str, SHAPE))} vs "
             f"{'x'.join(map(str, other))}")

    # Non-finite voxels: refused, naming the file and the first voxel.
    p = os.path.join(tmp, "nan.nii.gz")
    bad = data.copy()
    bad[3, 4, 5] = np.nan
    bad[7, 1, 9] = -np.inf
    nib.Nifti1Image(bad, AFFINE).to_filename(p)
    first = min([(5, 4, 3), (9, 1, 7)])  # (k, j, i): the file's storage order
    n = int(np.prod(SHAPE))
    run_with("NaN and -inf voxels", p, 4,
             f"{p}: voxel ({first[2]}, {first[1]}, {first[0]}) is NaN (2 of its {n} voxels are "
             "not finite); replace NaN and infinite values (e.g. with 0) before segmenting")
    # Finite stored values that scl_slope turns into infinity.
    p = os.path.join(tmp, "slope.nii")
    ints = np.full(SHAPE, 7, np.int16)
    ints[0, 0, 0] = 0
    img = nib.Nifti1Image(ints, AFFINE)
    img.to_filename(p)
    patch_bytes(p, 112, struct.pack("<ff", 1e38, 0.0))
    run_with("scl_slope overflowing float32", p, 4,
             f"{p}: voxel (1, 0, 0) is +inf ({n - 1} of its {n} voxels are not finite); replace "
             "NaN and infinite values (e.g. with 0) before segmenting")

    p = os.path.join(tmp, "absent.nii.gz")
    run_with("input missing", p, 2, f"{p}: cannot open: No such file or directory")

    # Declared sizes past the memory cap are refused before allocation; the
    # file is a few hundred bytes of gzip.
    p = os.path.join(tmp, "huge.nii.gz")
    h = nib.Nifti1Header()
    h.set_data_shape((1024, 1024, 512))
    h.set_data_dtype(np.int16)
    with gzip.open(p, "wb") as f:
        f.write(h.binaryblock + bytes(4 + 4096))
    need = 1024 * 1024 * 512 * (2 + 4)
    run_with("declared size past SEGMAMBA_MAX_MEMORY", p, 7,
             f"{p}: the image (as stored and as float32) would need {need} bytes, more than the "
             f"memory limit of {1 << 30} bytes {CAP_NOTE}", env={"SEGMAMBA_MAX_MEMORY": "1G"})
    # A voxel spacing of 1 km: resampled to the card's 1 mm, each side would
    # be clamped to 2^20 voxels. Refused before allocation (the product
    # overflows 64 bits with 16 channels; here it is 2^63 bytes).
    big = []
    for c in range(2):
        q = os.path.join(tmp, f"km{c}.nii.gz")
        nib.Nifti1Image((1 + rng.random((4, 4, 4))).astype(np.float32),
                        np.diag([1e6, 1e6, 1e6, 1.0])).to_filename(q)
        big.append(q)
    side = 1 << 20
    expect(exe, "voxel spacing of 1 km (resampled size)", base + ["-i", *big], 7,
           f"input volume: resampling 4x4x4 voxels to the model's spacing ({side}x{side}x{side}) "
           f"would need {2 * 4 * side ** 3} bytes, more than the memory limit of {1 << 30} bytes "
           f"{CAP_NOTE}", outputs=[seg], env={"SEGMAMBA_MAX_MEMORY": "1G"})
    return card_path, good


def gzip_message(path):
    """zlib's own words for a damaged stream, as Python's zlib reports them
    (the same library)."""
    with open(path, "rb") as f:
        blob = f.read()
    try:
        zlib.decompressobj(16 + 15).decompress(blob)
    except zlib.error as e:
        text = str(e)
        return text.split(": ", 1)[1] if ": " in text else text
    return "no error"


# ---- outputs --------------------------------------------------------------

@contextlib.contextmanager
def mounted_tmpfs(path, options):
    """A tmpfs at path (root in a container that allows mount), else None."""
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", path],
                       capture_output=True, text=True)
    if r.returncode != 0:
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(["umount", path], check=False)


def fill(folder):
    """Writes until the file system is full."""
    with open(os.path.join(folder, "filler"), "wb", buffering=0) as f:
        try:
            while True:
                f.write(bytes(4096))
        except OSError:
            pass


def writer_commands(tmp, card_path, good, out_dir):
    """Every writer of the CLI, each aimed at out_dir."""
    seg_ok = os.path.join(tmp, "seg_for_metrics.nii.gz")
    nib.Nifti1Image(np.zeros(SHAPE, np.uint8), AFFINE).to_filename(seg_ok)
    o = {k: os.path.join(out_dir, v) for k, v in
         {"seg": "seg.nii", "prob": "prob.nii.gz", "npy": "logits.npy",
          "st": "model.safetensors", "png": "preview.png", "json": "scores.json"}.items()}
    predict = ["predict", "--model", MODEL_ST, "--card", card_path, "--no-tta", "--quiet",
               "-i", *good]
    side = os.path.join(tmp, "side")  # writable by anyone: see readonly_by_permissions
    os.makedirs(side, exist_ok=True)
    os.chmod(side, 0o777)
    return [
        ("predict -o", predict + ["-o", o["seg"]], o["seg"]),
        ("predict --probabilities", predict + ["-o", os.path.join(side, "seg.nii.gz"),
                                               "--probabilities", o["prob"]], o["prob"]),
        ("forward --output", ["forward", "--model", MODEL_ST, "--input",
                              os.path.join(FIXTURE, "input.npy"), "--output", o["npy"],
                              "--nslices", "16,8,4,2", "--quiet"], o["npy"]),
        ("convert -o", ["convert", MODEL_PT, "--card", card_path, "-o", o["st"]], o["st"]),
        ("preview -o", ["preview", "--image", good[0], "--seg", seg_ok, "-o", o["png"]], o["png"]),
        ("metrics --json", ["metrics", "--pred", seg_ok, "--ref", seg_ok, "--labels", "1",
                            "--json", o["json"]], o["json"]),
    ]


def output_cases(exe, tmp, card_path, good):
    # A folder that does not exist.
    missing = os.path.join(tmp, "no", "such")
    for name, args, out in writer_commands(tmp, card_path, good, missing):
        expect(exe, f"{name} into a missing folder", args, 2,
               f"{out}: cannot create: No such file or directory", outputs=[out])

    # The folders are checked before the work: with a model that cannot be
    # read (which would fail with exit 3), the missing folder is what is
    # reported.
    broken = os.path.join(tmp, "broken.safetensors")
    with open(broken, "wb") as f:
        f.write(b"\x10\x00")
    out = os.path.join(missing, "early.nii.gz")
    expect(exe, "predict -o into a missing folder, refused before the model is read",
           ["predict", "--model", broken, "--card", card_path, "--no-tta", "--quiet", "-i", *good,
            "-o", out], 2, f"{out}: cannot create: No such file or directory", outputs=[out])
    out = os.path.join(missing, "early.npy")
    expect(exe, "forward --output into a missing folder, refused before the model is read",
           ["forward", "--model", broken, "--input", os.path.join(FIXTURE, "input.npy"),
            "--output", out, "--quiet"], 2, f"{out}: cannot create: No such file or directory",
           outputs=[out])

    # An output name that is a folder.
    folder = os.path.join(tmp, "a_folder.nii.gz")
    os.makedirs(folder)
    expect(exe, "predict -o naming a folder", ["predict", "--model", MODEL_ST, "--card", card_path,
                                               "--no-tta", "--quiet", "-i", *good, "-o", folder],
           2, f"{folder}: is a directory, not a file name")

    # A full disk through the device that is always full: written in place
    # (it is not a regular file), so the device node itself stays.
    npy = ["forward", "--model", MODEL_ST, "--input", os.path.join(FIXTURE, "input.npy"),
           "--nslices", "16,8,4,2", "--quiet", "--output", "/dev/full"]
    if os.path.exists("/dev/full"):
        expect(exe, "forward --output /dev/full", npy, 2,
               "/dev/full: write failed: No space left on device")
        report(stat.S_ISCHR(os.stat("/dev/full").st_mode), 2, "/dev/full is still a device",
               "not replaced by a regular file")
    else:
        skip("forward --output /dev/full", "no /dev/full")

    # A read-only folder: a read-only tmpfs where mount is allowed; else the
    # folder is made read-only by permissions and run as an unprivileged
    # user (root ignores permissions). A full file system: full_disk_cases.
    mnt = os.path.join(tmp, "mnt")
    with mounted_tmpfs(mnt, "size=1m,ro") as ro:
        if ro:
            for name, args, out in writer_commands(tmp, card_path, good, ro):
                expect(exe, f"{name} into a read-only file system", args, 2,
                       f"{out}: cannot create: Read-only file system", outputs=[out])
        else:
            readonly_by_permissions(exe, tmp, card_path, good)


def full_disk_cases(exe, tmp, card_path, good):
    """Every writer on a full file system (a 1 MiB tmpfs, filled); False
    where mount is not allowed."""
    with mounted_tmpfs(os.path.join(tmp, "mnt-full"), "size=1m") as full:
        if not full:
            return False
        fill(full)
        for name, args, out in writer_commands(tmp, card_path, good, full):
            expect(exe, f"{name} on a full file system", args, 2,
                   f"{out}: write failed: No space left on device", outputs=[out])
    return True


def readonly_by_permissions(exe, tmp, card_path, good):
    ro = os.path.join(tmp, "readonly")
    os.makedirs(ro, exist_ok=True)
    prefix = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            return skip("writers into a read-only folder", "root without setpriv")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        for d, _, files in os.walk(tmp):
            os.chmod(d, 0o755)
            for f in files:
                os.chmod(os.path.join(d, f), 0o644)
    os.chmod(ro, 0o555)
    for name, args, out in writer_commands(tmp, card_path, good, ro):
        expect(EXE, f"{name} into a read-only folder", args, 2,
               f"{out}: cannot create: Permission denied", outputs=[out], prefix=prefix)


def skip(name, why):
    results["skipped"] += 1
    print(f"skip {name}: {why}", flush=True)


EXE = None


def main():
    global EXE
    ap = argparse.ArgumentParser()
    ap.add_argument("--segmamba", required=True)
    ap.add_argument("--full-disk", action="store_true",
                    help="only the writers on a full file system (a tmpfs: root, and a system "
                    "that allows mount); exit 77 (skipped) where mount is refused")
    args = ap.parse_args()
    EXE = exe = os.path.abspath(args.segmamba)
    rng = np.random.default_rng(6)
    with tempfile.TemporaryDirectory(prefix="sm_bad_inputs_") as tmp:
        if args.full_disk:
            card_path, good = predict_setup(tmp, rng)
            if not full_disk_cases(exe, tmp, card_path, good):
                print("skip: mount is not allowed here, so no full file system can be made")
                return 77
        else:
            checkpoint_cases(exe, tmp)
            forward_cases(exe, tmp)
            card_path, good = nifti_cases(exe, tmp, rng)
            output_cases(exe, tmp, card_path, good)
    print(f"{results['passed']} passed, {results['failed']} failed, {results['skipped']} skipped")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
