"""Threads: two models run at once from two Python threads give the serial
results bit for bit, and the GIL is released while the network runs."""
import os
import threading
import time

import numpy as np

import segmamba
from conftest import FIXTURE

MODEL = os.path.join(FIXTURE, "model.safetensors")
NSLICES = (32, 16, 8, 4)


def inputs(seed, n=3):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((2, 64, 64, 64)).astype(np.float32) for _ in range(n)]


def test_two_models_two_threads_equal_serial():
    # One thread each: the engine's thread count is process-wide, and the
    # logits depend on it in the last bits.
    segmamba.set_threads(1)
    try:
        work = [inputs(1), inputs(2)]
        models = [segmamba.Model(MODEL, nslices=NSLICES) for _ in range(2)]
        serial = [[m.forward(x) for x in xs] for m, xs in zip(models, work)]
        results = [None, None]
        errors = []

        def run(k):
            try:
                results[k] = [models[k].forward(x) for x in work[k]]
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        for k in range(2):
            for a, b in zip(results[k], serial[k]):
                assert np.array_equal(a, b)
        # One model shared by two threads: its forwards take turns.
        shared = [None, None]

        def run_shared(k):
            shared[k] = [models[0].forward(x) for x in work[0]]

        threads = [threading.Thread(target=run_shared, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for k in range(2):
            for a, b in zip(shared[k], serial[0]):
                assert np.array_equal(a, b)
        for m in models:
            m.close()
    finally:
        segmamba.set_threads(0)


def test_gil_released_during_forward():
    """While one thread is inside forward, the main thread keeps running
    Python code; with the GIL held it would wait for the whole forward."""
    x = inputs(3, 1)[0]
    with segmamba.Model(MODEL, nslices=NSLICES, threads=1) as m:
        m.forward(x)  # plan the arena first
        started, done = threading.Event(), threading.Event()
        took = []

        def run():
            started.set()
            t0 = time.perf_counter()
            m.forward(x)
            took.append(time.perf_counter() - t0)
            done.set()

        t = threading.Thread(target=run)
        t.start()
        started.wait()
        spins = 0
        while not done.is_set():
            spins += 1
        t.join()
    print(f"forward {took[0] * 1e3:.1f} ms, {spins} loop iterations meanwhile")
    assert took[0] > 0.02 and spins > 10000
