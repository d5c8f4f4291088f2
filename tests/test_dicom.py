#!/usr/bin/python3
"""DICOM in, DICOM SEG out, against independent implementations.

Series are written with pydicom (single-frame MR, and highdicom's Legacy
Converted Enhanced MR for a multi-frame one) from the phantoms of
tools/phantom.py, at several orientations (axial, sagittal, oblique),
spacings and slice orders (files named at random, in nested folders, the
stack stored against the normal), with and without rescale, next to another
series. Checked:
  * the engine's volume and affine (tests/dicom_dump, through the public
    API) equal SimpleITK's reading of the same series (voxel for voxel; the
    affine within 1e-4 mm) and dcm2niix's conversion (both brought to the
    closest canonical orientation by nibabel);
  * `predict` on an axial series made from a phantom's NIfTI gives the same
    label map as `predict` on the NIfTI (byte for byte), and the label map
    written for DICOM input has the NIfTI's affine;
  * the SEG written (--dicom-seg) read back by highdicom: one segment per
    label with the card's names and codes, frames only where a segment is
    present, each at its source slice's position and referencing it, the
    per-voxel masks equal to the NIfTI label map; dciodvfy reports no error;
  * stored pixel formats (CT int16 with negative values, unsigned 12 bits
    with an intercept, signed 12 bits with garbage above them, MONOCHROME1,
    uint8) and compressed transfer syntaxes (deflated, RLE, JPEG lossless,
    JPEG-LS lossless; dcmtk's dcmcrle, dcmcjpeg, dcmcjpls) on 13x11 frames:
    the volume equals pydicom's pixel_array * slope + intercept and
    SimpleITK's, voxel for voxel;
  * SEG Pixel Data for frames of every size mod 8 bits (dicom_dump --seg
    with chosen label maps: one and three segments on non-adjacent slices,
    oblique), and through predict and predict --list: decoded by numpy as
    PS3.5 8.1.1 packs BINARY frames and by highdicom, equal to the label
    map voxel for voxel;
  * --series picks one of several; broken series (a slice missing, one
    duplicated, a gap, mixed orientation, JPEG 2000, a truncated file, a
    DICOMDIR only, several series) are refused with their message and
    nothing written.

    /usr/bin/python3 tests/test_dicom.py --segmamba build/segmamba \
        --dump build/tests/dicom_dump --venv build/dicom-venv [--seed S]
        [--write-corpus fuzz/corpus/dicom]   (also writes fuzz/corpus/dicom_memory)

The PyPI packages (pydicom and its JPEG decoders, highdicom, SimpleITK;
pinned below) live in a
venv made on first use at --venv (over Debian's numpy, scipy and nibabel);
the script then runs itself under the venv's Python.
"""

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# pylibjpeg with its libjpeg plugin and pyjpegls: pydicom's JPEG lossless
# and JPEG-LS decoders.
PYPI = ["pydicom==3.0.2", "highdicom==0.28.2", "SimpleITK==2.5.7", "numpy==1.24.2",
        "pylibjpeg==2.0.1", "pylibjpeg-libjpeg==2.1.0", "pyjpegls==1.4.0"]


def ensure_venv(venv):
    """Makes the venv once (a stamp names the packages), then re-executes
    this script under it."""
    py = os.path.join(venv, "bin", "python3")
    stamp = os.path.join(venv, "segmamba-packages.txt")
    want = "\n".join(PYPI) + "\n"
    if not (os.path.exists(stamp) and open(stamp).read() == want):
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", venv], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check"] + PYPI,
                       check=True)
        with open(stamp, "w") as f:
            f.write(want)
    if os.path.realpath(sys.prefix) != os.path.realpath(venv):
        os.execv(py, [py] + sys.argv)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--segmamba", required=True)
    ap.add_argument("--dump", required=True)
    ap.add_argument("--venv", required=True)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--write-corpus", default=None)
    ap.add_argument("--ch2bet", action="store_true",
                    help="only issue 23's case: a real T1 MRI (mricron-data's ch2bet) through "
                    "predict --dicom-seg (exit 77 without mricron-data)")
    args = ap.parse_args()
    ensure_venv(os.path.abspath(args.venv))
    import dicom_checks  # noqa: E402  (needs the venv's packages)
    sys.exit(dicom_checks.main(args))


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main()
