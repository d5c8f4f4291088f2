#!/usr/bin/env python3
"""Runs the segmamba CLI on a SegMamba test case and compares its logits with
the PyTorch reference's.

A case is a folder written by tests/reference/gen_case.py (model files,
input.npy, expected.npy, case.json). With --config, a fresh case is generated
first with a random seed (printed, so a failure can be reproduced), so that
nothing is tuned to a fixed file; with --fixture, a committed case is used.
Every model file found (model.pt, model_wrapped.pt, model.safetensors) is run
through every requested convolution backend.

Exit status: 0 all passed, 1 a comparison failed, 77 (meson's "skipped")
when a fresh case is requested and torch is not installed, or when
--precision-floor is given and the engine fell back to fp32 on every run.
"""
import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))

from compare import compare, error_ratio  # noqa: E402
from host_exe import host_command  # noqa: E402


def generate(args, out_dir):
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is not installed: cannot generate a fresh case (skipped)")
        sys.exit(77)
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    cmd = [sys.executable, os.path.join(HERE, "reference", "gen_case.py"),
           "--config", args.config, "--out", out_dir, "--seed", str(seed),
           "--threads", str(args.threads)]
    if args.shape:
        cmd += ["--shape", args.shape]
    else:
        cmd += ["--size", str(args.size)]
    if args.fue:
        cmd.append("--fue")
    if args.mamba_type:
        cmd += ["--mamba-type", args.mamba_type]
    if args.family:
        cmd += ["--family", args.family]
    if args.dtype:
        cmd += ["--dtype", args.dtype]
    if not args.no_truth:
        cmd.append("--truth")
    print("generating:", " ".join(cmd), flush=True)
    t0 = time.time()
    # meson test sets MALLOC_PERTURB_, which is worth having for the engine
    # (it runs below with it) but makes glibc fill each of PyTorch's large
    # allocations: the reference then runs several times slower.
    env = dict(os.environ, MALLOC_PERTURB_="0")
    subprocess.run(cmd, check=True, env=env)
    print(f"generated in {time.time() - t0:.1f} s", flush=True)


def with_case(args, run, gen_args=None):
    """run(args, case_dir) on --fixture, or on a case generated (with
    gen_args, default args) into --keep or a temporary folder."""
    gen_args = gen_args or args
    if args.fixture:
        return run(args, args.fixture)
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        generate(gen_args, args.keep)
        return run(args, args.keep)
    with tempfile.TemporaryDirectory() as case_dir:
        generate(gen_args, case_dir)
        return run(args, case_dir)


def run_case(args, case_dir):
    import numpy as np

    with open(os.path.join(case_dir, "case.json")) as f:
        case = json.load(f)
    expected = np.load(os.path.join(case_dir, "expected.npy"))
    # The float64 answer where the case has one (compare()): a committed
    # fixture has none, and --no-truth skips it where it costs too much.
    truth_path = os.path.join(case_dir, "truth.npy")
    truth = np.load(truth_path) if os.path.exists(truth_path) else None
    nslices = ",".join(str(s) for s in case["nslices"])
    files = args.files.split(",") if args.files else ("model.pt", "model_wrapped.pt",
                                                       "model.safetensors")
    models = [m for m in files if os.path.exists(os.path.join(case_dir, m))]
    if not models:
        print(f"{case_dir}: no model file")
        return 1
    # Every model file on each --conv backend; the first file also on each
    # --strict-conv backend, within the strict limits; each at every --scan
    # level given.
    runs = [(model, conv, args.rel, args.argmax) for model in models
            for conv in args.conv.split(",")]
    if args.strict_conv:
        runs += [(models[0], conv, args.strict_rel, args.strict_argmax)
                 for conv in args.strict_conv.split(",")]
    scans = args.scan.split(",") if args.scan else [None]
    failures = skipped = 0
    with tempfile.TemporaryDirectory() as tmp:
        for (model, conv, rel, argmax), scan in ((r, s) for r in runs for s in scans):
            def forward(precision, out):
                cmd = host_command(args.segmamba) + [
                    "forward", "--model", os.path.join(case_dir, model),
                    "--input", os.path.join(case_dir, "input.npy"), "--output", out,
                    "--conv", conv, "--nslices", nslices, "--threads", str(args.threads)]
                if case.get("fue"):
                    cmd.append("--fue")
                if scan:
                    cmd += ["--scan", scan]
                if precision:
                    cmd += ["--precision", precision]
                return subprocess.run(cmd, capture_output=True, text=True)

            out = os.path.join(tmp, "logits.npy")
            proc = forward(args.precision, out)
            label = f"{model} conv={conv}" + (f" scan={scan}" if scan else "")
            if proc.returncode != 0:
                print(f"FAIL {label}: exit {proc.returncode}: {proc.stderr.strip()}")
                failures += 1
                continue
            got = np.load(out)
            ok, report = compare(expected, got, rel, argmax, truth)
            level = re.search(r"kernels (\w+)", proc.stderr)
            level = level.group(1) if level else "not reported"
            if args.expect_isa and level != args.expect_isa:
                ok = False
                report += f"; kernel level {level}, expected {args.expect_isa}"
            fell_back = False
            if args.precision_floor is not None:
                fell_back, note = precision_ran(args, expected, got, proc.stderr, forward,
                                                os.path.join(tmp, "fp32.npy"))
                ok = ok and note.startswith("ok")
                report += "\n" + note
            verdict = "skip" if ok and fell_back else "ok  " if ok else "FAIL"
            print(f"{verdict} {label}: {report} [{proc.stderr.strip()}]", flush=True)
            failures += not ok
            skipped += ok and fell_back
    if failures:
        return 1
    if skipped == len(runs) * len(scans):
        print(f"skipped: --precision {args.precision} fell back to fp32 on every run")
        return 77
    return 0


# cli_precision_notice (src/cli/common.c): a --precision the model cannot run
# is replaced by fp32 and the CLI says so on stderr.
FALLBACK_NOTICE = "; running fp32"


def precision_ran(args, expected, got, stderr, forward, fp32_out):
    """--precision-floor: runs forward("fp32", fp32_out), the same run at
    fp32, and returns (fell_back, note), the note starting with "ok" or
    "FAIL". A run with the fallback notice must equal the fp32 run bit for bit
    (the caller then skips it); any other must be further from the reference
    than --precision-floor times the fp32 run, or the lower precision did
    not run."""
    import numpy as np

    proc = forward("fp32", fp32_out)
    if proc.returncode != 0:
        return False, f"FAIL: the fp32 run: exit {proc.returncode}: {proc.stderr.strip()}"
    fp32 = np.load(fp32_out)
    if FALLBACK_NOTICE in stderr:
        if fp32.shape == got.shape and fp32.tobytes() == got.tobytes():
            return True, (f"ok: --precision {args.precision} fell back to fp32 (the engine's "
                          "notice) and the output is the fp32 run's bit for bit")
        return True, (f"FAIL: --precision {args.precision} fell back to fp32 (the engine's "
                      "notice) but the output is not the fp32 run's")
    r, r32 = error_ratio(expected, got), error_ratio(expected, fp32)
    above = r > args.precision_floor * r32
    return False, (f"{'ok' if above else 'FAIL'}: --precision {args.precision} ratio {r:.3g}, "
                   f"fp32 run {r32:.3g}: {r / r32 if r32 else float('inf'):.3g}x, "
                   f"{'above' if above else 'NOT above'} the floor of {args.precision_floor:g}x"
                   + ("" if above else f": {args.precision} did not run"))


def case_arguments(description):
    """The parser options every model-case driver shares: the executable,
    where the case comes from, how a fresh one is made, and the limits."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--segmamba", required=True, help="path of the segmamba executable")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--fixture", help="a committed case folder")
    src.add_argument("--config", help="generate a fresh case: tiny, official, nondefault")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--shape", help="D,H,W instead of a cubic --size")
    ap.add_argument("--fue", action="store_true")
    ap.add_argument("--mamba-type", help="v3 (default), v2 or none: gen_case.py --mamba-type")
    ap.add_argument("--family", help="v1 (default) or v2: gen_case.py --family")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--rel", type=float, default=1e-3)
    ap.add_argument("--argmax", type=float, default=0.999)
    ap.add_argument("--keep", help="generate into this folder and keep it")
    ap.add_argument("--no-truth", action="store_true",
                    help="generate no float64 answer (truth.npy): compare with the float32 "
                         "reference alone (for large cases, where float64 takes 3-7x as long)")
    return ap


# The CPU flags each x86 kernel level needs, as simd/x86/cpu.c tests them
# (Linux lists a flag only where the OS saves its registers).
CPU_FLAGS = {"avx2": ["avx", "fma", "avx2"], "avx512": ["avx", "fma", "avx2", "avx512f", "avx512dq"]}


def cpu_promises(level):
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((l.split(":", 1)[1].split() for l in f if l.startswith("flags")), [])
    except OSError:
        return False
    return all(flag in flags for flag in CPU_FLAGS[level])


def main():
    ap = case_arguments(__doc__.splitlines()[0])
    ap.add_argument("--dtype", help="f32, f16 or bf16 safetensors")
    ap.add_argument("--conv", default="onednn,blas,ref", help="comma-separated backends")
    ap.add_argument("--strict-conv", help="comma-separated backends run on the first model "
                    "file within --strict-rel and --strict-argmax")
    ap.add_argument("--strict-rel", type=float, default=1e-4)
    ap.add_argument("--strict-argmax", type=float, default=0.9999)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scan", help="kernel level passed to segmamba forward --scan; a "
                    "comma-separated list runs each")
    ap.add_argument("--precision", help="passed to segmamba forward --precision")
    ap.add_argument("--precision-floor", type=float,
                    help="with --precision: each run must be further from the reference "
                    "(max|err|/max|ref|) than this many times the same run at fp32, or the "
                    "lower precision did not run; a run the engine says fell back to fp32 "
                    "must equal the fp32 run bit for bit and is skipped (exit 77 when all are)")
    ap.add_argument("--expect-isa", help="fail unless segmamba forward reports this kernel level")
    ap.add_argument("--expect-cpu-isa", choices=list(CPU_FLAGS),
                    help="on x86-64: --expect-isa this level where /proc/cpuinfo promises it, "
                    "else skip (exit 77)")
    ap.add_argument("--files", help="comma-separated model files of the case to run (default "
                    "model.pt, model_wrapped.pt, model.safetensors: each that exists)")
    args = ap.parse_args()
    if args.precision_floor is not None and args.precision in (None, "fp32"):
        ap.error("--precision-floor needs a --precision other than fp32")
    if args.expect_cpu_isa:
        if not cpu_promises(args.expect_cpu_isa):
            print(f"skip: /proc/cpuinfo does not promise {args.expect_cpu_isa} "
                  f"({' '.join(CPU_FLAGS[args.expect_cpu_isa])})")
            return 77
        args.expect_isa = args.expect_cpu_isa
    return with_case(args, run_case)


if __name__ == "__main__":
    sys.exit(main())
