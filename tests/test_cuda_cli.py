#!/usr/bin/env python3
"""--backend on forward, predict and bench, in any build.

Without a usable CUDA device (CUDA not built in, or built without a GPU or
driver, as `segmamba version` reports), `--backend cuda` must fail with exit
code 8 (backend) and say why, before any output is written. With one (a GPU,
or the -Demulate_cuda build), forward and bench must run on it; their logits
are compared with the CPU's by test_cuda_model.py. Everywhere: an unknown
backend is a usage error (1), and --precision tf32 on the CPU runs fp32 and
says so. Needs numpy and nibabel.
"""
import argparse
import json
import os
import sys
import tempfile

import nibabel as nib
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_cli import FIXTURE, check, expect, results, run  # noqa: E402


def nslices():
    with open(os.path.join(FIXTURE, "case.json")) as f:
        return ",".join(str(s) for s in json.load(f)["nslices"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segmamba", required=True)
    exe = ap.parse_args().segmamba

    rc, out, _ = run(exe, "version")
    line = next((l for l in out.splitlines() if l.startswith("CUDA backend: ")), None)
    check("version reports the CUDA backend", rc == 0 and line is not None, out)
    device = line is not None and "; device: " in line
    print(f"     {line}")

    model = os.path.join(FIXTURE, "model.safetensors")
    with tempfile.TemporaryDirectory() as tmp:
        logits = os.path.join(tmp, "y.npy")
        fwd = ["forward", "--model", model, "--input", os.path.join(FIXTURE, "input.npy"),
               "--output", logits, "--nslices", nslices(), "--threads", "2"]
        expect(exe, "forward --backend gpu", fwd + ["--backend", "gpu"], 1, "--backend wants")
        expect(exe, "bench --backend gpu", ["bench", "--model", model, "--backend", "gpu"], 1,
               "--backend wants")
        expect(exe, "forward --precision tf32 on the CPU", fwd + ["--precision", "tf32"], 0,
               "tf32 is for the CUDA backend")
        os.remove(logits)
        bench = ["bench", "--model", model, "--size", "32", "--repeat", "1", "--threads", "2"]

        # predict reads its inputs before it opens the model: four channels as
        # the default (BraTS) card names them.
        inputs = []
        for name in ("t2w", "t2f", "t1n", "t1c"):
            inputs.append(os.path.join(tmp, f"case-{name}.nii.gz"))
            vol = np.random.default_rng(1).uniform(0, 1, (16, 16, 16)).astype(np.float32)
            nib.save(nib.Nifti1Image(vol, np.eye(4)), inputs[-1])
        seg = os.path.join(tmp, "seg.nii.gz")
        predict = ["predict", "--model", model, "-i", *inputs, "-o", seg, "--backend", "cuda"]
        expect(exe, "predict --backend gpu", predict[:-1] + ["gpu"], 1, "--backend wants")

        if not device:
            expect(exe, "forward --backend cuda without a device", fwd + ["--backend", "cuda"],
                   8, "CUDA")
            check("no logits written", not os.path.exists(logits))
            expect(exe, "bench --backend cuda without a device", bench + ["--backend", "cuda"],
                   8, "CUDA")
            expect(exe, "predict --backend cuda without a device", predict, 8, "CUDA")
            check("no label map written", not os.path.exists(seg))
        else:
            expect(exe, "forward --backend cuda", fwd + ["--backend", "cuda"], 0, "CUDA fp32")
            check("logits written", os.path.exists(logits))
            expect(exe, "bench --backend cuda", bench + ["--backend", "cuda"], 0, "on CUDA",
                   "stdout")
            expect(exe, "bench side by side", bench, 0, "the GPU is", "stdout")
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
