#!/usr/bin/python3
"""Writes the seed corpus of the fuzz targets into fuzz/corpus/TARGET/.

pt, safetensors, npy: the loader fixtures (tests/fixtures/loaders, written by
tests/reference/make_loader_fixtures.py with torch and numpy), valid and
refused ones alike. nifti: small files written here with nibabel, covering
what the reader branches on: NIfTI-1 and -2, .nii and .nii.gz, every scalar
datatype, both byte orders, 3D and 4D, scaling, sform/qform, an extension,
and a few it refuses (complex, RGB, 5D).

usage: fuzz/make_corpus.py   (from the repository root; safe to run again)
"""
import gzip
import os
import shutil

import nibabel as nib
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "loaders")
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def copy_fixtures(target, suffix):
    out = os.path.join(CORPUS, target)
    os.makedirs(out, exist_ok=True)
    n = 0
    for name in sorted(os.listdir(FIXTURES)):
        if name.endswith(suffix):
            shutil.copyfile(os.path.join(FIXTURES, name), os.path.join(out, name))
            n += 1
    return n


def nifti_seeds():
    out = os.path.join(CORPUS, "nifti")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(6)
    aff = np.array([[-1.2, 0, 0, 90], [0, 1.0, 0.1, -126], [0, 0, 2.5, -72], [0, 0, 0, 1]])
    n = 0

    def save(name, img):
        nonlocal n
        img.to_filename(os.path.join(out, name))
        n += 1

    for i, dt in enumerate(["u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f4", "f8"]):
        cls = nib.Nifti2Image if i % 2 else nib.Nifti1Image
        endian = ">" if i % 3 == 0 else "<"
        shape = (4, 3, 2) if i % 4 else (3, 2, 2, 2)
        data = rng.integers(0, 5, shape).astype(dt)
        img = cls(data, aff, cls.header_class(endianness=endian))
        img.set_data_dtype(np.dtype(dt).newbyteorder(endian))
        if i % 5 == 0:
            img.header.set_slope_inter(0.5, -3.0)
        ext = ".nii.gz" if i % 2 == 0 else ".nii"
        save(f"{dt}{'_be' if endian == '>' else ''}{ext}", img)
    labels = nib.Nifti1Image(rng.integers(0, 4, (5, 4, 3)).astype(np.uint8), aff)
    labels.header.set_qform(aff, code=1)
    labels.header.set_sform(None, code=0)
    labels.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"segmamba seed"))
    save("labels_qform_ext.nii", labels)
    nan = np.ones((3, 3, 3), np.float32)
    nan[1, 1, 1] = np.nan
    save("nan.nii", nib.Nifti1Image(nan, aff))
    save("complex.nii", nib.Nifti1Image(np.ones((2, 2, 2), np.complex64), aff))
    rgb = np.zeros((2, 2, 2), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    save("rgb.nii", nib.Nifti1Image(rgb, aff))
    save("five_d.nii", nib.Nifti1Image(np.ones((2, 2, 2, 1, 2), np.uint8), aff))
    with open(os.path.join(out, "u1_be.nii.gz"), "rb") as f:  # a member cut short
        blob = gzip.decompress(f.read())
    with open(os.path.join(out, "truncated.nii.gz"), "wb") as f:
        f.write(gzip.compress(blob)[:-9])
    n += 1
    return n


def main():
    counts = {"pt": copy_fixtures("pt", ".pt"),
              "safetensors": copy_fixtures("safetensors", ".safetensors"),
              "npy": copy_fixtures("npy", ".npy"),
              "nifti": nifti_seeds()}
    for t, c in counts.items():
        print(f"{t}: {c} seed files in fuzz/corpus/{t}")


if __name__ == "__main__":
    main()
