"""Reference counts and leaks: 1000 small forwards (and predicts) do not
grow the resident memory, nor the references to the input."""
import gc
import os
import sys

import numpy as np

import segmamba
from conftest import FIXTURE


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def test_forward_loop_does_not_grow():
    x = np.random.default_rng(5).standard_normal((2, 16, 16, 16)).astype(np.float32)
    with segmamba.Model(os.path.join(FIXTURE, "model.safetensors"), nslices=(8, 4, 2, 1),
                        threads=1) as m:
        for _ in range(100):  # warm-up: arena, allocator pools
            m.forward(x)
        gc.collect()
        refs, objects, before = sys.getrefcount(x), len(gc.get_objects()), rss_kib()
        for _ in range(1000):
            y = m.forward(x)
        del y
        gc.collect()
        after = rss_kib()
        print(f"RSS {before} -> {after} KiB over 1000 forwards; "
              f"a leaked output would be {3 * 16 ** 3 * 4 * 1000 // 1024} KiB")
        assert sys.getrefcount(x) == refs
        assert len(gc.get_objects()) <= objects + 10
        assert after - before < 1024


def test_predict_loop_does_not_grow():
    card = {"channels": [{"name": "a", "normalization": "zscore"},
                         {"name": "b", "normalization": "zscore"}],
            "spacing": "input", "patch": [16, 16, 16], "nslices": [8, 4, 2, 1],
            "labels": ["background", "x", "y"], "output": "argmax"}
    vol = np.random.default_rng(6).standard_normal((2, 16, 16, 16)).astype(np.float32) + 3
    with segmamba.Model(os.path.join(FIXTURE, "model.safetensors"), card=card, threads=1) as m:
        want = ("labels", "probabilities", "uncertainty")
        for _ in range(20):
            m.predict(vol, (1, 1, 1), tta=False, outputs=want)
        gc.collect()
        before = rss_kib()
        for _ in range(200):
            r = m.predict(vol, (1, 1, 1), tta=False, outputs=want)
        del r
        gc.collect()
        after = rss_kib()
        print(f"RSS {before} -> {after} KiB over 200 predicts")
        assert after - before < 1024
