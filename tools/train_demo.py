#!/usr/bin/python3
"""Trains the shipped demo SegMamba on BraTS-like phantoms (tools/phantom.py),
with PyTorch on the CPU, and writes it with its model card.

    /usr/bin/python3 tools/train_demo.py [--minutes 50] [--threads 2] [--seed 0]
        [--out models/demo/segmamba_demo.safetensors]

The model is the reference implementation (tests/reference/segmamba_ref.py,
official state_dict names) with reduced widths: feat 16,32,64,128, hidden
256, depths 2,2,2,2, in 4 (t2w t2f t1n t1c), out 4 (background NCR ED ET).
It is trained at the patch inference uses, 64^3, with nslices 32,16,8,4
(stage i of a 64^3 patch has side 32/2^i: the slice scan walks along D).

Data: a fresh phantom (training seed stream) every --reuse (2) steps,
preprocessed like the official pipeline (crop to the non-zero box,
per-channel z-score over the crop, zero padding to at least the patch),
then a random 64^3 patch, centred near a random tumour voxel with
probability --fg, and random flips along each axis. Loss: cross entropy +
soft Dice over the BraTS regions WT, TC, ET. AdamW, linear warm-up then
polynomial decay to 0 over the budget (time or --steps), gradient norm
clipped at 12.

Speed: the reference's chunked scan cannot be differentiated (autograd
refuses its in-place updates), so training swaps in `scan_autograd`: the
same recurrence with an explicit backward, evaluated as a two-level scan
(sqrt(L) positions per chunk, sequential in both levels, vectorised over
the other). The checkpoint is the same either way; tools/eval_demo.py
checks it with the reference's own scan. A step takes about 7.5 s on 2
cores, about half of it the stage-0 scans (32^3 tokens).

Every --val-minutes (and at the end) it runs the reference pipeline (no TTA)
on --val-cases held-out phantoms (validation seed stream), prints Dice for
WT/TC/ET, and writes the checkpoint (F16 safetensors with the card in
__metadata__["card"]); a resumable state goes to --state.

Reproducibility: seeds are fixed; with --steps N the run is deterministic
(on one machine and thread count); with only --minutes the number of steps,
and hence the result, depends on the machine's speed.
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import phantom  # noqa: E402
import pipeline_ref  # noqa: E402
import safetensors_read  # noqa: E402
import segmamba_ref  # noqa: E402
from safetensors_writer import write_safetensors  # noqa: E402
from segmamba_ref import SegMambaRef  # noqa: E402

TRAIN_SEED = 1      # phantom seed stream for training
VAL_SEED = 7        # held-out validation during training
EVAL_SEED = 2024    # held-out evaluation (tools/eval_demo.py) and the sample case

PATCH = 64
CONFIG = dict(in_chans=4, out_chans=4, depths=[2, 2, 2, 2], feat_size=[16, 32, 64, 128],
              hidden_size=256)


def nslices_for(patch):
    """Stage i of a cubic patch n has side n/2^(i+1): one slice per D position."""
    return [patch // 2 ** (i + 1) for i in range(4)]


def make_card(patch=PATCH):
    return {"channels": [{"name": c, "normalization": "zscore"} for c in phantom.CHANNELS],
            "spacing": [1.0, 1.0, 1.0], "patch": [patch] * 3, "nslices": nslices_for(patch),
            "fue": False, "labels": list(phantom.LABEL_NAMES), "output": "argmax"}


# --------------------------------------------------------------------------
# A differentiable selective scan, fast enough for training on the CPU.
# --------------------------------------------------------------------------

def _chunk_len(L):
    """A chunk length near sqrt(L) that divides L (no padding), if there is one."""
    r = int(math.isqrt(L))
    for t in range(r, max(1, r // 2) - 1, -1):
        if L % t == 0:
            return t, False
    return max(1, int(math.ceil(math.sqrt(L)))), True


def linear_scan(a, b, reverse=False):
    """All states of h_t = a_t * h_{t-1} + b_t along dim 0 (h_{-1} = 0), or with
    reverse=True of h_t = a_t * h_{t+1} + b_t (h_L = 0).

    Two levels: chunks of T ~ sqrt(L) positions are scanned from zero in a
    loop over T (vectorised over chunks and channels), then the chunk entry
    states are carried in a loop over chunks and added, scaled by the running
    products of a. About 2 sqrt(L) small vector steps in all."""
    L = a.shape[0]
    rest = a.shape[1:]
    a = a.reshape(L, -1)
    b = b.reshape(L, -1)
    M = a.shape[1]
    T, pad = _chunk_len(L)
    nc = -(-L // T)
    if pad and nc * T != L:
        extra = nc * T - L
        # zero padding on the side the scan ends on: it cannot reach real outputs
        a = F.pad(a, (0, 0, extra, 0) if reverse else (0, 0, 0, extra))
        b = F.pad(b, (0, 0, extra, 0) if reverse else (0, 0, 0, extra))
    a3 = a.view(nc, T, M)
    b3 = b.view(nc, T, M)
    hl = torch.empty(T, nc, M, dtype=a.dtype)  # chunk-local states, position-major
    p = torch.empty(T, nc, M, dtype=a.dtype)   # running products of a inside a chunk
    first, last, step = (T - 1, 0, -1) if reverse else (0, T - 1, 1)
    hl[first] = b3[:, first]
    p[first] = a3[:, first]
    for t in range(first + step, last + step, step):
        torch.addcmul(b3[:, t], a3[:, t], hl[t - step], out=hl[t])
        torch.mul(a3[:, t], p[t - step], out=p[t])
    h = hl.transpose(0, 1)
    if nc > 1:
        entry = torch.empty(nc, M, dtype=a.dtype)  # state entering each chunk
        out_h, out_p = hl[last], p[last]
        if reverse:
            entry[nc - 1] = 0
            for c in range(nc - 2, -1, -1):
                torch.addcmul(out_h[c + 1], out_p[c + 1], entry[c + 1], out=entry[c])
        else:
            entry[0] = 0
            for c in range(1, nc):
                torch.addcmul(out_h[c - 1], out_p[c - 1], entry[c - 1], out=entry[c])
        h = torch.addcmul(h, p.transpose(0, 1), entry[:, None, :])
    else:
        h = h.contiguous()
    h = h.reshape(nc * T, M)
    if nc * T != L:
        h = h[nc * T - L:] if reverse else h[:L]
    return h.reshape(L, *rest)


class ScanFn(torch.autograd.Function):
    """y[d,l] = sum_n C[n,l] h_l[d,n], h_l = exp(delta A) h_{l-1} + delta B u
    (spec section 2; the D*u skip and the z gate are the caller's).
    u, delta (d, L); A (d, N); B, C (N, L)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C):
        dt = delta.t().contiguous()  # (L, d)
        decay = torch.exp_(dt[:, :, None] * A[None])  # (L, d, N)
        inp = (dt * u.t())[:, :, None] * B.t()[:, None, :]
        h = linear_scan(decay, inp)
        ctx.save_for_backward(u, delta, A, B, C, h)
        return (h * C.t()[:, None, :]).sum(-1).t()

    @staticmethod
    def backward(ctx, gy):
        u, delta, A, B, C, h = ctx.saved_tensors
        L = h.shape[0]
        dt = delta.t().contiguous()
        gyt = gy.t().contiguous()
        g_c = (h * gyt[:, :, None]).sum(1).t()
        direct = gyt[:, :, None] * C.t()[:, None, :]  # dy_l/dh_l
        # g_l = direct_l + a_{l+1} g_{l+1}: a reverse scan with the next decay
        nxt = torch.empty_like(h)
        torch.exp(dt[1:, :, None] * A[None], out=nxt[:L - 1])
        nxt[L - 1] = 0
        g = linear_scan(nxt, direct, reverse=True)
        del direct
        # d/d(delta*A) at l: g_l * h_{l-1} * a_l = g_l * h_{l-1} * nxt_{l-1} (0 at l = 0)
        g_log = g[1:] * h[:-1]
        g_log *= nxt[:L - 1]
        del nxt
        g_a = (g_log * dt[1:, :, None]).sum(0)
        gb = (g * B.t()[:, None, :]).sum(-1)  # (L, d): sum_n g B
        g_delta = u * gb.t()
        g_delta[:, 1:] += (g_log * A[None]).sum(-1).t()
        g_u = delta * gb.t()
        g_b = (g * (dt * u.t())[:, :, None]).sum(1).t()
        return g_u, g_delta, g_a, g_b, g_c


def scan_autograd(u, delta, A, B, C):
    return ScanFn.apply(u, delta, A, B, C)


def use_fast_scan(model):
    for mod in model.modules():
        if isinstance(mod, segmamba_ref.Mamba):
            mod.scan = scan_autograd
    return model


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------

def init_mamba(model, seed, dt_min=1e-3, dt_max=0.1):
    """Mamba's usual initialisation (A = -(1..N), D = 1, dt in [dt_min, dt_max]
    log-uniform through the dt_proj bias), for every direction."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if not isinstance(mod, segmamba_ref.Mamba):
                continue
            di, n, r = mod.d_inner, mod.d_state, mod.dt_rank
            for s in segmamba_ref.DIRECTIONS:
                getattr(mod, f"A{s}_log").copy_(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(di, 1))
                getattr(mod, f"D{s}").fill_(1.0)
                dtp = getattr(mod, f"dt_proj{s}")
                std = r ** -0.5
                dtp.weight.uniform_(-std, std, generator=g)
                dt = torch.exp(torch.rand(di, generator=g) * (math.log(dt_max) - math.log(dt_min))
                               + math.log(dt_min)).clamp(min=1e-4)
                dtp.bias.copy_(dt + torch.log(-torch.expm1(-dt)))


def build_model(config=CONFIG, nslices=None, patch=PATCH):
    return SegMambaRef(nslices=nslices or nslices_for(patch), **config)


def forward_train(model, x):
    """SegMambaRef.forward without its no_grad (FUE off)."""
    skips = model.vit(x, None)
    enc = [model.encoder1(x), model.encoder2(skips[0]), model.encoder3(skips[1]),
           model.encoder4(skips[2])]
    d = model.encoder5(skips[3])
    for k, up in ((5, model.decoder5), (4, model.decoder4), (3, model.decoder3), (2, model.decoder2)):
        d = up(d, enc[k - 2])
    return model.out(model.decoder1(d))


def config_from_state(sd):
    """The SegMambaRef config a state_dict implies (shapes, as the engine infers it)."""
    depths = [len({k.split(".")[3] for k in sd if k.startswith(f"vit.stages.{i}.")}) for i in range(4)]
    feat = [sd["vit.downsample_layers.0.0.weight"].shape[0]] + \
        [sd[f"vit.downsample_layers.{i}.1.weight"].shape[0] for i in range(1, 4)]
    return dict(in_chans=sd["vit.downsample_layers.0.0.weight"].shape[1],
                out_chans=sd["out.conv.conv.weight"].shape[0], depths=depths, feat_size=feat,
                hidden_size=sd["encoder5.layer.conv1.conv.weight"].shape[0],
                d_state=sd["vit.stages.0.0.mamba.A_log"].shape[1],
                d_conv=sd["vit.stages.0.0.mamba.conv1d.weight"].shape[2],
                expand=sd["vit.stages.0.0.mamba.in_proj.weight"].shape[0] // (2 * feat[0]))


# --------------------------------------------------------------------------
# safetensors in and out
# --------------------------------------------------------------------------

def read_safetensors(path):
    """({name: float32 tensor}, metadata) of a safetensors file."""
    arrays, meta = safetensors_read.read_safetensors(path)
    return {k: torch.from_numpy(v) for k, v in arrays.items()}, meta


def load_model(path, scan="chunked"):
    """SegMambaRef from a demo safetensors file; (model, card)."""
    sd, meta = read_safetensors(path)
    card = json.loads(meta["card"])
    model = SegMambaRef(nslices=card["nslices"], scan=scan, **config_from_state(sd))
    model.load_state_dict(sd)
    model.eval()
    return model, card


def save_checkpoint(model, path, card, info, dtype="F16"):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    sd = {k: v.detach().float() for k, v in model.state_dict().items()}
    write_safetensors(tmp, sd, dtype=dtype,
                      metadata={"card": json.dumps(card), "training": json.dumps(info)})
    os.replace(tmp, path)


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------

def preprocess(image, seg, card):
    """The official preprocessing: crop to the non-zero box, z-score per channel."""
    box = pipeline_ref.nonzero_box(image)
    sl = tuple(slice(lo, hi) for lo, hi in box)
    crop = image[(slice(None),) + sl]
    x = np.stack([pipeline_ref.normalize(crop[c], card["channels"][c]) for c in range(crop.shape[0])])
    return x, seg[sl]


def sample_patch(rng, x, seg, patch, fg):
    """A random patch (zero padding where the crop is smaller), near a tumour
    voxel with probability fg, randomly flipped along each axis."""
    pads = [(max(patch - n, 0) // 2, max(patch - n, 0) - max(patch - n, 0) // 2) for n in seg.shape]
    if any(p != (0, 0) for p in pads):
        x = np.pad(x, [(0, 0)] + pads)
        seg = np.pad(seg, pads)
    shape = seg.shape
    if rng.random() < fg and seg.any():
        fgv = np.flatnonzero(seg)
        c = np.unravel_index(fgv[rng.integers(len(fgv))], shape)
        start = [int(np.clip(ci - patch // 2 + rng.integers(-patch // 4, patch // 4 + 1), 0, n - patch))
                 for ci, n in zip(c, shape)]
    else:
        start = [int(rng.integers(0, n - patch + 1)) for n in shape]
    sl = tuple(slice(s, s + patch) for s in start)
    xp, sp = x[(slice(None),) + sl], seg[sl]
    for ax in range(3):
        if rng.random() < 0.5:
            xp, sp = np.flip(xp, ax + 1), np.flip(sp, ax)
    return np.ascontiguousarray(xp), np.ascontiguousarray(sp)


def regions_of(labels):
    """BraTS regions (WT, TC, ET) as boolean masks of a label map."""
    return [(labels >= 1) & (labels <= 3), (labels == 1) | (labels == 3), labels == 3]


def loss_fn(logits, target):
    """Cross entropy + (1 - mean soft Dice over WT, TC, ET)."""
    ce = F.cross_entropy(logits, target)
    p = torch.softmax(logits, dim=1)[0]
    t = target[0]
    preds = [1 - p[0], p[1] + p[3], p[3]]
    dices = []
    for pr, gt in zip(preds, regions_of(t)):
        gt = gt.float()
        dices.append((2 * (pr * gt).sum() + 1) / (pr.sum() + gt.sum() + 1))
    return ce + 1 - torch.stack(dices).mean(), ce.item()


def dice_scores(pred, ref):
    """Official rule: a region empty in either map scores 0."""
    out = []
    for p, r in zip(regions_of(pred), regions_of(ref)):
        if not p.any() or not r.any():
            out.append(0.0)
        else:
            out.append(2.0 * float((p & r).sum()) / float(p.sum() + r.sum()))
    return out


def validate(model, cases, card):
    model.eval()
    scores = []
    for case in cases:
        res = pipeline_ref.predict(model, case["image"], case["spacing"], card, tta=False)
        scores.append(dice_scores(res["labels"], case["seg"]))
    model.train()
    return np.array(scores).mean(axis=0)


# --------------------------------------------------------------------------
# Training loop
# --------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "demo", "segmamba_demo.safetensors"))
    ap.add_argument("--state", default=os.path.join(ROOT, "build", "train_demo", "state.pt"),
                    help="resumable training state (default build/train_demo/state.pt)")
    ap.add_argument("--resume", action="store_true", help="continue from --state")
    ap.add_argument("--minutes", type=float, default=50.0, help="wall-clock budget (default 50)")
    ap.add_argument("--steps", type=int, default=0, help="fixed number of steps (deterministic); "
                    "the schedule follows steps instead of time; --minutes still caps the run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=20, help="warm-up steps (default 20)")
    ap.add_argument("--fg", type=float, default=0.7, help="probability of a tumour-centred patch")
    ap.add_argument("--reuse", type=int, default=2, help="patches drawn from each phantom (default 2)")
    ap.add_argument("--val-cases", type=int, default=3)
    ap.add_argument("--val-minutes", type=float, default=5.0, help="validate every N minutes")
    ap.add_argument("--hidden", type=int, default=CONFIG["hidden_size"])
    ap.add_argument("--depths", default=",".join(map(str, CONFIG["depths"])))
    ap.add_argument("--feat", default=",".join(map(str, CONFIG["feat_size"])))
    ap.add_argument("--dtype", default="F16", choices=["F16", "F32"], help="checkpoint storage")
    ap.add_argument("--log-every", type=int, default=10)
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(np.random.SeedSequence([args.seed, 99]))
    config = dict(CONFIG, hidden_size=args.hidden, depths=[int(v) for v in args.depths.split(",")],
                  feat_size=[int(v) for v in args.feat.split(",")])
    card = make_card(PATCH)
    model = use_fast_scan(build_model(config))
    init_mamba(model, args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    step, case_index, elapsed_before, history = 0, 0, 0.0, []
    if args.resume and os.path.exists(args.state):
        st = torch.load(args.state)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, case_index, elapsed_before, history = st["step"], st["case_index"], st["elapsed"], st["history"]
        rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        print(f"resumed at step {step} ({elapsed_before / 60:.1f} min)")
    print(f"train_demo: config {config}, {n_params:,} parameters, patch {PATCH}^3, nslices "
          f"{card['nslices']}, {args.threads} threads, budget {args.minutes} min"
          + (f", {args.steps} steps" if args.steps else ""), flush=True)
    val_cases = [phantom.generate(VAL_SEED, i) for i in range(args.val_cases)]
    budget = args.minutes * 60.0

    def elapsed():
        return elapsed_before + time.perf_counter() - t_start

    def progress():
        if args.steps:
            return step / args.steps
        return min(1.0, elapsed() / budget)

    def checkpoint(val):
        info = dict(step=step, minutes=round(elapsed() / 60, 2), seed=args.seed, train_seed=TRAIN_SEED,
                    val_seed=VAL_SEED, val_dice=[round(float(v), 4) for v in val], config=config,
                    lr=args.lr, threads=args.threads)
        save_checkpoint(model, args.out, card, info, args.dtype)
        os.makedirs(os.path.dirname(os.path.abspath(args.state)), exist_ok=True)
        torch.save(dict(model=model.state_dict(), opt=opt.state_dict(), step=step, case_index=case_index,
                        elapsed=elapsed(), history=history, rng=rng.bit_generator.state,
                        torch_rng=torch.get_rng_state()), args.state + ".tmp")
        os.replace(args.state + ".tmp", args.state)

    def run_validation():
        t0 = time.perf_counter()
        val = validate(model, val_cases, card)
        history.append(dict(step=step, minutes=round(elapsed() / 60, 2), dice=[float(v) for v in val]))
        print(f"  val @ step {step} ({elapsed() / 60:.1f} min): Dice WT {val[0]:.3f} TC {val[1]:.3f} "
              f"ET {val[2]:.3f} mean {val.mean():.3f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
        checkpoint(val)
        return val

    model.train()
    next_val = (math.floor(elapsed() / 60 / args.val_minutes) + 1) * args.val_minutes * 60
    stats = []
    x_pre = seg_pre = None
    val_seconds = 30.0  # updated by each validation; the final one must fit the budget
    step_seconds = 0.0
    while True:
        if args.steps and step >= args.steps:
            break
        if elapsed() + val_seconds + step_seconds >= budget:
            break
        t0 = time.perf_counter()
        if step % max(1, args.reuse) == 0 or x_pre is None:
            case = phantom.generate(TRAIN_SEED, case_index)
            case_index += 1
            x_pre, seg_pre = preprocess(case["image"], case["seg"], card)
        t_data = time.perf_counter() - t0
        xp, sp = sample_patch(rng, x_pre, seg_pre, PATCH, args.fg)
        x = torch.from_numpy(xp)[None]
        y = torch.from_numpy(sp.astype(np.int64))[None]
        frac = progress()
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (1 - frac) ** 0.9
        for group in opt.param_groups:
            group["lr"] = lr
        logits = forward_train(model, x)
        loss, ce = loss_fn(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 12.0)
        opt.step()
        step += 1
        step_seconds = time.perf_counter() - t0
        stats.append((loss.item(), ce, step_seconds, t_data))
        if step % args.log_every == 0:
            s = np.array(stats)
            print(f"step {step:5d}  {elapsed() / 60:5.1f} min  loss {s[:, 0].mean():.4f}  ce {s[:, 1].mean():.4f}  "
                  f"lr {lr:.2e}  {s[:, 2].mean():.2f} s/step (data {s[:, 3].mean():.2f})", flush=True)
            stats = []
        if elapsed() >= next_val and elapsed() + 2 * val_seconds < budget:
            t0 = time.perf_counter()
            run_validation()
            val_seconds = time.perf_counter() - t0
            next_val += args.val_minutes * 60
    if history and history[-1]["step"] == step:
        val = np.array(history[-1]["dice"])
    else:
        val = run_validation()
    print(f"done: {step} steps in {elapsed() / 60:.1f} min; validation Dice WT/TC/ET "
          f"{val[0]:.3f}/{val[1]:.3f}/{val[2]:.3f} (mean {val.mean():.3f}); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
