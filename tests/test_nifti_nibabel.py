#!/usr/bin/python3
"""The NIfTI reader and writers against nibabel, through tests/nifti_dump.c.

- every NIfTI sample shipped with nibabel is read and compared with
  get_fdata(); the ones with a datatype or rank refused by design must be
  refused with a message, not crash;
- files written by nibabel: NIfTI-1 and NIfTI-2, .nii and .nii.gz, every
  scalar datatype, both byte orders, scl_slope/scl_inter (slope 0 = none),
  sform only, qform only, both, neither, units mm/micron/meter, 3D and 4D;
- our writers' outputs read back by nibabel: same sform/qform and codes,
  pixdim, units, version, data; and the header-less writer;
- hostile files (complex, RGB, 5D, truncated, corrupt gzip, zero dims);
- `segmamba preview` writes a PNG and refuses a mismatched segmentation.

usage: test_nifti_nibabel.py --dump build/tests/nifti_dump --segmamba build/segmamba [--seed S]
"""
import argparse
import glob
import gzip
import json
import os
import subprocess
import sys
import tempfile

import nibabel as nib
import numpy as np
from host_exe import host_command

DATA = "/usr/lib/python3/dist-packages/nibabel/tests/data"
failures = 0


def fail(msg):
    global failures
    failures += 1
    print("FAIL:", msg)


def dump(tool, paths, out):
    r = subprocess.run(host_command(tool) + ["read", out] + list(paths), capture_output=True, text=True)
    geom = json.loads(r.stdout) if r.returncode == 0 else None
    data = np.load(out) if r.returncode == 0 else None
    return r, geom, data


def units_to_mm(img):
    return {"meter": 1000.0, "micron": 0.001}.get(img.header.get_xyzt_units()[0], 1.0)


def expected_affine(img):
    """Our rule: sform if its code > 0, else qform if its code > 0, else the
    pixdim scaling (nibabel's fallback also centres the origin: not ours)."""
    h = img.header
    if int(h["sform_code"]) > 0:
        a = h.get_sform()
    elif int(h["qform_code"]) > 0:
        a = h.get_qform()
    else:
        a = np.diag(list(np.abs(h["pixdim"][1:4])) + [1.0])
    a = a.astype(np.float64) * units_to_mm(img)
    a[3, 3] = 1
    return a


def as_cdhw(arr):
    """nibabel's (x, y, z[, t]) -> our (C, D, H, W)."""
    if arr.ndim == 3:
        arr = arr[..., None]
    while arr.ndim > 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return arr.transpose(3, 2, 1, 0)


def compare(name, img, geom, data, tol_affine=1e-4):
    ref = as_cdhw(np.asanyarray(img.get_fdata(dtype=np.float64)))
    if data.shape != ref.shape:
        return fail(f"{name}: shape {data.shape}, nibabel {ref.shape}")
    scale = max(1.0, float(np.nanmax(np.abs(ref))) if ref.size else 1.0)
    err = np.abs(data.astype(np.float64) - ref)
    if not np.all((err <= 1e-6 * scale) | (np.isnan(ref) & np.isnan(data))):
        fail(f"{name}: values differ by up to {np.nanmax(err)} (scale {scale})")
    aff = expected_affine(img)
    if not np.allclose(np.array(geom["affine"]), aff, atol=tol_affine, rtol=1e-6):
        fail(f"{name}: affine\n{np.array(geom['affine'])}\nwant\n{aff}")
    zooms = np.abs(np.asarray(img.header["pixdim"][1:4], np.float64)) * units_to_mm(img)
    want = [z if z > 0 else 1.0 for z in zooms[::-1]]
    if not np.allclose(geom["spacing"], want, rtol=1e-6):
        fail(f"{name}: spacing {geom['spacing']}, want {want}")


def check_samples(tool, tmp):
    out = os.path.join(tmp, "x.npy")
    n = 0
    for path in sorted(glob.glob(os.path.join(DATA, "*.nii")) + glob.glob(os.path.join(DATA, "*.nii.gz"))):
        img = nib.load(path)
        hdr = getattr(img, "nifti_header", img.header)  # CIFTI-2 wraps a NIfTI-2 header
        dims = hdr["dim"]
        dt = hdr.get_data_dtype()
        refused = dims[0] > 4 and any(d > 1 for d in dims[5:dims[0] + 1]) or \
            dt.kind == "c" or dt.names is not None
        r, geom, data = dump(tool, [path], out)
        n += 1
        if refused:
            if r.returncode not in (3, 4) or path not in r.stderr:
                fail(f"{path}: expected a refusal, got exit {r.returncode}: {r.stderr}")
            continue
        if r.returncode != 0:
            fail(f"{path}: exit {r.returncode}: {r.stderr}")
            continue
        compare(os.path.basename(path), img, geom, data)
    print(f"{n} nibabel sample files checked")


DTYPES = ["u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f4", "f8"]


def random_affine(rng):
    """A random rotation, scaling and shift. Rotations near 180 degrees are
    drawn again: there a qform's quaternion a = sqrt(1 - b^2 - c^2 - d^2) is
    near 0, and nifticlib and nibabel round it to 0 below different
    thresholds (1e-7 and 3.6e-7 on a^2), so a float32-stored quaternion in
    between has two readings that differ by up to ~1e-3 (seed 443977429
    drew one)."""
    while True:
        q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
        proper = q * np.sign(np.linalg.det(q))  # qfac takes the reflection
        if np.sqrt(max(0.0, 1.0 + np.trace(proper))) / 2 > 1e-2:
            break
    a = np.eye(4)
    a[:3, :3] = q * rng.uniform(0.4, 3.0, 3)
    a[:3, 3] = rng.uniform(-100, 100, 3)
    return a


def make_image(rng, cls, dtype, shape, endian):
    if dtype[0] == "f":
        data = rng.standard_normal(shape) * 100
    else:
        info = np.iinfo(dtype)
        lo, hi = max(info.min, -2**20), min(info.max, 2**20)
        data = rng.integers(lo, hi, shape, endpoint=True)
    hdr = cls.header_class(endianness=endian)
    img = cls(data.astype(dtype), None, hdr)
    img.set_data_dtype(np.dtype(dtype).newbyteorder(endian))
    return img


def check_generated(tool, tmp, rng):
    out = os.path.join(tmp, "x.npy")
    n = 0
    for i, dtype in enumerate(DTYPES):
        for variant in range(4):
            cls = nib.Nifti2Image if variant % 2 else nib.Nifti1Image
            endian = ">" if (i + variant) % 3 == 0 else "<"
            shape = tuple(int(s) for s in rng.integers(2, 9, 3))
            if variant == 3:
                shape += (int(rng.integers(2, 4)),)
            img = make_image(rng, cls, dtype, shape, endian)
            aff_s, aff_q = random_affine(rng), random_affine(rng)
            form = variant  # 0 sform only, 1 qform only, 2 both, 3 neither
            img.header.set_sform(aff_s, code=1 if form in (0, 2) else 0)
            img.header.set_qform(aff_q, code=2 if form in (1, 2) else 0)
            if form == 3:
                img.header.set_zooms(tuple(float(z) for z in rng.uniform(0.5, 2, 3)) + (1.0,) * (len(shape) - 3))
            img.header.set_xyzt_units(["mm", "micron", "meter", "unknown"][(i + variant) % 4], "sec")
            ext = ".nii.gz" if (i + variant) % 2 else ".nii"
            path = os.path.join(tmp, f"g_{dtype}_{variant}{ext}")
            img.to_filename(path)
            slope, inter = [(1.0, 0.0), (0.5, -3.0), (0.0, 9.0), (2.0, 1.0)][(i + variant) % 4]
            set_scaling(path, cls, endian, slope, inter)
            back = nib.load(path)
            r, geom, data = dump(tool, [path], out)
            n += 1
            if r.returncode != 0:
                fail(f"{path}: exit {r.returncode}: {r.stderr}")
                continue
            compare(os.path.basename(path), back, geom, data)
    print(f"{n} generated files checked")


def set_scaling(path, cls, endian, slope, inter):
    """Patches scl_slope/scl_inter in the file (nibabel chooses its own on
    save, and never writes a zero slope)."""
    n2 = cls is nib.Nifti2Image
    offset, fmt = (176, "f8") if n2 else (112, "f4")
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        b = bytearray(f.read())
    b[offset:offset + 2 * int(fmt[1])] = np.array([slope, inter], endian + fmt).tobytes()
    with opener(path, "wb") as f:
        f.write(bytes(b))


def check_writers(tool, tmp, rng):
    n = 0
    for cls in (nib.Nifti1Image, nib.Nifti2Image):
        for four_d in (False, True):
            shape = (7, 5, 4, 3) if four_d else (7, 5, 4)
            data = rng.integers(0, 4, shape).astype(np.int16)
            img = cls(data, random_affine(rng))
            img.header.set_qform(random_affine(rng), code=1)
            img.header.set_sform(img.affine, code=4)
            img.header.set_xyzt_units("micron", "sec")
            src = os.path.join(tmp, f"w_in_{cls.__name__}_{four_d}.nii")
            img.to_filename(src)
            for mode, suffix in (("write-u8", ".nii.gz"), ("write-f32", ".nii"), ("write-bare", ".nii.gz")):
                dst = os.path.join(tmp, f"w_out_{mode}_{cls.__name__}_{four_d}{suffix}")
                r = subprocess.run(host_command(tool) + [mode, src, dst], capture_output=True, text=True)
                n += 1
                if r.returncode != 0:
                    fail(f"{mode} {src}: exit {r.returncode}: {r.stderr}")
                    continue
                o = nib.load(dst)
                h, s = o.header, img.header
                if suffix == ".nii.gz" and open(dst, "rb").read(2) != b"\x1f\x8b":
                    fail(f"{dst}: not gzip-compressed")
                if not np.array_equal(o.get_fdata(), data):
                    fail(f"{dst}: data differ")
                want_dtype = np.uint8 if mode == "write-u8" else np.float32
                if o.get_data_dtype() != want_dtype:
                    fail(f"{dst}: dtype {o.get_data_dtype()}")
                if mode == "write-bare":
                    # the affine in mm, sform and qform code 2 ("aligned")
                    want = img.affine * 0.001
                    want[3, 3] = 1
                    if not (np.allclose(o.get_sform(), want, atol=1e-6) and
                            np.allclose(o.get_qform(), want, atol=1e-6) and
                            int(h["sform_code"]) == 2 and int(h["qform_code"]) == 2 and
                            h.get_xyzt_units()[0] == "mm"):
                        fail(f"{dst}: bare geometry {o.get_sform()} codes "
                             f"{h['sform_code']} {h['qform_code']}")
                    continue
                if type(o) is not cls:
                    fail(f"{dst}: written as {type(o).__name__}, input was {cls.__name__}")
                if not (np.allclose(o.get_sform(), img.get_sform(), atol=1e-5) and
                        np.allclose(o.get_qform(), img.get_qform(), atol=1e-5) and
                        int(h["sform_code"]) == 4 and int(h["qform_code"]) == 1):
                    fail(f"{dst}: sform/qform or codes differ")
                if not np.allclose(h["pixdim"][1:4], s["pixdim"][1:4]) or \
                        h.get_xyzt_units() != s.get_xyzt_units():
                    fail(f"{dst}: pixdim {h['pixdim'][1:4]} units {h.get_xyzt_units()}")
                if h["descrip"].tobytes().rstrip(b"\0") != b"segmamba":
                    fail(f"{dst}: descrip {h['descrip']}")
                slope, inter = h.get_slope_inter()
                if slope not in (None, 1.0) or inter not in (None, 0.0):
                    fail(f"{dst}: scaling {slope} {inter}")
                if float(h["cal_max"]) != float(data.max()):
                    fail(f"{dst}: cal_max {h['cal_max']}")
    leftovers = [f for f in os.listdir(tmp) if "tmp" in f]
    if leftovers:
        fail(f"temporary files left behind: {leftovers}")
    print(f"{n} writer round trips checked")


def check_refusals(tool, tmp, rng):
    out = os.path.join(tmp, "x.npy")
    cases = []

    def add(name, make, code, words):
        path = os.path.join(tmp, name)
        make(path)
        cases.append((path, code, words))

    good = nib.Nifti1Image(rng.integers(0, 100, (20, 20, 20)).astype(np.int16), np.eye(4))
    add("complex.nii", lambda p: nib.Nifti1Image(np.ones((3, 3, 3), np.complex64), np.eye(4)).to_filename(p),
        4, "COMPLEX64")
    rgb = np.zeros((3, 3, 3), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    add("rgb.nii.gz", lambda p: nib.Nifti1Image(rgb, np.eye(4)).to_filename(p), 4, "RGB24")
    add("five.nii", lambda p: nib.Nifti1Image(np.ones((3, 3, 3, 1, 2), np.float32), np.eye(4)).to_filename(p),
        4, "5D")
    add("n2six.nii.gz", lambda p: nib.Nifti2Image(np.ones((2, 2, 2, 2, 2, 2), np.uint8), np.eye(4)).to_filename(p),
        4, "6D")

    def truncated(p):
        good.to_filename(p)
        os.truncate(p, os.path.getsize(p) - 100)
    add("truncated.nii", truncated, 3, "truncated")

    def gz_truncated(p):
        good.to_filename(p)
        os.truncate(p, os.path.getsize(p) // 2)
    add("truncated.nii.gz", gz_truncated, 3, "truncated")

    def gz_corrupt(p):
        good.to_filename(p)
        b = bytearray(open(p, "rb").read())
        for k in range(200, 260):
            b[k] ^= 0x5A
        open(p, "wb").write(bytes(b))
    add("corrupt.nii.gz", gz_corrupt, 3, "gzip")

    def zero_dim(p):
        good.to_filename(p)
        b = bytearray(open(p, "rb").read())
        b[44:46] = (0).to_bytes(2, "little")  # dim[2]
        open(p, "wb").write(bytes(b))
    add("zerodim.nii", zero_dim, 3, "dimension 2 is 0")

    def zero_dim_gz(p):
        plain = p[:-3] + "_plain.nii"
        zero_dim(plain)
        with open(plain, "rb") as f, gzip.open(p, "wb") as g:
            g.write(f.read())
    add("zerodim.nii.gz", zero_dim_gz, 3, "dimension 2 is 0")
    add("garbage.nii", lambda p: open(p, "wb").write(bytes(range(256)) * 4), 3, "not a NIfTI file")
    for path, code, words in cases:
        r, _, _ = dump(tool, [path], out)
        if r.returncode != code or path not in r.stderr or words not in r.stderr:
            fail(f"{path}: expected exit {code} with '{words}', got {r.returncode}: {r.stderr.strip()}")
    print(f"{len(cases)} hostile files refused")

    # channels: different datatypes are fine, different geometry is not
    a = os.path.join(tmp, "ch_a.nii.gz")
    b = os.path.join(tmp, "ch_b.nii")
    c = os.path.join(tmp, "ch_c.nii")
    aff = random_affine(rng)
    nib.Nifti1Image(rng.standard_normal((6, 5, 4)).astype(np.float32), aff).to_filename(a)
    nib.Nifti2Image(rng.integers(0, 9, (6, 5, 4)).astype(np.uint16), aff).to_filename(b)
    moved = aff.copy()
    moved[0, 3] += 0.5
    nib.Nifti1Image(rng.integers(0, 9, (6, 5, 4)).astype(np.uint8), moved).to_filename(c)
    r, geom, data = dump(tool, [a, b, a], out)
    if r.returncode != 0 or data.shape != (3, 4, 5, 6) or \
            not np.allclose(data[1], nib.load(b).get_fdata().transpose(2, 1, 0)):
        fail(f"channels {a} {b} {a}: {r.returncode} {r.stderr}")
    r, _, _ = dump(tool, [a, c], out)
    if r.returncode != 6 or "affines differ" not in r.stderr or a not in r.stderr or c not in r.stderr:
        fail(f"channels with a moved origin: {r.returncode} {r.stderr}")


def check_preview(cli, tmp, rng):
    img_path = os.path.join(tmp, "img.nii.gz")
    seg_path = os.path.join(tmp, "seg.nii.gz")
    png = os.path.join(tmp, "p.png")
    aff = np.diag([1.2, 1.0, 3.0, 1.0])
    nib.Nifti1Image(rng.normal(100, 20, (30, 40, 12)).astype(np.float32), aff).to_filename(img_path)
    seg = np.zeros((30, 40, 12), np.uint8)
    seg[10:20, 15:25, 4:8] = 2
    seg[12:16, 18:22, 5:7] = 1
    nib.Nifti1Image(seg, aff).to_filename(seg_path)
    r = subprocess.run(host_command(cli) + ["preview", "--image", img_path, "--seg", seg_path, "-o", png],
                       capture_output=True, text=True)
    if r.returncode != 0 or open(png, "rb").read(8) != b"\x89PNG\r\n\x1a\n":
        fail(f"preview: exit {r.returncode}: {r.stderr}")
    nib.Nifti1Image(seg, np.diag([1.2, 1.0, 2.0, 1.0])).to_filename(seg_path)
    r = subprocess.run(host_command(cli) + ["preview", "--image", img_path, "--seg", seg_path, "-o", png],
                       capture_output=True, text=True)
    if r.returncode != 6 or "spacing differs" not in r.stderr:
        fail(f"preview with a mismatched segmentation: exit {r.returncode}: {r.stderr}")
    print("preview checked")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dump", required=True)
    ap.add_argument("--segmamba", required=True)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), "little")
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        check_samples(a.dump, tmp)
        check_generated(a.dump, tmp, rng)
        check_writers(a.dump, tmp, rng)
        check_refusals(a.dump, tmp, rng)
        check_preview(a.segmamba, tmp, rng)
    print("FAILED" if failures else "ok", f"({failures} failures)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
