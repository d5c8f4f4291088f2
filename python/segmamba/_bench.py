"""python -m segmamba bench: `segmamba bench` from Python, through the
package's Model, so that a CPU-against-GPU comparison runs in the
researchers' own environment. The same figures, in the same words: median
forward, its breakdown by kind of work (3x3x3 layers apart), GFLOP/s
against the FMA peak measured in the same run, voxels/s, the activations'
arena and the peak RSS; with an engine built with CUDA on a machine with a
GPU, the CPU and the GPU side by side."""

import argparse
import json
import sys
import time

import numpy as np

from . import Model, _segmamba


def _peak_rss_mib():
    """This process's peak resident memory (VmHWM), as the CLI reads it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def run_backend(args, conv, backend, size, nslices, threads):
    """Loads the model, one warm-up and args.repeat timed forwards; the
    median run's figures."""
    own_peak = _reset_peak_rss()
    t0 = time.perf_counter()
    m = Model(args.model, threads=threads, conv=conv, nslices=nslices,
              precision=args.precision, backend=backend)
    load = time.perf_counter() - t0
    c = m.config
    rng = np.random.default_rng(0x2545F4914F6CDD1D)
    x = rng.uniform(-2.0, 2.0, (c["in_channels"], size, size, size)).astype(np.float32)
    y = np.empty((c["out_channels"], size, size, size), np.float32)
    runs = []
    name = "cuda" if backend == "cuda" else conv
    for run in range(-1, args.repeat):
        print(f"bench: {name} {'warm-up' if run < 0 else 'forward'} {run + 1}/{args.repeat}...",
              file=sys.stderr, flush=True)
        t = time.perf_counter()
        m.forward(x, out=y)
        dt = time.perf_counter() - t
        if run >= 0:
            runs.append((dt, m.profile))
    mt = float(np.median([r[0] for r in runs]))
    seconds, prof = min(runs, key=lambda r: abs(r[0] - mt))
    cfg = m.config
    m.close()
    return {"backend": backend, "conv": name, "config": cfg, "load_seconds": load,
            "seconds": seconds, "prof": prof, "peak_rss_mib": _peak_rss_mib(),
            "own_peak": own_peak, "arena_mib": cfg["arena_bytes"] / (1024.0 * 1024.0),
            "weights_mib": cfg["weight_bytes"] / (1024.0 * 1024.0)}


def print_run(r, model, size, nt, peak, with_model, device):
    c, p, t = r["config"], r["prof"], r["seconds"]
    gflops = p["flops"] / t * 1e-9
    if with_model:
        f = c["features"]
        print(f"model      {model}: {c['family']} (Mamba {c['mamba_type']}), "
              f"{c['in_channels']}->{c['out_channels']} channels, features "
              f"{f[0]},{f[1]},{f[2]},{f[3]}, {c['parameters']} parameters")
    cpu = r["backend"] == "cpu"
    if cpu:
        print(f"input      1x{c['in_channels']}x{size}^3, --conv {r['conv']}, "
              f"{'bf16' if c['precision'] == 'bf16' else 'fp32'} convolutions, {nt} threads, "
              f"scan {_segmamba.build_info()['isa']}")
    else:
        print(f"input      1x{c['in_channels']}x{size}^3 on CUDA ({device}), "
              f"{'tf32' if c['precision'] == 'tf32' else 'fp32'} GEMMs")
    print(f"load       {r['load_seconds']:.3f} s (reading, checking, preparing the weights)")
    print(f"forward    {t:.3f} s (the median of the runs; its breakdown:)")
    for k in ("conv", "scan", "norm", "other"):
        v = p["seconds_" + k]
        print(f"  {k:<6}   {v:8.3f} s  {100.0 * v / t:5.1f}%")
        if k == "conv" and cpu:
            v3 = p["seconds_conv3x3x3"]
            print(f"    3x3x3  {v3:8.3f} s  {100.0 * v3 / t:5.1f}%  (of conv: the 3x3x3 stride-1 "
                  "layers)")
    print(f"arithmetic {p['flops'] * 1e-9:.1f} GFLOP per forward, {gflops:.1f} GFLOP/s")
    if cpu:
        print(f"FMA peak   {peak:.1f} GFLOP/s measured ({_segmamba.build_info()['isa']}, {nt} "
              f"threads): forward at {100.0 * gflops / peak:.1f}% of peak")
    print(f"throughput {size ** 3 / t:.0f} voxels/s")
    if cpu:
        print(f"activations {r['arena_mib']:.0f} MiB (the arena the memory plan made for this "
              "size)")
        print(f"weights    {r['weights_mib']:.0f} MiB (resident: {c['parameters']} parameters in "
              "the layouts the backends keep)")
    print(f"peak RSS   {r['peak_rss_mib']:.0f} MiB "
          f"({'from loading to closing this model' if r['own_peak'] else 'of the whole process'})")


def ms_per_window(r, size):
    return 1e3 * r["seconds"] * 128.0 ** 3 / size ** 3


def main(argv):
    ap = argparse.ArgumentParser(
        prog="python -m segmamba bench",
        description="Times forward passes on a random (1, C, n, n, n) input, as `segmamba "
                    "bench` does, through the Python package (CPU, and the GPU too in an engine "
                    "built with CUDA on a machine with one).")
    ap.add_argument("model", help="checkpoint (.pt or .safetensors)")
    ap.add_argument("--size", type=int, default=128, help="cube side, a multiple of 16")
    ap.add_argument("--threads", type=int, default=0, help="threads (default: all cores)")
    ap.add_argument("--repeat", type=int, default=3, help="timed forwards after one warm-up")
    ap.add_argument("--conv", default="auto", help="convolution backend (segmamba help forward)")
    ap.add_argument("--backend", choices=("cpu", "cuda"),
                    help="one backend alone (default: the CPU, and the GPU when there is one)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "tf32"))
    ap.add_argument("--nslices", help="a,b,c,d (default n/2,n/4,n/8,n/16)")
    ap.add_argument("--json", help="also write the figures as JSON")
    a = ap.parse_args(argv)
    if a.size < 16 or a.size % 16 or a.repeat < 1:
        ap.error("--size wants a multiple of 16 and --repeat a positive integer")
    nslices = (tuple(int(v) for v in a.nslices.split(",")) if a.nslices
               else tuple(a.size >> (i + 1) for i in range(4)))
    nt = _segmamba.set_threads(a.threads)
    info = _segmamba.build_info()
    backends = [a.backend] if a.backend else ["cpu"] + (["cuda"] if info["cuda_device"] else [])
    peak = 0.0
    rows = []
    for b in backends:
        if b == "cpu":
            print(f"bench: measuring the FP32 FMA peak ({info['isa']}, {nt} threads)...",
                  file=sys.stderr, flush=True)
            peak = _segmamba.fma_peak_gflops(nt)
        rows.append(run_backend(a, a.conv, b, a.size, nslices, a.threads or None))
    for k, r in enumerate(rows):
        if k:
            print()
        print_run(r, a.model, a.size, nt, peak, k == 0, info["cuda_info"])
    if len(rows) == 2:
        print("\nbackend  forward    per 128^3 window  voxels/s")
        for r in rows:
            print(f"{r['backend']:<7}  {r['seconds']:7.3f} s  {ms_per_window(r, a.size):10.1f} ms"
                  f"     {a.size ** 3 / r['seconds']:.4g}")
        print(f"the GPU is {rows[0]['seconds'] / rows[1]['seconds']:.3g}x the CPU "
              f"({info['cuda_info']}; CPU: {nt} threads)")
    if a.json:
        def figures(r):
            p, t = r["prof"], r["seconds"]
            return {"backend": r["backend"], "conv": r["conv"], "load_seconds": r["load_seconds"],
                    "seconds": t, "seconds_conv": p["seconds_conv"],
                    "seconds_conv3x3x3": p["seconds_conv3x3x3"], "seconds_scan": p["seconds_scan"],
                    "seconds_norm": p["seconds_norm"], "seconds_other": p["seconds_other"],
                    "gflop": p["flops"] * 1e-9, "gflops": p["flops"] / t * 1e-9,
                    "voxels_per_second": a.size ** 3 / t,
                    "ms_per_128_window": ms_per_window(r, a.size),
                    "peak_rss_mib": r["peak_rss_mib"], "threads": nt,
                    "peak_gflops": peak if r["backend"] == "cpu" else None,
                    "activations_mib": r["arena_mib"] if r["backend"] == "cpu" else None,
                    "weights_mib": r["weights_mib"] if r["backend"] == "cpu" else None}
        out = {"model": a.model, "size": a.size, "repeat": a.repeat, **figures(rows[0])}
        if len(rows) == 2:
            out["cuda"] = figures(rows[1])
            out["cuda_speedup"] = rows[0]["seconds"] / rows[1]["seconds"]
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0
