#!/usr/bin/python3
"""Evaluates the shipped demo model on held-out phantoms through the C engine,
and checks the engine's label maps against the PyTorch reference pipeline.

    /usr/bin/python3 tools/eval_demo.py [--model models/demo/segmamba_demo.safetensors]
        [--segmamba build/segmamba] [--cases 10] [--ref-cases 2] [--seed 2024]
        [--no-tta] [--threads 2] [--work DIR] [--json FILE]

For each of --cases phantoms (tools/phantom.py, seed stream --seed, disjoint
from training's and validation's) written as BraTS-named NIfTI files:
`segmamba predict` (NIfTI in, label map out), then `segmamba metrics --json`
against the phantom's ground truth (Dice per BraTS region WT, TC, ET). For
the first --ref-cases of them, the reference pipeline
(tests/reference/pipeline_ref.py, with the reference model's own chunked
scan) segments the same files, and the fraction of voxels where both label
maps agree is reported.

Passes (exit 0) when the mean over cases of the mean Dice over WT/TC/ET is
>= --min-dice (0.85) and every compared case agrees on >= --min-agree
(99.9%) of its voxels; exit 1 otherwise.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import phantom  # noqa: E402
import pipeline_ref  # noqa: E402
import train_demo  # noqa: E402


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        raise SystemExit(f"{' '.join(cmd)}: exit {p.returncode}")
    return p


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "demo", "segmamba_demo.safetensors"))
    ap.add_argument("--segmamba", default=os.path.join(ROOT, "build", "segmamba"))
    ap.add_argument("--cases", type=int, default=10)
    ap.add_argument("--ref-cases", type=int, default=2,
                    help="cases also run through the PyTorch reference pipeline (slow: minutes each)")
    ap.add_argument("--seed", type=int, default=train_demo.EVAL_SEED)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--no-tta", action="store_true", help="one pass instead of 8 mirrored ones (both sides)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=None, help="keep the cases and outputs here (default: a temporary dir)")
    ap.add_argument("--json", default=None, help="write the results as JSON")
    ap.add_argument("--min-dice", type=float, default=0.85)
    ap.add_argument("--min-agree", type=float, default=0.999)
    args = ap.parse_args(argv)
    if args.seed in (train_demo.TRAIN_SEED, train_demo.VAL_SEED):
        ap.error(f"--seed {args.seed} is a training/validation seed stream")

    torch.set_num_threads(args.threads)
    model, card = train_demo.load_model(args.model, scan="chunked")
    print(f"eval_demo: {args.model}: {card['patch']} patch, nslices {card['nslices']}; "
          f"{args.cases} phantoms (seed {args.seed}), TTA {'off' if args.no_tta else 'on'}; "
          f"reference pipeline on {min(args.ref_cases, args.cases)}", flush=True)
    tmp = None
    work = args.work
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="sm_eval_demo_")
        work = tmp.name
    os.makedirs(work, exist_ok=True)
    results = []
    for k in range(args.cases):
        i = args.start + k
        case = phantom.generate(args.seed, i)
        paths = phantom.write_case(work, case)
        seg_out = os.path.join(paths["dir"], f"{case['id']}-pred.nii.gz")
        met_json = os.path.join(paths["dir"], f"{case['id']}-metrics.json")
        cmd = [args.segmamba, "predict", "--model", args.model, "-i", *paths["channels"], "-o", seg_out,
               "--threads", str(args.threads), "--quiet"]
        if args.no_tta:
            cmd.append("--no-tta")
        t0 = time.perf_counter()
        run(cmd)
        t_engine = time.perf_counter() - t0
        run([args.segmamba, "metrics", "--pred", seg_out, "--ref", paths["seg"], "--json", met_json])
        with open(met_json) as f:
            met = json.load(f)
        dice = {r["name"]: r["dice"] for r in met["regions"]}
        hd95 = {r["name"]: r["hd95"] for r in met["regions"]}
        r = dict(id=case["id"], dice=dice, hd95=hd95, mean_dice=met["mean_dice"],
                 engine_seconds=round(t_engine, 2))
        line = (f"{case['id']}: Dice WT {dice['WT']:.4f} TC {dice['TC']:.4f} ET {dice['ET']:.4f} "
                f"mean {met['mean_dice']:.4f}  HD95 mean {met['mean_hd95']:.2f} mm  engine {t_engine:.1f} s")
        if k < args.ref_cases:
            image = np.stack([phantom.load_volume(p)[0] for p in paths["channels"]])
            pred, _ = phantom.load_volume(seg_out)
            spacing = phantom.load_volume(paths["channels"][0])[1]
            t0 = time.perf_counter()
            ref = pipeline_ref.predict(model, image, spacing, card, tta=not args.no_tta)
            t_ref = time.perf_counter() - t0
            agree = float((pred.astype(np.uint8) == ref["labels"]).mean())
            r.update(agreement=agree, reference_seconds=round(t_ref, 1))
            line += f"  | PyTorch labels agree {agree:.5%} ({t_ref:.0f} s)"
        print(line, flush=True)
        results.append(r)
    if tmp is not None:
        tmp.cleanup()

    mean = {n: float(np.mean([r["dice"][n] for r in results])) for n in ("WT", "TC", "ET")}
    overall = float(np.mean([r["mean_dice"] for r in results]))
    agrees = [r["agreement"] for r in results if "agreement" in r]
    ok_dice = overall >= args.min_dice
    ok_agree = all(a >= args.min_agree for a in agrees)
    print(f"mean Dice over {len(results)} held-out phantoms: WT {mean['WT']:.4f} TC {mean['TC']:.4f} "
          f"ET {mean['ET']:.4f}; mean {overall:.4f} (target >= {args.min_dice}): {'ok' if ok_dice else 'FAIL'}")
    if agrees:
        print(f"engine vs PyTorch reference labels: min agreement {min(agrees):.5%} over {len(agrees)} cases "
              f"(target >= {args.min_agree:.1%}): {'ok' if ok_agree else 'FAIL'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(model=args.model, seed=args.seed, tta=not args.no_tta, cases=results,
                           mean_dice=overall, mean_dice_regions=mean,
                           min_agreement=min(agrees) if agrees else None,
                           passed=bool(ok_dice and ok_agree)), f, indent=1)
    return 0 if ok_dice and ok_agree else 1


if __name__ == "__main__":
    sys.exit(main())
