"""Model.predict against `segmamba predict` on the demo case (label for
label, probabilities bit for bit, the written file byte for byte), NIfTI
geometry, metrics against `segmamba metrics`, cancellation (a callback,
Ctrl-C in process and as a signal to a running script)."""
import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import segmamba
from conftest import DEMO_MODEL, ROOT, THREADS, run_cli


@pytest.fixture(scope="module")
def demo_cli(exe, demo_case, tmp_path_factory):
    """segmamba predict on the demo case, with TTA (the default)."""
    out = tmp_path_factory.mktemp("demo_cli")
    files = {k: str(out / f"{k}.nii.gz") for k in ("seg", "prob", "regions", "unc")}
    run_cli(exe, "predict", "--model", DEMO_MODEL, "-i", *demo_case["inputs"], "-o", files["seg"],
            "--probabilities", files["prob"], "--regions", files["regions"], "--uncertainty",
            files["unc"], "--threads", str(THREADS), "--quiet")
    return files


def test_predict_equals_cli(demo_case, demo_cli, tmp_path):
    img = segmamba.read_nifti(demo_case["inputs"])
    assert img.shape == (4, 80, 96, 96) and img.spacing == (1.0, 1.0, 1.0)
    with segmamba.Model(DEMO_MODEL, threads=THREADS) as m:
        r = m.predict(img, outputs=("labels", "probabilities", "regions", "uncertainty",
                                    "windows", "box"))
    cli = {k: segmamba.read_nifti(v).array for k, v in demo_cli.items()}
    hist = np.bincount(r["labels"].ravel(), minlength=4)
    print(f"{r['windows']} windows, box {r['box']}, labels {hist.tolist()}")
    assert r["windows"] == 4 * 8 and (hist[1:] > 0).all()
    assert r["labels"].dtype == np.uint8 and r["labels"].shape == (80, 96, 96)
    assert np.array_equal(r["labels"], cli["seg"][0].astype(np.uint8))
    assert np.array_equal(r["probabilities"], cli["prob"])
    assert np.array_equal(r["regions"], cli["regions"].astype(np.uint8))
    assert np.array_equal(r["uncertainty"], cli["unc"][0])
    # Written with the input's geometry: the same file as the CLI's.
    seg = tmp_path / "seg.nii.gz"
    segmamba.write_nifti(seg, r["labels"], like=img)
    with gzip.open(seg) as a, gzip.open(demo_cli["seg"]) as b:
        assert a.read() == b.read()
    back = segmamba.read_nifti(seg)
    assert np.array_equal(back.affine, img.affine) and back.spacing == img.spacing


def test_predict_array_and_options(demo_case):
    img = segmamba.read_nifti(demo_case["inputs"])
    with segmamba.Model(DEMO_MODEL, threads=THREADS) as m:
        a = m.predict(img, tta=False, outputs=("labels", "windows"))
        b = m.predict(np.array(img.array), spacing=img.spacing, tta=False,
                      outputs=("labels", "windows"))
        c = m.predict(img, tta=False, overlap=0, outputs=("windows",))
        with pytest.raises(segmamba.Error) as e:
            m.predict(img.array[:3], spacing=img.spacing)
        assert e.value.status == "E_ARG" and "has 3 channels" in str(e.value)
        with pytest.raises(segmamba.Error) as e:
            m.predict(img, outputs=("labels", "logits"))
        assert e.value.status == "E_ARG"
        bad = np.array(img.array)
        bad[2, 40, 50, 60] = np.inf
        with pytest.raises(segmamba.Error) as e:
            m.predict(bad, spacing=img.spacing)
        assert e.value.status == "E_UNSUPPORTED"
    assert np.array_equal(a["labels"], b["labels"]) and a["windows"] == b["windows"] == 4
    assert c["windows"] == 4  # 58x76x73 box, patch 64: the window grid does not overlap


def test_nifti_geometry(tmp_path):
    nib = pytest.importorskip("nibabel")
    aff = np.array([[-0.8, 0, 0, 12.5], [0, 0.9, 0.1, -30], [0, 0, 1.2, 4], [0, 0, 0, 1]])
    data = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)  # nibabel's (x, y, z)
    src = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(data, aff), src)
    img = segmamba.read_nifti(src)
    assert img.shape == (1, 7, 6, 5)  # (C, D, H, W) = (1, z, y, x)
    assert np.array_equal(img.array[0], data.transpose(2, 1, 0).astype(np.float32))
    assert np.allclose(img.affine, aff)
    out = tmp_path / "out.nii.gz"
    segmamba.write_nifti(out, (img.array[0] % 7).astype(np.uint8), like=src)
    back = nib.load(out)
    assert np.allclose(back.affine, aff) and back.get_data_dtype() == np.uint8
    assert np.array_equal(np.asarray(back.dataobj), data % 7)
    f = tmp_path / "f.nii"
    segmamba.write_nifti(f, img.array * 0.5, spacing=(2.0, 3.0, 4.0))
    back = nib.load(f)
    assert np.allclose(back.header.get_zooms(), (4.0, 3.0, 2.0))
    assert np.array_equal(np.asarray(back.dataobj), data * 0.5)
    with pytest.raises(segmamba.Error) as e:
        segmamba.write_nifti(out, np.zeros((3, 4, 5), np.uint8), like=img)
    assert e.value.status == "E_SHAPE"
    with pytest.raises(segmamba.Error) as e:
        segmamba.read_nifti(tmp_path / "absent.nii")
    assert e.value.status == "E_IO" and str(e.value).endswith("cannot open: No such file or directory")


def test_metrics_equal_cli(exe, demo_case, demo_cli, tmp_path):
    pred = segmamba.read_nifti(demo_cli["seg"])
    ref = segmamba.read_nifti(demo_case["seg"])
    js = tmp_path / "m.json"
    for regions, cli_labels in (("brats", "brats"), ([1, 2, 3], "1,2,3")):
        run_cli(exe, "metrics", "--pred", demo_cli["seg"], "--ref", demo_case["seg"], "--labels",
                cli_labels, "--json", str(js))
        with open(js) as f:
            want = json.load(f)
        got = segmamba.metrics(pred.array, ref.array, ref.spacing, regions=regions)
        print(got)
        names = [r["name"] for r in want["regions"]]
        assert list(got) == names
        for r in want["regions"]:
            assert got[r["name"]]["dice"] == pytest.approx(r["dice"], abs=1e-6)
            assert got[r["name"]]["hd95"] == pytest.approx(r["hd95"], abs=1e-6)
    empty = np.zeros((8, 8, 8), np.uint8)
    assert segmamba.metrics(empty, empty, (1, 1, 1))["ET"] == \
        {"dice": 0.0, "hd95": 50.0, "n_pred": 0, "n_ref": 0}
    assert segmamba.metrics(empty, empty, (1, 1, 1), empty_both_one=True)["ET"]["dice"] == 1.0


def test_cancel_from_callback_and_ctrl_c(demo_case):
    import _thread
    img = segmamba.read_nifti(demo_case["inputs"])
    seen = []
    with segmamba.Model(DEMO_MODEL, threads=THREADS) as m:
        with pytest.raises(segmamba.Error) as e:
            m.predict(img, tta=False,
                      progress=lambda done, total: seen.append((done, total)) or done == 3)
        assert e.value.status == "E_CANCELLED" and e.value.code == 9
        assert seen == [(1, 4), (2, 4), (3, 4)]
        seen.clear()

        def interrupt(done, total):
            seen.append(done)
            if done == 2:
                _thread.interrupt_main()  # what Ctrl-C does to the main thread

        with pytest.raises(KeyboardInterrupt):
            m.predict(img, tta=False, progress=interrupt)
        assert seen == [1, 2]
        # The model goes on working afterwards.
        assert m.predict(img, tta=False, outputs=("windows",))["windows"] == 4


def test_sigint_during_predict_writes_nothing(demo_case, tmp_path):
    """A script segmenting the demo case gets SIGINT (Ctrl-C) in the middle of
    predict: KeyboardInterrupt, no output file."""
    out = tmp_path / "seg.nii.gz"
    started = tmp_path / "started"
    script = textwrap.dedent(f"""
        import segmamba
        img = segmamba.read_nifti({demo_case['inputs']!r})
        m = segmamba.Model({DEMO_MODEL!r}, threads={THREADS})
        def progress(done, total):
            if done == 1:
                open({str(started)!r}, "w").close()
        try:
            r = m.predict(img, progress=progress)
            segmamba.write_nifti({str(out)!r}, r["labels"], like=img)
        except KeyboardInterrupt:
            print("KeyboardInterrupt")
            raise SystemExit(130)
        print("finished")
    """)
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    t0 = time.time()
    while not started.exists() and p.poll() is None and time.time() - t0 < 60:
        time.sleep(0.01)
    p.send_signal(signal.SIGINT)
    stdout, _ = p.communicate(timeout=60)
    print(stdout)
    assert p.returncode == 130 and stdout.strip() == "KeyboardInterrupt"
    assert not out.exists() and os.listdir(tmp_path) == ["started"]
