"""The checks of tests/test_dicom.py (run under its venv: pydicom, highdicom,
SimpleITK)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pydicom.encaps
import pydicom.fileset
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, HERE)
import phantom  # noqa: E402
import test_cohort  # noqa: E402  (the small random model and its card)
from checks import check, make_tiny_model, results  # noqa: E402

MR = "1.2.840.10008.5.1.4.1.1.4"


def run(cmd):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True)


# ---- writing series ----------------------------------------------------------

def rotation(rng):
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 2] *= -1
    return q


def write_series(out, raw, spacing, R, origin, rescale=None, reverse=False, rng=None,
                 description="phantom", study=None, frame_of_ref=None, names="random"):
    """raw (D, H, W) int16; spacing (between slices, rows, columns) mm; R's
    columns X (along a row: increasing column), Y (increasing row), N = X x Y
    (LPS); origin: voxel (0, 0, 0) in LPS. The stack is written with slice k
    at origin + k s N (reverse: the files list it the other way, N flipped
    in position order but not in orientation). Returns the datasets."""
    os.makedirs(out, exist_ok=True)
    D, H, W = raw.shape
    study = study or generate_uid()
    series = generate_uid()
    frame_of_ref = frame_of_ref or generate_uid()
    order = list(range(D))[::-1] if reverse else list(range(D))
    dss = []
    for n, k in enumerate(order):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = MR
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = MR
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.PatientName = "Phantom^Test"
        ds.PatientID = "PH001"
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.StudyInstanceUID = study
        ds.StudyDate = "20240101"
        ds.StudyTime = "120000"
        ds.StudyID = "1"
        ds.AccessionNumber = "A1"
        ds.ReferringPhysicianName = ""
        ds.SeriesInstanceUID = series
        ds.SeriesNumber = 1
        ds.SeriesDescription = description
        ds.Modality = "MR"
        ds.Manufacturer = "pydicom"
        ds.FrameOfReferenceUID = frame_of_ref
        ds.PositionReferenceIndicator = ""
        ds.InstanceNumber = n + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.EchoTrainLength = 1
        ds.ContentDate = "20240101"
        ds.ContentTime = "120000"
        ds.ImagePositionPatient = [float(v) for v in origin + k * spacing[0] * R[:, 2]]
        ds.ImageOrientationPatient = [float(v) for v in np.concatenate([R[:, 0], R[:, 1]])]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[2])]
        ds.SliceThickness = float(spacing[0]) * 1.5  # not the spacing: must not be used
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = H, W
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        if rescale:
            ds.RescaleSlope, ds.RescaleIntercept = rescale
            ds.RescaleType = "US"
        ds.PixelData = np.ascontiguousarray(raw[k].astype("<i2")).tobytes()
        name = (f"{rng.integers(1 << 40):x}" if names == "random" else f"IM{n:04d}")
        sub = os.path.join(out, f"d{n % 3}")
        os.makedirs(sub, exist_ok=True)
        path = os.path.join(sub, name)
        ds.save_as(path, enforce_file_format=True)
        dss.append((path, ds))
    return dss


def write_multiframe(out, single_frame):
    """highdicom's Legacy Converted Enhanced MR from single-frame datasets."""
    legacy = [pydicom.dcmread(p) for p, _ in single_frame]
    mf = hd.legacy.LegacyConvertedEnhancedMRImage(
        legacy_datasets=legacy, series_instance_uid=generate_uid(), series_number=2,
        sop_instance_uid=generate_uid(), instance_number=1)
    os.makedirs(out, exist_ok=True)
    mf.save_as(os.path.join(out, "multiframe.dcm"))


# ---- readers -----------------------------------------------------------------

# Every folder read of engine_read is repeated through the in-memory entry
# (segmamba_dicom_read_memory, the files given as objects): the same
# volume and geometry, or a refusal with the same status.
MEMORY_READS = {"same": 0, "differ": []}


def engine_read(args, tmp, dirs, series=None):
    out = os.path.join(tmp, f"engine-{time.perf_counter_ns()}.nii")
    cmd = [args.dump, out] + list(dirs) + (["--series"] + list(series) if series else [])
    p = run(cmd)
    if not series:
        mem = out[:-4] + "-memory.nii"
        q = run([args.dump, "--memory", mem] + list(dirs))
        if p.returncode != q.returncode:
            MEMORY_READS["differ"].append((dirs, p.returncode, q.returncode, q.stderr[-300:]))
        elif p.returncode == 0:
            a, b = nib.load(out), nib.load(mem)
            if not (np.array_equal(a.get_fdata(), b.get_fdata()) and
                    np.array_equal(a.affine, b.affine)):
                MEMORY_READS["differ"].append((dirs, "volume or affine differs"))
            else:
                MEMORY_READS["same"] += 1
        else:
            MEMORY_READS["same"] += 1
    if p.returncode != 0:
        return None, p.stderr
    return nib.load(out), ""


def seg_references(ds):
    """The series and instances a SEG references, as a set (the order of
    the instances follows the order the files were found in)."""
    return {(r.SeriesInstanceUID, i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID)
            for r in ds.ReferencedSeriesSequence for i in r.ReferencedInstanceSequence}


def check_memory_reads():
    check(f"the in-memory reader gives what the folder reader gives ({MEMORY_READS['same']} "
          f"series, refusals included)",
          MEMORY_READS["same"] >= 10 and not MEMORY_READS["differ"], MEMORY_READS["differ"][:3])


def to_dhw(img):
    """A NIfTI image's data as (D, H, W) float64 (stored voxel order)."""
    return np.asarray(img.get_fdata(dtype=np.float64)).transpose(2, 1, 0)


def sitk_read(d):
    r = sitk.ImageSeriesReader()
    names = r.GetGDCMSeriesFileNames(d, "", False, True)
    img = sitk.ReadImage(names)
    arr = sitk.GetArrayFromImage(img).astype(np.float64)
    direction = np.array(img.GetDirection()).reshape(3, 3)
    aff = np.eye(4)
    aff[:3, :3] = direction * np.array(img.GetSpacing())
    aff[:3, 3] = img.GetOrigin()
    return arr, np.diag([-1, -1, 1, 1]) @ aff  # LPS -> RAS


def dcm2niix_read(d, tmp):
    out = tempfile.mkdtemp(dir=tmp)
    p = run(["dcm2niix", "-z", "n", "-b", "n", "-f", "conv", "-o", out, d])
    files = [f for f in os.listdir(out) if f.endswith(".nii")]
    if p.returncode != 0 or len(files) != 1:
        return None, p.stdout + p.stderr
    return nib.load(os.path.join(out, files[0])), ""


def canonical(img):
    c = nib.as_closest_canonical(img)
    return np.asarray(c.get_fdata(dtype=np.float64)), c.affine


# ---- the checks ---------------------------------------------------------------

def check_geometry_cases(args, tmp, rng):
    case = phantom.generate(args.seed, 0, (23, 39, 37))  # frames not a multiple of 8 wide
    raw = case["image"][0].astype(np.int16)
    oblique = rotation(rng)
    sag = np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], dtype=float)  # X=(0,1,0) Y=(0,0,-1) N=(-1,0,0)
    cases = [
        ("axial 1 mm", (1.0, 1.0, 1.0), np.eye(3), None, False),
        ("axial 2.5x0.8x0.9 mm, rescaled, stack stored backwards", (2.5, 0.8, 0.9), np.eye(3), (0.5, -20.0), True),
        ("sagittal 1.2x1x1.1 mm", (1.2, 1.0, 1.1), sag, None, True),
        ("oblique 1.5x0.7x0.7 mm, rescaled", (1.5, 0.7, 0.7), oblique, (2.0, 5.0), False),
    ]
    for name, spacing, R, rescale, reverse in cases:
        d = os.path.join(tmp, "geom-" + name.split()[0] + str(len(os.listdir(tmp))))
        origin = rng.uniform(-100, 100, 3)
        write_series(d, raw, spacing, R, origin, rescale, reverse, rng)
        truth = raw.astype(np.float64) * (rescale[0] if rescale else 1) + (rescale[1] if rescale else 0)
        eng, err = engine_read(args, tmp, [d])
        if not check(f"{name}: the engine reads it", eng is not None, err):
            continue
        vol = to_dhw(eng)
        s_arr, s_aff = sitk_read(d)
        check(f"{name}: volume equals SimpleITK's voxel for voxel", vol.shape == s_arr.shape and
              np.array_equal(vol, s_arr), (vol.shape, s_arr.shape))
        check(f"{name}: affine equals SimpleITK's (1e-4 mm)", np.allclose(eng.affine, s_aff, atol=1e-4),
              (eng.affine, s_aff))
        check(f"{name}: rescaled values are the series' (slope/intercept applied)",
              np.array_equal(np.sort(vol.ravel()), np.sort(truth.ravel())))
        zooms = eng.header.get_zooms()[:3]
        check(f"{name}: spacing from the positions, not Slice Thickness",
              np.allclose(zooms, spacing[::-1], atol=1e-5), zooms)
        dimg, err = dcm2niix_read(d, tmp)
        if check(f"{name}: dcm2niix converts it", dimg is not None, err):
            a, aa = canonical(eng)
            b, ba = canonical(dimg)
            check(f"{name}: volume equals dcm2niix's (canonical orientation)",
                  a.shape == b.shape and np.allclose(a, b, atol=1e-3), (a.shape, b.shape))
            check(f"{name}: affine equals dcm2niix's (1e-3 mm)", np.allclose(aa, ba, atol=1e-3), (aa, ba))
        if name.startswith("oblique"):
            mf = os.path.join(tmp, "multiframe")
            write_multiframe(mf, [(os.path.join(r, f), None) for r, _, fs in os.walk(d) for f in fs])
            m, err = engine_read(args, tmp, [mf])
            if check("enhanced multi-frame (highdicom legacy converted): the engine reads it", m is not None, err):
                check("enhanced multi-frame: the single-frame series' volume and affine",
                      np.array_equal(to_dhw(m), vol) and np.allclose(m.affine, eng.affine, atol=1e-4),
                      (m.affine, eng.affine))
                dimg, err = dcm2niix_read(mf, tmp)
                if check("enhanced multi-frame: dcm2niix converts it", dimg is not None, err):
                    a, aa = canonical(m)
                    b, ba = canonical(dimg)
                    check("enhanced multi-frame: volume and affine equal dcm2niix's",
                          a.shape == b.shape and np.allclose(a, b, atol=1e-3) and np.allclose(aa, ba, atol=1e-3),
                          (aa, ba))


def series_from_nifti(path, out, rng, description, study=None, frame_of_ref=None):
    """An axial series holding a phantom NIfTI's voxels at its geometry."""
    img = nib.load(path)
    raw = np.asarray(img.dataobj).transpose(2, 1, 0).astype(np.int16)
    A = np.diag([-1, -1, 1, 1]) @ img.affine  # RAS -> LPS
    spacing = np.sqrt((A[:3, :3] ** 2).sum(axis=0))  # along i, j, k
    R = A[:3, :3] / spacing
    return write_series(out, raw, (spacing[2], spacing[1], spacing[0]), R, A[:3, 3], None,
                        False, rng, description, study, frame_of_ref)


def check_predict_and_seg(args, tmp, rng):
    model, card_path = test_cohort.make_model(tmp)
    with open(card_path) as f:
        card = json.load(f)
    card["dicom_codes"] = {"NCR": {"category": ["49755003", "SCT", "Morphologically Altered Structure"],
                                   "type": ["6574001", "SCT", "Necrosis"]}}
    with open(card_path, "w") as f:
        json.dump(card, f)
    case = phantom.generate(args.seed, 1, test_cohort.SHAPE)
    paths = phantom.write_case(os.path.join(tmp, "nifti"), case)
    study, forf = generate_uid(), generate_uid()
    dicom = os.path.join(tmp, "study")
    series = []
    for c, p in zip(phantom.CHANNELS, paths["channels"]):
        dss = series_from_nifti(p, os.path.join(dicom, c), rng, f"phantom {c}", study, forf)
        series.append(dss)
    base = [args.segmamba, "predict", "--model", model, "--card", card_path, "--no-tta", "--quiet",
            "--threads", "2"]
    seg_nii = os.path.join(tmp, "from-nifti.nii.gz")
    p = run(base + ["-i"] + paths["channels"] + ["-o", seg_nii])
    check("predict on the NIfTI channels", p.returncode == 0, p.stderr)
    seg_dcm_nii = os.path.join(tmp, "from-dicom.nii.gz")
    seg_dcm = os.path.join(tmp, "seg.dcm")
    t0 = time.perf_counter()
    p = run(base + ["-i"] + [os.path.join(dicom, c) for c in phantom.CHANNELS] +
            ["-o", seg_dcm_nii, "--dicom-seg", seg_dcm])
    if not check(f"predict on the four DICOM series, --dicom-seg ({time.perf_counter() - t0:.1f} s)",
                 p.returncode == 0, p.stderr):
        return
    a, b = nib.load(seg_nii), nib.load(seg_dcm_nii)
    la, lb = np.asarray(a.dataobj), np.asarray(b.dataobj)
    check("the same label map from DICOM as from NIfTI (byte for byte)", np.array_equal(la, lb),
          np.count_nonzero(la != lb))
    check("the label map for DICOM input has the NIfTI's affine", np.allclose(a.affine, b.affine, atol=1e-4),
          (a.affine, b.affine))
    labels = lb.transpose(2, 1, 0)  # (D, H, W)
    check("the prediction is not trivial (every label present)", len(np.unique(labels)) == 4,
          np.unique(labels))

    # --series picks the channels from one folder holding all four.
    seg2 = os.path.join(tmp, "from-series.nii.gz")
    uids = [s[0][1].SeriesInstanceUID for s in series]
    p = run(base + ["-i", dicom, "--series"] + uids + ["-o", seg2])
    check("--series: four UIDs from one folder give the same labels",
          p.returncode == 0 and np.array_equal(np.asarray(nib.load(seg2).dataobj), la), p.stderr)
    p = run(base + ["-i", dicom, "-o", os.path.join(tmp, "x.nii.gz")])
    check("a folder of four series without --series: refused, listing them with descriptions",
          p.returncode != 0 and "4 image series where one was expected" in p.stderr and
          "phantom t1c" in p.stderr and uids[2] in p.stderr, p.stderr)

    # The SEG, read back by highdicom.
    seg = hd.seg.segread(seg_dcm)
    names = ["NCR", "ED", "ET"]
    got = [seg.get_segment_description(n).segment_label for n in (1, 2, 3)]
    check("SEG: BINARY, one segment per label with the card's names",
          seg.SegmentationType == "BINARY" and got == names and seg.number_of_segments == 3, got)
    d1 = seg.get_segment_description(1)
    check("SEG: the card's code for NCR; the BraTS default for ED",
          d1.segmented_property_type.value == "6574001" and
          seg.get_segment_description(2).segmented_property_type.value == "79654002",
          (d1.segmented_property_type, seg.get_segment_description(2).segmented_property_type))
    first = series[0]  # t2w: the frames reference its slices
    by_uid = {ds.SOPInstanceUID: k for k, (_, ds) in enumerate(first)}
    check("SEG: same patient, study and frame of reference as the source",
          seg.StudyInstanceUID == study and seg.FrameOfReferenceUID == forf and seg.PatientID == "PH001")
    refs = {s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence}
    check("SEG: references every source series", refs == set(uids), refs)
    present = sum(int(np.any(labels[k] == s)) for s in (1, 2, 3) for k in range(labels.shape[0]))
    check("SEG: frames only where a segment is present", seg.NumberOfFrames == present,
          (seg.NumberOfFrames, present))
    ok_pos, ok_ref = True, True
    for f, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = by_uid.get(uid)
        if k is None:
            ok_ref = False
            continue
        pos = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        ok_pos &= np.allclose(pos, [float(v) for v in first[k][1].ImagePositionPatient], atol=1e-4)
    check("SEG: each frame references a source slice", ok_ref)
    check("SEG: each frame is at its source slice's position", ok_pos)
    source_uids = [ds.SOPInstanceUID for _, ds in first]
    px = seg.get_pixels_by_source_instance(source_sop_instance_uids=source_uids,
                                           segment_numbers=[1, 2, 3], ignore_spatial_locations=False)
    want = np.stack([labels == s for s in (1, 2, 3)], axis=-1)
    check("SEG: the per-voxel masks equal the NIfTI label map", px.shape == want.shape and
          np.array_equal(px.astype(bool), want), (px.shape, want.shape))
    p = run(["dciodvfy", seg_dcm])
    errors = [l for l in (p.stdout + p.stderr).splitlines() if l.startswith("Error")]
    check("SEG: dciodvfy reports no error", not errors, "\n".join(errors))

    # Cohort mode: --dicom-seg per case.
    lst = os.path.join(tmp, "cohort.csv")
    with open(lst, "w") as f:
        f.write("id," + ",".join(phantom.CHANNELS) + "\n")
        f.write("case1," + ",".join(os.path.join(dicom, c) for c in phantom.CHANNELS) + "\n")
    out_dir = os.path.join(tmp, "cohort-out")
    p = run(base[:-3] + ["--quiet", "--list", lst, "--out-dir", out_dir, "--dicom-seg"])
    cseg = os.path.join(out_dir, "dicom-seg", "case1.dcm")
    check("cohort: --dicom-seg writes DIR/dicom-seg/<id>.dcm with the same masks",
          p.returncode == 0 and os.path.isfile(cseg) and np.array_equal(
              hd.seg.segread(cseg).get_pixels_by_source_instance(
                  source_sop_instance_uids=source_uids, segment_numbers=[1, 2, 3]).astype(bool), want),
          p.stderr)
    p = run(base + ["-i"] + paths["channels"] + ["-o", os.path.join(tmp, "y.nii.gz"),
                                                 "--dicom-seg", os.path.join(tmp, "y.dcm")])
    check("--dicom-seg with NIfTI input: refused, nothing written",
          p.returncode == 1 and "needs DICOM input" in p.stderr and
          not os.path.exists(os.path.join(tmp, "y.dcm")), p.stderr)
    return model, card_path


# ---- pixel formats and transfer syntaxes -------------------------------------

def restyle(dss, fn):
    """Rewrites each written slice after fn(ds, k) changed it in place."""
    for k, (path, ds) in enumerate(dss):
        fn(ds, k)
        ds.save_as(path, enforce_file_format=True)


def pydicom_values(dss):
    """pydicom's decoding of a series: pixel_array * slope + intercept per
    slice, slices in position order (float64, (D, H, W))."""
    out = []
    for path, _ in sorted(dss, key=lambda x: float(x[1].ImagePositionPatient[2])):
        ds = pydicom.dcmread(path)
        out.append(ds.pixel_array.astype(np.float64) * float(getattr(ds, "RescaleSlope", 1)) +
                   float(getattr(ds, "RescaleIntercept", 0)))
    return np.stack(out)


def check_pixel_formats(args, tmp, rng):
    """Stored pixel formats beyond 16-bit signed (CT-like negative values,
    12 bits stored with garbage above them, unsigned 12 bits with a rescale
    intercept, MONOCHROME1, 8 bits) and the compressed transfer syntaxes the
    reader decodes (deflated by pydicom; RLE, JPEG lossless and JPEG-LS
    lossless by dcmtk's dcmcrle, dcmcjpeg, dcmcjpls), 13x11 frames: the
    engine's volume equals pydicom's pixel_array * slope + intercept (each
    file decoded by pydicom, compressed ones too), SimpleITK's and the
    values written, voxel for voxel."""
    shape = (5, 13, 11)

    def series(name, raw, fn=None):
        d = os.path.join(tmp, "px-" + name)
        dss = write_series(d, raw, (1.2, 0.9, 0.8), np.eye(3), np.array([5.0, -7.0, 11.0]), None,
                           False, rng, description=name)
        if fn:
            restyle(dss, fn)
        return d, dss

    def ct(ds, slope, intercept):
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.Modality = "CT"
        for kw in ("ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType",
                   "EchoTrainLength"):
            delattr(ds, kw)
        ds.KVP = 120
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "HU"

    hu = rng.integers(-1024, 3000, shape).astype(np.int16)
    u12 = rng.integers(0, 4096, shape).astype(np.uint16)
    s12 = rng.integers(-2048, 2048, shape).astype(np.int16)
    garbage = rng.integers(0, 16, shape).astype(np.uint16) << 12
    u8 = rng.integers(0, 256, shape).astype(np.uint8)

    def ct_int16(ds, k):
        ct(ds, 1.0, 0.0)

    def ct_u12(ds, k):
        ct(ds, 1.0, -1024.0)
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
        ds.PixelData = u12[k].astype("<u2").tobytes()

    def s12_garbage(ds, k):
        ds.BitsStored, ds.HighBit = 12, 11
        ds.PixelData = ((s12[k].astype(np.uint16) & 0x0FFF) | garbage[k]).astype("<u2").tobytes()

    def mono1(ds, k):
        ds.PhotometricInterpretation = "MONOCHROME1"
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
        ds.PixelData = u12[k].astype("<u2").tobytes()

    def uint8(ds, k):
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = u8[k].tobytes()

    cases = [
        ("CT int16 with negative values", hu, ct_int16, hu),
        ("CT unsigned 12 bits, intercept -1024", hu, ct_u12, u12.astype(np.float64) - 1024),
        ("signed 12 bits stored, garbage in the 4 high bits", hu, s12_garbage, s12),
        ("MONOCHROME1 unsigned 12 bits", hu, mono1, u12),
        ("uint8", hu, uint8, u8),
    ]
    made = {}
    for name, raw, fn, truth in cases:
        d, dss = series(name.split()[0] + str(len(made)), raw, fn)
        made[name] = (d, dss, truth)
    # Compressed copies of the CT int16 series (negative values).
    src_d, src_dss, src_truth = made["CT int16 with negative values"]
    deflated = os.path.join(tmp, "px-deflated")
    for tool, name, opts in (("pydicom", "deflated (pydicom)", None), ("dcmcrle", "RLE (dcmcrle)", []),
                             ("dcmcjpeg", "JPEG lossless SV1 (dcmcjpeg)", ["+e1"]),
                             ("dcmcjpls", "JPEG-LS lossless (dcmcjpls)", ["+el"])):
        d = os.path.join(tmp, "px-" + tool)
        os.makedirs(d)
        err = ""
        copies = []
        for n, (path, ds) in enumerate(src_dss):
            out = os.path.join(d, f"{n:03d}.dcm")
            copies.append((out, ds))
            if tool == "pydicom":
                c = pydicom.dcmread(path)
                c.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
                c.save_as(out, enforce_file_format=True)
            else:
                p = run([tool] + opts + [path, out])
                err += p.stderr if p.returncode else ""
        if not check(f"{name}: made", not err, err):
            continue
        syntax = pydicom.dcmread(os.path.join(d, "000.dcm"), stop_before_pixels=True).file_meta.TransferSyntaxUID
        check(f"{name}: stored as {syntax.name}", syntax != ExplicitVRLittleEndian, syntax)
        made[name] = (d, copies, src_truth)
    for name, (d, dss, truth) in made.items():
        eng, err = engine_read(args, tmp, [d])
        if not check(f"pixels, {name}: the engine reads it", eng is not None, err):
            continue
        vol = to_dhw(eng)
        # pydicom decodes the compressed files with its pylibjpeg (JPEG),
        # pyjpegls (JPEG-LS) and own (RLE, deflate) decoders.
        ref = pydicom_values(dss)
        check(f"pixels, {name}: equal to pydicom's pixel_array * slope + intercept",
              vol.shape == ref.shape and np.array_equal(vol, ref),
              (vol.shape, ref.shape, np.abs(vol - ref).max() if vol.shape == ref.shape else ""))
        check(f"pixels, {name}: equal to the values written", np.array_equal(vol, truth.astype(np.float64)))
        s_arr, _ = sitk_read(d)
        how = "SimpleITK's"
        if name.startswith("MONOCHROME1"):
            # GDCM inverts MONOCHROME1 for display (2^BitsStored - 1 - v); the
            # engine keeps the modality values, as pydicom and PS3.3 C.11.1 do.
            s_arr, how = 4095 - s_arr, "SimpleITK's with GDCM's display inversion undone"
        check(f"pixels, {name}: equal to {how}", vol.shape == s_arr.shape and np.array_equal(vol, s_arr),
              (vol.shape, s_arr.shape, np.abs(vol - s_arr).max() if vol.shape == s_arr.shape else ""))


# ---- SEG Pixel Data at every frame size ---------------------------------------

# (rows, columns): rows * columns leaves each remainder mod 8 (0, 1, ..., 7),
# so frames start at every bit offset inside a byte.
SEG_SIZES = [(240, 240), (1, 9), (3, 6), (13, 7), (5, 4), (217, 181), (21, 22), (3, 5)]


def seg_decode(seg_path, source):
    """The SEG's frames decoded as the standard packs BINARY Pixel Data
    (PS3.5 8.1.1, CP 1132: one bit a pixel, frames concatenated without
    padding, least significant bit first), with numpy alone; each frame
    placed by its own functional groups (Referenced Segment Number; Image
    Position Patient matched to a source slice). Returns ({(segment, slice):
    (rows, cols) bool}, problems)."""
    ds = pydicom.dcmread(seg_path)
    R, C, F = int(ds.Rows), int(ds.Columns), int(ds.NumberOfFrames)
    nbytes = (F * R * C + 7) // 8
    problems = []
    if len(ds.PixelData) != nbytes + nbytes % 2:
        problems.append(f"{len(ds.PixelData)} bytes of Pixel Data for {F} frames of {R}x{C}")
    bits = np.unpackbits(np.frombuffer(ds.PixelData, np.uint8), bitorder="little")
    if bits.size < F * R * C:
        return {}, problems
    frames = bits[:F * R * C].reshape(F, R, C).astype(bool)
    positions = np.array([[float(v) for v in d.ImagePositionPatient] for _, d in source])
    out = {}
    for f, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        s = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        pos = np.array([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
        dist = np.linalg.norm(positions - pos, axis=1)
        k = int(np.argmin(dist))
        if dist[k] > 1e-3:
            problems.append(f"frame {f + 1} at {pos}: no source slice there")
        if (s, k) in out:
            problems.append(f"frame {f + 1}: segment {s} on slice {k} twice")
        out[(s, k)] = frames[f]
    return out, problems


def seg_equals(decoded, labels, n_seg):
    """Differences between the decoded frames and the (D, H, W) label map:
    every frame equal to its segment on its slice, every (segment, slice)
    present in the label map present as a frame."""
    bad = []
    for (s, k), m in decoded.items():
        want = labels[k] == s
        if m.shape != want.shape or not np.array_equal(m, want):
            bad.append(f"segment {s} slice {k}: {np.count_nonzero(m != want) if m.shape == want.shape else m.shape} pixels differ")
    for s in range(1, n_seg + 1):
        for k in range(labels.shape[0]):
            if np.any(labels[k] == s) and (s, k) not in decoded:
                bad.append(f"segment {s} slice {k}: present in the label map, no frame")
    return bad


def seg_labels(rng, shape, n_seg):
    """A label map whose segments lie on non-adjacent slices, in random
    pixels (about half of a slice), some slices empty."""
    D = shape[0]
    labels = np.zeros(shape, np.uint8)
    on = {1: [0, 3, D - 1]} if n_seg == 1 else {1: [1, 4], 2: [0, 2, D - 1], 3: [2, 5]}
    for s, slices in on.items():
        for k in slices:
            m = rng.random(shape[1:]) < 0.5
            m.flat[rng.integers(m.size)] = True  # never an empty frame
            labels[k][m & (labels[k] == 0)] = s
    return labels


def check_seg_packing(args, tmp, rng):
    """Label maps of each frame size through segmamba_dicom_write_seg (test
    helper dicom_dump --seg), one and three segments, axial and oblique;
    the SEG decoded by numpy (seg_decode) and by highdicom, voxel for voxel."""
    cards = {}
    for n_seg, names in ((1, ["background", "lesion"]), (3, ["background", "NCR", "ED", "ET"])):
        cards[n_seg] = os.path.join(tmp, f"seg-card-{n_seg}.json")
        with open(cards[n_seg], "w") as f:
            json.dump({"channels": [{"name": "t1", "normalization": "zscore"}], "spacing": "input",
                       "patch": [32, 32, 32], "labels": names, "output": "argmax"}, f)
    for n, (rows, cols) in enumerate(SEG_SIZES):
        n_seg = 1 if n % 2 else 3
        oblique = n in (2, 5)
        D = 7
        raw = rng.integers(0, 1000, (D, rows, cols)).astype(np.int16)
        R = rotation(rng) if oblique else np.eye(3)
        d = os.path.join(tmp, f"seg-{rows}x{cols}")
        dss = write_series(d, raw, (1.3, 0.9, 0.7), R, np.array([-12.5, 30.0, 4.0]), None, n == 3, rng)
        dss.sort(key=lambda x: float(np.dot(np.array(x[1].ImagePositionPatient, float), R[:, 2])))
        labels = seg_labels(rng, (D, rows, cols), n_seg)
        lpath = os.path.join(tmp, f"seg-{rows}x{cols}.npy")
        np.save(lpath, labels)
        out = os.path.join(tmp, f"seg-{rows}x{cols}.dcm")
        what = (f"SEG of {rows}x{cols} frames ({rows * cols % 8} bits past a byte), {n_seg} "
                f"segment{'s' if n_seg > 1 else ''}{', oblique' if oblique else ''}")
        p = run([args.dump, "--seg", out, lpath, cards[n_seg], d])
        if not check(f"{what}: written", p.returncode == 0, p.stderr):
            continue
        decoded, problems = seg_decode(out, dss)
        bad = problems + seg_equals(decoded, labels, n_seg)
        check(f"{what}: every frame equals the label map (numpy decode, placed by its groups)",
              not bad, bad[:5])
        seg = hd.seg.segread(out)
        px = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=[ds.SOPInstanceUID for _, ds in dss],
            segment_numbers=list(range(1, n_seg + 1)), ignore_spatial_locations=False)
        want = np.stack([labels == s for s in range(1, n_seg + 1)], axis=-1)
        check(f"{what}: highdicom's per-voxel masks equal the label map",
              px.shape == want.shape and np.array_equal(px.astype(bool), want),
              (px.shape, want.shape, np.count_nonzero(px.astype(bool) != want) if px.shape == want.shape else ""))
        p = run(["dciodvfy", out])
        errors = [l for l in (p.stdout + p.stderr).splitlines() if l.startswith("Error")]
        check(f"{what}: dciodvfy reports no error", not errors, "\n".join(errors))
        # The same SEG made in memory (segmamba_dicom_encode_seg) from the
        # series read in memory, with chosen UIDs.
        mem = os.path.join(tmp, f"seg-{rows}x{cols}-memory.dcm")
        series_uid, instance_uid = generate_uid(), generate_uid()
        p = run([args.dump, "--memory-seg", mem, lpath, cards[n_seg], series_uid, instance_uid, d])
        if check(f"{what}: encoded in memory", p.returncode == 0, p.stderr):
            a, b = pydicom.dcmread(out), pydicom.dcmread(mem)
            same = {"series UID": b.SeriesInstanceUID == series_uid,
                    "instance UID": b.SOPInstanceUID == instance_uid,
                    "meta instance UID": b.file_meta.MediaStorageSOPInstanceUID == instance_uid,
                    "description": b.SeriesDescription == "SegMamba (in memory)",
                    "pixel data": a.PixelData == b.PixelData,
                    "frames": a.NumberOfFrames == b.NumberOfFrames,
                    "study": a.StudyInstanceUID == b.StudyInstanceUID,
                    "references": seg_references(a) == seg_references(b)}
            check(f"{what}, in memory: the given UIDs, the same frames and references",
                  all(same.values()), [k for k, v in same.items() if not v])
    for bad in ("1.02.3", "1..2", "1.2.", "x.1", "1." + "2" * 64):
        p = run([args.dump, "--memory-seg", os.path.join(tmp, "bad-uid.dcm"), lpath, cards[n_seg],
                 bad, generate_uid(), d])
        check(f"encode with Series Instance UID {bad[:20]!r}: refused as not a UID",
              p.returncode == 1 and "is not a DICOM UID" in p.stderr and
              not os.path.exists(os.path.join(tmp, "bad-uid.dcm")), p.stderr)


def check_seg_predict_sizes(args, tmp, rng):
    """predict --dicom-seg and predict --list --dicom-seg on series whose
    frames are not a whole number of bytes: the SEG equals the label map
    of the same run, voxel for voxel."""
    cases = []
    for shape in ((9, 21, 22), (6, 13, 7)):
        study, forf = generate_uid(), generate_uid()
        dirs = []
        for c in phantom.CHANNELS:
            raw = rng.integers(0, 1000, shape).astype(np.int16)
            d = os.path.join(tmp, f"odd-{shape[1]}x{shape[2]}", c)
            dss = write_series(d, raw, (1.0, 1.0, 1.0), np.eye(3), np.zeros(3), None, False, rng,
                               f"noise {c}", study, forf)
            dirs.append(d)
            if c == phantom.CHANNELS[0]:
                first = sorted(dss, key=lambda x: float(x[1].ImagePositionPatient[2]))
        cases.append((shape, dirs, first))
    base = [args.segmamba, "predict", "--model", args._model, "--card", args._card, "--no-tta",
            "--quiet", "--threads", "2"]
    maps = []
    for shape, dirs, first in cases:
        what = f"predict --dicom-seg on {shape[1]}x{shape[2]} frames"
        nii, dcm = (os.path.join(tmp, f"odd-{shape[1]}x{shape[2]}{e}") for e in (".nii.gz", ".dcm"))
        p = run(base + ["-i"] + dirs + ["-o", nii, "--dicom-seg", dcm])
        if not check(f"{what}: runs", p.returncode == 0, p.stderr):
            return
        labels = np.asarray(nib.load(nii).dataobj).transpose(2, 1, 0)
        maps.append(labels)
        decoded, problems = seg_decode(dcm, first)
        bad = problems + seg_equals(decoded, labels, 3)
        check(f"{what}: {len(decoded)} frames, each equal to the label map of the same run",
              not bad and len(np.unique(labels)) > 1, (bad[:5], np.unique(labels)))
    lst = os.path.join(tmp, "odd-cohort.csv")
    with open(lst, "w") as f:
        f.write("id," + ",".join(phantom.CHANNELS) + "\n")
        for n, (_, dirs, _) in enumerate(cases):
            f.write(f"odd{n}," + ",".join(dirs) + "\n")
    out_dir = os.path.join(tmp, "odd-cohort-out")
    p = run(base[:-3] + ["--quiet", "--list", lst, "--out-dir", out_dir, "--dicom-seg"])
    check("predict --list --dicom-seg on those series: runs", p.returncode == 0, p.stderr)
    for n, ((shape, _, first), labels) in enumerate(zip(cases, maps)):
        decoded, problems = seg_decode(os.path.join(out_dir, "dicom-seg", f"odd{n}.dcm"), first)
        bad = problems + seg_equals(decoded, labels, 3)
        check(f"predict --list --dicom-seg, {shape[1]}x{shape[2]} frames: the SEG equals the "
              "one-case label map", p.returncode == 0 and not bad, bad[:5])


CH2BET = "/usr/share/mricron/templates/ch2bet.nii.gz"  # Debian's mricron-data


def check_ch2bet(args, tmp, rng):
    """A real T1 MRI (the MNI single-subject brain, 181x217x181 at 1 mm) as a
    single-frame MR series, predict --dicom-seg with a one-channel model: its
    217x181 frames (39,277 bits) start inside bytes. Every frame of the SEG,
    decoded by numpy and by highdicom, equals the run's NIfTI label map."""
    img = nib.load(CH2BET)
    nii = os.path.join(tmp, "ch2bet.nii.gz")
    nib.Nifti1Image(np.asarray(img.dataobj).astype(np.int16), img.affine).to_filename(nii)
    dss = series_from_nifti(nii, os.path.join(tmp, "ch2bet"), rng, "ch2bet T1")
    model = os.path.join(tmp, "ch2bet-model")
    p = make_tiny_model(model, 1, 4, seed=3)
    if not check("ch2bet: a one-channel model made", p.returncode == 0, p.stderr[-500:]):
        return
    card = os.path.join(tmp, "ch2bet-card.json")
    with open(card, "w") as f:
        json.dump({"channels": [{"name": "t1", "normalization": "zscore"}], "spacing": [1, 1, 1],
                   "patch": [32, 32, 32], "nslices": [16, 8, 4, 2],
                   "labels": ["background", "NCR", "ED", "ET"], "output": "argmax"}, f)
    seg, labels_path = os.path.join(tmp, "ch2bet-seg.dcm"), os.path.join(tmp, "ch2bet-labels.nii.gz")
    p = run([args.segmamba, "predict", "--model", os.path.join(model, "model.safetensors"), "--card",
             card, "-i", os.path.join(tmp, "ch2bet"), "-o", labels_path, "--dicom-seg", seg, "--no-tta",
             "--quiet", "--threads", "2"])
    if not check("ch2bet: predict --dicom-seg on the series", p.returncode == 0, p.stderr):
        return
    labels = np.asarray(nib.load(labels_path).dataobj).transpose(2, 1, 0)
    first = sorted(dss, key=lambda x: float(x[1].ImagePositionPatient[2]))
    decoded, problems = seg_decode(seg, first)
    bad = problems + seg_equals(decoded, labels, 3)
    ds = pydicom.dcmread(seg, stop_before_pixels=True)
    check(f"ch2bet: all {len(decoded)} frames of {ds.Rows}x{ds.Columns} equal the label map "
          f"(numpy decode, placed by their groups)", not bad and len(decoded) > 2, bad[:5])
    px = hd.seg.segread(seg).get_pixels_by_source_instance(
        source_sop_instance_uids=[d.SOPInstanceUID for _, d in first], segment_numbers=[1, 2, 3])
    want = np.stack([labels == s for s in (1, 2, 3)], axis=-1)
    check("ch2bet: highdicom's per-voxel masks equal the label map",
          px.shape == want.shape and np.array_equal(px.astype(bool), want),
          np.count_nonzero(px.astype(bool) != want) if px.shape == want.shape else px.shape)


def bad_series(args, tmp, rng, corpus):
    raw = (rng.integers(0, 1000, (6, 15, 13))).astype(np.int16)
    cases = {}

    def fresh(name):
        d = os.path.join(tmp, "bad-" + name)
        dss = write_series(d, raw, (1.0, 1.0, 1.0), np.eye(3), np.zeros(3), None, False, rng,
                           names="ordered")
        return d, dss

    d, dss = fresh("missing")
    dss_missing = dss
    os.remove(dss[3][0])
    cases["a slice missing"] = (d, "uneven slice spacing: a gap of 2 mm between", dss[2][0], "(a slice missing?)")
    d, dss = fresh("duplicate")
    shutil.copy(dss[2][0], os.path.join(d, "copy-of-2"))
    cases["a slice duplicated"] = (d, "are at one position", dss[2][0], "a slice given twice?")
    d, dss = fresh("gap")
    for path, ds in dss[4:]:
        ds.ImagePositionPatient = [0.0, 0.0, float(ds.ImagePositionPatient[2]) + 0.5]
        ds.save_as(path, enforce_file_format=True)
    cases["an uneven gap"] = (d, "uneven slice spacing: a gap of 1.5 mm between", dss[3][0], "1 mm apart")
    d, dss = fresh("orientation")
    path, ds = dss[2]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 0.9950041652780258, 0.09983341664682815]
    ds.save_as(path, enforce_file_format=True)
    cases["mixed orientation"] = (d, "mixed orientations in one series", path, "")
    d, dss = fresh("jpeg2000")
    path, ds = dss[1]
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    cases["JPEG 2000 without a decoder"] = (d, "JPEG 2000", path, "which this build cannot decode")
    d, dss = fresh("truncated")
    path = dss[4][0]
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-100])
    cases["a truncated file"] = (d, path, "", "")
    d = os.path.join(tmp, "bad-dicomdir")
    os.makedirs(d)
    fs_dir = os.path.join(tmp, "fileset")
    fs = pydicom.fileset.FileSet()
    fs.add(fresh("for-dicomdir")[1][0][1])
    fs.write(fs_dir)
    shutil.copy(os.path.join(fs_dir, "DICOMDIR"), os.path.join(d, "DICOMDIR"))
    cases["a DICOMDIR only"] = (d, "no image series, only non-image objects (DICOMDIR x1)", "", "")
    d = os.path.join(tmp, "bad-notdicom")
    os.makedirs(d)
    open(os.path.join(d, "readme.txt"), "w").write("not DICOM\n")
    cases["no DICOM at all"] = (d, "no DICOM files", "", "")
    for name, (d, msg, names_file, extra) in cases.items():
        out = os.path.join(tmp, "bad-out.nii.gz")
        segp = os.path.join(tmp, "bad-out.dcm")
        p = run([args.segmamba, "predict", "--model", args._model, "--card", args._card, "-i", d, d, d, d,
                 "-o", out, "--dicom-seg", segp, "--quiet"])
        check(f"bad series, {name}: refused (exit {p.returncode}) with its message naming the file",
              p.returncode in (3, 4) and msg in p.stderr and names_file in p.stderr and extra in p.stderr,
              p.stderr)
        check(f"bad series, {name}: nothing written", not os.path.exists(out) and not os.path.exists(segp))
        q = run([args.dump, "--memory", out, d])
        mmsg = msg.replace("no DICOM files", "no DICOM objects")
        check(f"bad series, {name}, in memory: refused with the same message",
              q.returncode in (3, 4) and mmsg in q.stderr and names_file in q.stderr and
              extra in q.stderr, q.stderr)
        if name == "a slice missing":
            check("bad series, a slice missing, in memory: the SOP Instance UIDs around the gap",
                  all(f"(SOP Instance UID {dss_missing[k][1].SOPInstanceUID})" in q.stderr
                      for k in (2, 4)), q.stderr)
    if corpus:
        os.makedirs(corpus, exist_ok=True)
        for name, src in [("truncated.dcm", cases["a truncated file"][1]),
                          ("jpeg2000.dcm", cases["JPEG 2000 without a decoder"][2]),
                          ("mixed-orientation.dcm", cases["mixed orientation"][2])]:
            shutil.copy(src, os.path.join(corpus, name))
        shutil.copy(os.path.join(cases["a DICOMDIR only"][0], "DICOMDIR"), os.path.join(corpus, "DICOMDIR"))
        shutil.copy(dss[0][0], os.path.join(corpus, "one-slice.dcm"))
        small = raw[:3, :8, :8]
        sf = write_series(os.path.join(tmp, "corpus-mf"), small, (1.5, 0.9, 0.8), rotation(rng),
                          np.array([10.0, -20.0, 30.0]), (2.0, -3.0), False, rng)
        mf = os.path.join(tmp, "corpus-mf-out")
        write_multiframe(mf, sf)
        shutil.copy(os.path.join(mf, "multiframe.dcm"), os.path.join(corpus, "multiframe.dcm"))
        # fuzz_dicom_memory's inputs: a channel byte, then objects as a
        # 4-byte little-endian length and the bytes (fuzz/fuzz_dicom_memory.c).
        mem = os.path.join(os.path.dirname(os.path.abspath(corpus)), "dicom_memory")
        os.makedirs(mem, exist_ok=True)

        def records(name, first, paths):
            blob = bytes([first])
            for path in paths:
                data = open(path, "rb").read()
                blob += len(data).to_bytes(4, "little") + data
            open(os.path.join(mem, name), "wb").write(blob)

        tiny = [p for p, _ in sf]
        records("series-3-slices", 0, tiny)
        records("two-channels", 1, [p for p in tiny[:2] for _ in (0, 1)])
        records("multiframe", 0, [os.path.join(mf, "multiframe.dcm")])
        records("missing-slice", 0, [p for p, _ in dss_missing if os.path.exists(p)][:4])
        records("with-dicomdir", 0, tiny + [os.path.join(cases["a DICOMDIR only"][0], "DICOMDIR")])


def main(args):
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "little")
    print(f"seed {args.seed}", flush=True)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="segmamba-dicom-") as tmp:
        if args.ch2bet:
            if not os.path.exists(CH2BET):
                print(f"skip: {CH2BET} (Debian's mricron-data) is not installed")
                return 77
            check_ch2bet(args, tmp, rng)
            print(f"{results['passed']} passed, {results['failed']} failed in "
                  f"{time.perf_counter() - t0:.1f} s")
            return 1 if results["failed"] or not results["passed"] else 0
        check_geometry_cases(args, tmp, rng)
        args._model, args._card = check_predict_and_seg(args, tmp, rng) or (None, None)
        check_pixel_formats(args, tmp, rng)
        check_seg_packing(args, tmp, rng)
        if args._model:
            check_seg_predict_sizes(args, tmp, rng)
            bad_series(args, tmp, rng, args.write_corpus)
        check_memory_reads()
    print(f"{results['passed']} passed, {results['failed']} failed in {time.perf_counter() - t0:.1f} s")
    return 1 if results["failed"] or not results["passed"] else 0
