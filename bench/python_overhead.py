#!/usr/bin/env python3
"""The cost of a Python forward over a C API forward: in one run, 100
forwards of one 64^3 tiny model (tests/fixtures/tiny: 2 -> 3 channels) through
`segmamba bench` (the C API: segmamba_forward on a malloc'd buffer) and 100
through segmamba.Model.forward (a NumPy array in, a new array out), both on
the same threads, and the medians.

    python bench/python_overhead.py [--segmamba build/segmamba] [--threads 2] [--repeat 100]

Run it with a Python where `pip install .` put the package."""
import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np

import segmamba

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segmamba", default=os.path.join(ROOT, "build", "segmamba"))
    ap.add_argument("--model", default=os.path.join(ROOT, "tests", "fixtures", "tiny",
                                                    "model.safetensors"))
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=100)
    a = ap.parse_args()
    n = a.size
    nslices = tuple(n >> (i + 1) for i in range(4))  # what segmamba bench uses
    with tempfile.TemporaryDirectory() as tmp:
        js = os.path.join(tmp, "bench.json")
        subprocess.run([a.segmamba, "bench", "--model", a.model, "--size", str(n), "--threads",
                        str(a.threads), "--repeat", str(a.repeat), "--json", js],
                       check=True, capture_output=True)
        with open(js) as f:
            c_median = json.load(f)["seconds"]
    with segmamba.Model(a.model, threads=a.threads, nslices=nslices) as m:
        x = np.random.default_rng(0).uniform(-2, 2, (m.config["in_channels"], n, n, n))
        x = x.astype(np.float32)
        m.forward(x)  # warm-up, as the bench's
        times = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            m.forward(x)
            times.append(time.perf_counter() - t0)
    py_median = float(np.median(times))
    print(f"{a.repeat} forwards of {os.path.relpath(a.model, ROOT)} at {n}^3, {a.threads} threads")
    print(f"C API (segmamba bench)   median {c_median * 1e3:8.3f} ms")
    print(f"Python Model.forward     median {py_median * 1e3:8.3f} ms")
    print(f"overhead                 {1e3 * (py_median - c_median):+8.3f} ms "
          f"({100 * (py_median / c_median - 1):+.1f}%)")


if __name__ == "__main__":
    main()
