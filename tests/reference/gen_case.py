#!/usr/bin/python3
"""Generate a SegMamba test case: random weights, an input and the reference logits.

    /usr/bin/python3 tests/reference/gen_case.py --config tiny --size 32 --seed 7 --out DIR

DIR receives model.pt, model_wrapped.pt ({"module": ...} with "module."
prefixes), model.safetensors (config in __metadata__["config"]), input.npy
(1, C, D, H, W), expected.npy (1, out, D, H, W), case.json and, with
--intermediates, inter/<name>.npy. The expected logits are computed with the
weights as stored in the requested dtype.

Every parameter is randomised (a default init would hide bugs: unit A, unit
D, zero biases) at magnitudes that keep activations O(1) through the network;
the output bias is then fitted to the data so that every class wins somewhere.
"""

import argparse
import copy
import json
import math
import os
import re
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_writer import DTYPES, write_safetensors  # noqa: E402
from segmamba_ref import FAMILIES, MAMBA_TYPES, SegMambaRef  # noqa: E402

CONFIGS = {
    # Every code path at a size whose fixture stays small: cin != cout and
    # cin == cout ResBlocks, dt_rank 1 (C <= 16) and 2 (C = 18), widths that
    # are and are not multiples of a SIMD vector.
    "tiny": dict(in_chans=2, out_chans=3, depths=[1, 1, 1, 1], feat_size=[4, 8, 12, 18],
                 hidden_size=22),
    # Widths unlike the official ones (dt_rank 1, 2, 3, 5; hidden < feat3), one
    # stage with two layers, a single input channel.
    "nondefault": dict(in_chans=1, out_chans=3, depths=[1, 2, 1, 1], feat_size=[16, 32, 40, 72],
                       hidden_size=56),
    "official": dict(in_chans=4, out_chans=4, depths=[2, 2, 2, 2], feat_size=[48, 96, 192, 384],
                     hidden_size=768),
}
# SegMamba-V2 (spec 7.2; --family v2): the squeeze-excitation needs c >= 8.
CONFIGS_V2 = {
    # SE widths 1, 2, 3, 5; dt_rank 2 and 3 on the Mamba stages; one stage with
    # two LargeKernelConv blocks and two V2 Mamba layers; cin != cout downsampling.
    "tiny": dict(in_chans=2, out_chans=3, depths=[1, 1, 2, 1], feat_size=[8, 16, 24, 40],
                 hidden_size=44),
    "official": dict(in_chans=4, out_chans=4, depths=[2, 2, 2, 2], feat_size=[48, 96, 192, 384],
                     hidden_size=768),
}
MAMBA_DEFAULTS = dict(d_state=16, d_conv=4, expand=2)
CONFIG_KEYS = {"in_chans", "out_chans", "depths", "feat_size", "hidden_size", *MAMBA_DEFAULTS}
DTYPE_FLAGS = {"f32": "F32", "f16": "F16", "bf16": "BF16"}

# Softplus(dt_proj bias) is drawn log-uniformly in this range, so the scan
# sees both nearly-frozen and fast-decaying channels.
DELTA_RANGE = (1e-3, 0.5)
# dt_proj.weight scale relative to a variance-preserving init: keeps the
# data-dependent part of delta a modest factor around the bias.
DT_WEIGHT_GAIN = 0.5


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", choices=[*CONFIGS, "custom"], default="tiny")
    p.add_argument("--custom-json", metavar="JSON|PATH",
                   help="config for --config custom: a JSON object or a file holding one "
                        f"(keys: {', '.join(sorted(CONFIG_KEYS))})")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--size", type=int, help="cubic input side (multiple of 16; default 32)")
    size.add_argument("--shape", help="D,H,W (each a multiple of 16)")
    p.add_argument("--nslices", help="a,b,c,d (default: the stage depths D/2, D/4, D/8, D/16)")
    p.add_argument("--fue", action="store_true", help="enable feature-level uncertainty estimation")
    p.add_argument("--mamba-type", choices=list(MAMBA_TYPES), default="v3",
                   help="bimamba type of the Mamba layers (spec 7.1): v3 forward, backward and "
                        "slice scans (default); v2 forward and backward; none forward only")
    p.add_argument("--family", choices=list(FAMILIES), default="v1",
                   help="v1: SegMamba (default); v2: SegMamba-V2 (spec 7.2; configs tiny, "
                        "official or custom; --mamba-type does not apply)")
    p.add_argument("--seed", type=int, help="default: random (printed)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--intermediates", action="store_true", help="also write inter/<name>.npy")
    p.add_argument("--dtype", choices=list(DTYPE_FLAGS), default="f32",
                   help="storage dtype of model.safetensors (the reference uses the stored values)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--truth", action="store_true",
                   help="also write truth.npy: the same network, weights and input in float64, "
                        "the exact answer the float32 expected.npy approximates")
    args = p.parse_args(argv)

    if (args.config == "custom") != (args.custom_json is not None):
        p.error("--custom-json goes with --config custom, and only with it")
    if args.shape:
        try:
            args.shape = tuple(int(v) for v in args.shape.split(","))
        except ValueError:
            p.error(f"--shape: expected D,H,W, got {args.shape!r}")
        if len(args.shape) != 3:
            p.error(f"--shape: expected D,H,W, got {args.shape!r}")
    else:
        args.shape = (args.size or 32,) * 3
    if any(n <= 0 or n % 16 for n in args.shape):
        p.error(f"every side must be a positive multiple of 16, got {args.shape}")
    if args.nslices:
        try:
            args.nslices = [int(v) for v in args.nslices.split(",")]
        except ValueError:
            p.error(f"--nslices: expected a,b,c,d, got {args.nslices!r}")
        if len(args.nslices) != 4:
            p.error(f"--nslices: expected 4 values, got {args.nslices}")
    else:
        args.nslices = [args.shape[0] >> (i + 1) for i in range(4)]
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    return args


def load_config(args):
    if args.config != "custom":
        presets = CONFIGS if args.family == "v1" else CONFIGS_V2
        if args.config not in presets:
            sys.exit(f"gen_case: no preset {args.config!r} for family {args.family}")
        return {**presets[args.config], **MAMBA_DEFAULTS}
    text = args.custom_json
    if not text.lstrip().startswith("{"):
        with open(text) as f:
            text = f.read()
    cfg = json.loads(text)
    unknown = set(cfg) - CONFIG_KEYS
    missing = CONFIG_KEYS - set(MAMBA_DEFAULTS) - set(cfg)
    if unknown or missing:
        sys.exit(f"gen_case: custom config: unknown keys {sorted(unknown)}, missing {sorted(missing)}")
    return {**MAMBA_DEFAULTS, **cfg}


def _uniform(shape, bound, gen):
    return (torch.rand(shape, generator=gen) * 2 - 1) * bound


@torch.no_grad()
def randomize_(model, gen):
    """Draw every parameter; weights are variance preserving for unit inputs."""
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if re.fullmatch(r"A(_[bs])?_log", leaf):
            p.copy_(torch.log(torch.rand(p.shape, generator=gen) * 15.5 + 0.5))  # A in [-16, -0.5]
        elif re.fullmatch(r"D(_[bs])?", leaf):
            p.copy_(torch.randn(p.shape, generator=gen))
        elif re.search(r"\.dt_proj(_[bs])?\.bias$", name):
            lo, hi = (math.log(v) for v in DELTA_RANGE)
            delta = torch.exp(torch.rand(p.shape, generator=gen) * (hi - lo) + lo)
            p.copy_(delta + torch.log(-torch.expm1(-delta)))  # inverse softplus
        elif re.search(r"\.dt_proj(_[bs])?\.weight$", name):
            p.copy_(_uniform(p.shape, DT_WEIGHT_GAIN * math.sqrt(3 / p.shape[1]), gen))
        elif name.endswith(".norm.weight"):  # the Mamba layers' LayerNorm
            p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
        elif name.endswith(".norm.bias"):
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        elif leaf == "bias":
            p.copy_(0.2 * torch.randn(p.shape, generator=gen))
        else:
            # A k2 s2 transposed conv feeds each output voxel one tap per input
            # channel: its fan-in is cin, not what torch infers from the shape.
            fan_in = p.shape[0] if ".transp_conv." in name else p[0].numel()
            p.copy_(_uniform(p.shape, math.sqrt(3 / fan_in), gen))


@torch.no_grad()
def round_to_storage_(model, dtype):
    """Replace each parameter by its value after a round trip through dtype."""
    tdt = DTYPES[dtype][0]
    for p in model.parameters():
        p.copy_(p.to(tdt).float())


@torch.no_grad()
def run_balanced(model, x, dtype, gen, inter):
    """Forward pass whose output bias is chosen from the data.

    The decoder's last features are mostly positive (LeakyReLU), so random
    output weights give each class a constant offset and one class tends to
    win everywhere. The bias cancels each class's mean logit (plus a little
    noise), leaving the argmax to the spatially varying part. Returns logits
    computed with the bias as stored in dtype.
    """
    captured = []
    hook = model.out.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    try:
        model(x, inter)
    finally:
        hook.remove()
    feats = captured[0]
    conv = model.out.conv.conv
    mean_logit = F.conv3d(feats, conv.weight).mean(dim=(0, 2, 3, 4))
    bias = -mean_logit + 0.1 * torch.randn(mean_logit.shape, generator=gen)
    conv.bias.copy_(bias.to(DTYPES[dtype][0]).float())
    logits = model.out(feats)
    if inter is not None:
        inter["logits"] = logits
    return logits


def make_input(gen, chans, shape):
    """Per channel: three random low-frequency plane waves plus noise, standardised."""
    axes = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) / n for n in shape], indexing="ij")
    x = 0.5 * torch.randn(1, chans, *shape, generator=gen)
    for c in range(chans):
        for _ in range(3):
            k = (torch.rand(3, generator=gen) * 2 - 1) * 3  # up to 3 periods per axis
            phase = float(torch.rand(1, generator=gen)) * 2 * math.pi
            x[0, c] += torch.cos(2 * math.pi * sum(ki * a for ki, a in zip(k.tolist(), axes)) + phase)
    mean = x.mean(dim=(2, 3, 4), keepdim=True)
    std = x.std(dim=(2, 3, 4), keepdim=True, unbiased=False)
    return (x - mean) / std


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args)
    dtype = DTYPE_FLAGS[args.dtype]
    if args.family == "v2":
        args.mamba_type = "none"  # V2's stock Mamba: forward only
    print(f"gen_case: family {args.family}, config {args.config}, shape {args.shape}, nslices {args.nslices}, "
          f"fue {args.fue}, mamba {args.mamba_type}, dtype {args.dtype}, seed {args.seed}",
          flush=True)

    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(args.seed)
    try:
        model = SegMambaRef(**cfg, nslices=args.nslices, fue=args.fue,
                            mamba_type=args.mamba_type, family=args.family).eval()
        model.check_shape(args.shape)
    except (TypeError, ValueError) as e:
        sys.exit(f"gen_case: {e}")
    randomize_(model, gen)
    round_to_storage_(model, dtype)
    x = make_input(gen, cfg["in_chans"], args.shape)
    n_params = sum(p.numel() for p in model.parameters())
    t1 = time.perf_counter()

    inter = {} if args.intermediates else None
    logits = run_balanced(model, x, dtype, gen, inter)
    t2 = time.perf_counter()
    truth = None
    if args.truth:
        # The stored weights and the input widen to float64 exactly, so this
        # is the float32 forward's exact answer up to float64 rounding. A
        # copy: the model itself is saved below in float32.
        with torch.no_grad():
            truth = copy.deepcopy(model).double()(x.double(), None)
    t_truth = time.perf_counter()

    if not torch.isfinite(logits).all():
        sys.exit("gen_case: the logits contain NaN or Inf")
    hist = torch.bincount(logits.argmax(dim=1).flatten(), minlength=cfg["out_chans"]).tolist()
    print(f"gen_case: {n_params} parameters; logits std {logits.std().item():.3g}, "
          f"max |.| {logits.abs().max().item():.3g}; argmax histogram {hist}", flush=True)
    # One output has no argmax to spread (its label is the logit's sign).
    if cfg["out_chans"] > 1 and sum(n > 0 for n in hist) < 2:
        sys.exit("gen_case: degenerate case, the argmax is a single class; try another seed")

    os.makedirs(args.out, exist_ok=True)
    state = model.state_dict()
    torch.save(state, os.path.join(args.out, "model.pt"))
    torch.save({"module": {"module." + k: v for k, v in state.items()}},
               os.path.join(args.out, "model_wrapped.pt"))
    stored_cfg = {**cfg, "nslices": args.nslices, "fue": args.fue,
                  "mamba_type": args.mamba_type, "family": args.family}
    write_safetensors(os.path.join(args.out, "model.safetensors"), state, dtype,
                      {"format": "pt", "config": json.dumps(stored_cfg)})
    np.save(os.path.join(args.out, "input.npy"), x.numpy())
    np.save(os.path.join(args.out, "expected.npy"), logits.numpy())
    if truth is not None:
        np.save(os.path.join(args.out, "truth.npy"), truth.numpy())
    if inter is not None:
        os.makedirs(os.path.join(args.out, "inter"), exist_ok=True)
        for name, t in inter.items():
            np.save(os.path.join(args.out, "inter", name + ".npy"), t.numpy())
    t3 = time.perf_counter()

    case = {
        "config": cfg, "preset": args.config, "nslices": args.nslices, "fue": args.fue,
        "mamba_type": args.mamba_type, "family": args.family,
        "seed": args.seed, "shape": list(args.shape), "dtype": args.dtype,
        "n_params": n_params, "argmax_histogram": hist,
        "intermediates": sorted(inter) if inter is not None else [],
        "torch_version": torch.__version__, "threads": args.threads,
        "timings_s": {"build": round(t1 - t0, 3), "forward": round(t2 - t1, 3),
                      "truth": round(t_truth - t2, 3), "write": round(t3 - t_truth, 3)},
    }
    with open(os.path.join(args.out, "case.json"), "w") as f:
        json.dump(case, f, indent=1)
        f.write("\n")
    print(f"gen_case: wrote {args.out}; build {t1 - t0:.2f}s, forward {t2 - t1:.2f}s, "
          f"float64 forward {t_truth - t2:.2f}s, write {t3 - t_truth:.2f}s", flush=True)


if __name__ == "__main__":
    main()
