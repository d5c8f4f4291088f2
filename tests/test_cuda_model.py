#!/usr/bin/env python3
"""Runs a SegMamba case through `segmamba forward` on the CUDA backend and on
the CPU backend and compares the logits.

The parity criterion is the GPU's logits against the CPU's: max|err| <= 1e-3
max|ref| and argmax agreement >= 99.9% (--rel, --argmax). The GPU's logits
must also meet it against the PyTorch reference's (expected.npy), as the CPU's
do. A batch of two volumes (the case's input and its mirror image) then runs
in one call, as the sliding windows of `predict` do, and each must match the
CPU on that volume alone.

A case is a committed fixture (--fixture) or generated fresh with a random
seed (--config, printed; tests/reference/gen_case.py, needs torch).
Exit status: 0 passed, 1 failed, 77 (meson's "skipped") without a usable
CUDA device, or without torch for a fresh case.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))
sys.path.insert(0, HERE)

from compare import compare  # noqa: E402
from model_case import case_arguments, with_case  # noqa: E402


def cuda_device(exe):
    """The GPU's description from `segmamba version`, or None and why."""
    out = subprocess.run([exe, "version"], capture_output=True, text=True, check=True).stdout
    line = next((l for l in out.splitlines() if l.startswith("CUDA backend:")),
                "CUDA backend: not reported")
    if "; device: " in line:
        return line.split("; device: ", 1)[1], line
    return None, line


def forward(args, case, model, inp, out, backend):
    cmd = [args.segmamba, "forward", "--model", model, "--input", inp, "--output", out,
           "--backend", backend, "--nslices", ",".join(str(s) for s in case["nslices"])]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if case.get("fue"):
        cmd.append("--fue")
    if backend == "cuda" and args.precision:
        cmd += ["--precision", args.precision]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"FAIL {backend} forward: exit {proc.returncode}: {proc.stderr.strip()}")
        return None
    print(f"     {proc.stderr.strip()}", flush=True)
    return out


def check(label, ref, act, args):
    ok, report = compare(ref, act, args.rel, args.argmax)
    print(f"{'ok  ' if ok else 'FAIL'} {label}: {report}".replace("\n", "; "), flush=True)
    return ok


def run_case(args, case_dir):
    import numpy as np

    with open(os.path.join(case_dir, "case.json")) as f:
        case = json.load(f)
    model = next((os.path.join(case_dir, m) for m in ("model.safetensors", "model.pt")
                  if os.path.exists(os.path.join(case_dir, m))), None)
    if not model:
        print(f"{case_dir}: no model file")
        return 1
    x = np.load(os.path.join(case_dir, "input.npy"))
    if x.ndim == 4:
        x = x[None]
    expected = np.load(os.path.join(case_dir, "expected.npy")).reshape((1, -1) + x.shape[2:])
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        path = lambda name: os.path.join(tmp, name)  # noqa: E731
        mirrored = np.ascontiguousarray(x[:, :, ::-1, :, ::-1])
        np.save(path("x.npy"), x)
        np.save(path("mirrored.npy"), mirrored)
        np.save(path("batch.npy"), np.concatenate([x, mirrored]))
        runs = {name: forward(args, case, model, path(inp), path(name + ".npy"), backend)
                for name, inp, backend in (("cpu", "x.npy", "cpu"), ("cuda", "x.npy", "cuda"),
                                           ("cpu_mirrored", "mirrored.npy", "cpu"),
                                           ("cuda_batch", "batch.npy", "cuda"))}
        if None in runs.values():
            return 1
        y = {name: np.load(p) for name, p in runs.items()}
        ok &= check("cuda vs cpu", y["cpu"], y["cuda"], args)
        ok &= check("cuda vs pytorch", expected, y["cuda"], args)
        ok &= check("cpu vs pytorch", expected, y["cpu"], args)
        ok &= check("cuda batch[0] vs cpu", y["cpu"], y["cuda_batch"][:1], args)
        ok &= check("cuda batch[1] vs cpu on the mirrored input", y["cpu_mirrored"],
                    y["cuda_batch"][1:], args)
        same = np.array_equal(y["cuda_batch"][:1], y["cuda"])
        print(f"     batch[0] {'is' if same else 'is not'} bitwise equal to the single run")
    return 0 if ok else 1


def main():
    ap = case_arguments(__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    ap.add_argument("--precision", help="passed to the CUDA forward: fp32 (default) or tf32")
    args = ap.parse_args()
    # generate()'s settings: float32 weights, the reference on these threads,
    # no float64 answer (run_case compares with the float32 reference)
    gen = argparse.Namespace(**vars(args), dtype=None)
    gen.threads = args.threads or os.cpu_count()
    gen.no_truth = True

    device, line = cuda_device(args.segmamba)
    if device is None:
        print(f"skipped: no usable CUDA device ({line})")
        return 77
    print(f"device: {device}", flush=True)
    return with_case(args, run_case, gen)


if __name__ == "__main__":
    sys.exit(main())
