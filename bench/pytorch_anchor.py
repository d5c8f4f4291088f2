#!/usr/bin/python3
"""The engine against PyTorch on the CPU, measured in one invocation.

    /usr/bin/python3 bench/pytorch_anchor.py --model M.pt --size 128 --threads 2

Runs `segmamba bench` on the model, then the same model and weights in
PyTorch (the reference implementation of tests/reference/, Debian's
python3-torch) with the same thread count, two ways:
  - scan-free: every selective scan replaced by a stand-in that costs nothing
    (returns zeros), a lower bound for any PyTorch CPU run of SegMamba;
  - reference scan: the sequential recurrence, one position at a time
    (--no-reference-scan skips it: at 128^3 it takes minutes).
and prints the times and the engine's ratio to each. The configuration comes
from `segmamba info --json`, so both sides run the same network.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
import safetensors_read  # noqa: E402
import segmamba_ref  # noqa: E402


def load_state_dict(path):
    if path.endswith(".safetensors"):
        arrays, _ = safetensors_read.read_safetensors(path)
        return {k: torch.from_numpy(v) for k, v in arrays.items()}
    sd = torch.load(path, map_location="cpu")
    if isinstance(sd, dict) and set(sd) in ({"module"}, {"state_dict"}):
        sd = next(iter(sd.values()))
    return {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}


def free_scan(u, delta, A, B, C):
    return torch.zeros_like(u)


def time_pytorch(cfg, sd, size, threads, scan):
    torch.set_num_threads(threads)
    model = segmamba_ref.SegMambaRef(
        cfg["in_chans"], cfg["out_chans"], cfg["depths"], cfg["feat_size"], cfg["hidden_size"],
        [size >> (i + 1) for i in range(4)], d_state=cfg["d_state"], d_conv=cfg["d_conv"],
        expand=cfg["expand"], scan="loop")
    model.load_state_dict(sd)
    model.eval()
    for mod in model.modules():
        if isinstance(mod, segmamba_ref.Mamba):
            mod.scan = free_scan if scan == "free" else segmamba_ref.scan_loop
    x = torch.from_numpy(np.random.RandomState(0).randn(
        1, cfg["in_chans"], size, size, size).astype(np.float32))
    with torch.no_grad():
        t0 = time.perf_counter()
        model(x)
        return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--segmamba", default=os.path.join(HERE, "..", "build", "segmamba"))
    ap.add_argument("--repeat", type=int, default=1, help="engine forwards to time (median)")
    ap.add_argument("--no-reference-scan", action="store_true")
    ap.add_argument("--json", help="write all figures here")
    args = ap.parse_args()

    info = json.loads(subprocess.run([args.segmamba, "info", args.model, "--json"],
                                     check=True, capture_output=True, text=True).stdout)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "engine.json")
        subprocess.run([args.segmamba, "bench", "--model", args.model, "--size", str(args.size),
                        "--threads", str(args.threads), "--repeat", str(args.repeat),
                        "--json", out], check=True)
        with open(out) as f:
            engine = json.load(f)

    sd = load_state_dict(args.model)
    results = {"engine": engine, "size": args.size, "threads": args.threads,
               "torch_version": torch.__version__}
    print(f"pytorch {torch.__version__}, {args.threads} threads, 1x{info['in_chans']}x{args.size}^3")
    t_free = time_pytorch(info, sd, args.size, args.threads, "free")
    results["pytorch_scan_free_seconds"] = t_free
    results["pytorch_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"pytorch, scan free      {t_free:9.2f} s  (peak RSS {results['pytorch_peak_rss_mib']:.0f} MiB)")
    if not args.no_reference_scan:
        t_ref = time_pytorch(info, sd, args.size, args.threads, "loop")
        results["pytorch_reference_scan_seconds"] = t_ref
        print(f"pytorch, reference scan {t_ref:9.2f} s")
    e = engine["seconds"]
    print(f"segmamba                {e:9.2f} s  (peak RSS {engine['peak_rss_mib']:.0f} MiB)")
    print(f"engine / pytorch scan-free      = {e / t_free:.3f}")
    if "pytorch_reference_scan_seconds" in results:
        print(f"engine / pytorch reference scan = {e / results['pytorch_reference_scan_seconds']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
