#!/usr/bin/python3
"""The Mamba types v2 and none (spec 7.1) as the CLI meets them, without
torch: checkpoints made from the committed tiny fixture (v3) by deleting
direction tensors.

- v2 (no `_s` tensors) and none (no `_b`, no `_s`) are recognised: `info`
  says "family SegMamba v1, mamba v2|none" (text and --json); the v3
  fixture says "mamba v3".
- They run with nslices that divide no stage's token count (unused without
  the slice scan), where the v3 model is refused (exit 6); their logits are
  finite and differ from v3's and from each other.
- A mixture (the `_s` set deleted from one later layer), a partial direction
  (A_b_log without conv1d_b), a slice direction without the backward one,
  and a layer with a direction the first layer lacks are refused (exit 5)
  with the exact message naming the tensor.

The logits of v2 and none against the PyTorch reference: the model-tiny-v2-*
and model-tiny-none-* tests (suite 'model', torch).

usage: test_mamba_types.py --segmamba build/segmamba
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

from host_exe import host_command

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))
from safetensors_read import read_safetensors, write_safetensors_f32  # noqa: E402

FIXTURE = os.path.join(HERE, "fixtures", "tiny")
FAILED = []


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    if not ok:
        FAILED.append(name)


def run(exe, *args):
    return subprocess.run([*host_command(exe), *args], capture_output=True, text=True)


def direction(name):
    """'_b', '_s' or '' for a Mamba tensor's direction, None for others."""
    m = re.fullmatch(r"vit\.stages\.\d+\.\d+\.mamba\.(conv1d|x_proj|dt_proj|A|D)(_[bs])?"
                     r"(\.weight|\.bias|_log)?", name)
    return (m.group(2) or "") if m else None


def without(tensors, dirs, prefix="vit.stages."):
    return {k: v for k, v in tensors.items()
            if not (k.startswith(prefix) and direction(k) in dirs)}


def type_note(kind, dirs):
    return (f": the Mamba type is {kind}, from the directions layer vit.stages.0.0 has tensors "
            f"of ({dirs}), and every layer needs all the tensors of those directions and no others")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segmamba", required=True)
    exe = ap.parse_args().segmamba
    tensors, meta = read_safetensors(os.path.join(FIXTURE, "model.safetensors"))
    inp = os.path.join(FIXTURE, "input.npy")
    with tempfile.TemporaryDirectory() as tmp:
        def save(name, t):
            path = os.path.join(tmp, name + ".safetensors")
            write_safetensors_f32(path, t, meta)
            return path

        models = {"v3": os.path.join(FIXTURE, "model.safetensors"),
                  "v2": save("v2", without(tensors, {"_s"})),
                  "none": save("none", without(tensors, {"_b", "_s"}))}
        logits = {}
        for kind, path in models.items():
            p = run(exe, "info", path)
            line = next((s for s in p.stdout.splitlines() if s.startswith("family")), "")
            check(f"info {kind}", p.returncode == 0 and
                  line == f"family       SegMamba v1, mamba {kind}", line or p.stderr.strip())
            p = run(exe, "info", path, "--json")
            try:
                info = json.loads(p.stdout)
                ok = (info["family"], info["mamba_type"]) == ("SegMamba v1", kind)
                want_params = sum(v.size for k, v in tensors.items()
                                  if direction(k) is None or
                                  direction(k) in {"v3": ("", "_b", "_s"), "v2": ("", "_b"),
                                                   "none": ("",)}[kind])
                ok = ok and info["parameters"] == want_params
                detail = f"{info['family']}, {info['mamba_type']}, {info['parameters']} parameters"
            except (ValueError, KeyError) as e:
                ok, detail = False, repr(e)
            check(f"info --json {kind}", ok, detail)
            out = os.path.join(tmp, kind + ".npy")
            p = run(exe, "forward", "--model", path, "--input", inp, "--output", out,
                    "--nslices", "7,7,7,7")
            if kind == "v3":
                last = (p.stderr.strip().splitlines() or [""])[-1]
                check("v3 with nslices 7 refused", p.returncode == 6 and "nslices 7" in last, last)
                p = run(exe, "forward", "--model", path, "--input", inp, "--output", out)
            ok = p.returncode == 0 and os.path.exists(out)
            if ok:
                logits[kind] = np.load(out)
                ok = bool(np.isfinite(logits[kind]).all())
            check(f"forward {kind}" + (" with nslices 7" if kind != "v3" else ""), ok,
                  p.stderr.strip())
        if len(logits) == 3:
            d = {(a, b): float(np.abs(logits[a] - logits[b]).max())
                 for a, b in (("v3", "v2"), ("v2", "none"))}
            check("the types give different logits", all(v > 1e-3 for v in d.values()), str(d))

        # Refusals: exit 5 (E_MODEL), the message naming the tensor.
        v3_note = type_note("v3", "forward, backward (_b) and slice (_s)")
        v2_note = type_note("v2", "forward and backward (_b)")
        partial = without(tensors, {"_s"})
        del partial["vit.stages.0.0.mamba.conv1d_b.weight"]
        extra = without(tensors, {"_s"}, "vit.stages.0.")
        cases = [
            ("mixture: one layer without its _s tensors",
             without(tensors, {"_s"}, "vit.stages.2.0."),
             "tensor 'vit.stages.2.0.mamba.conv1d_s.weight' (24, 1, 4) is missing from the "
             "checkpoint" + v3_note),
            ("partial direction: _b without conv1d_b.weight", partial,
             "tensor 'vit.stages.0.0.mamba.conv1d_b.weight' (8, 1, 4) is missing from the "
             "checkpoint" + v2_note),
            ("slice direction without the backward one", without(tensors, {"_b"}),
             "tensor 'vit.stages.0.0.mamba.conv1d_s.weight' is a slice-direction (_s) Mamba "
             "tensor, but layer vit.stages.0.0 has no backward (_b) ones: no Mamba type has "
             "that (v3: forward, _b and _s; v2: forward and _b; none: forward only)"),
            ("mixture: later layers with _s tensors the first lacks", extra,
             "unexpected tensor 'vit.stages.1.0.mamba.A_s_log' (16, 16) in the checkpoint" +
             v2_note),
        ]
        for i, (name, t, message) in enumerate(cases):
            path = save(f"bad{i}", t)
            p = run(exe, "info", path)
            last = (p.stderr.strip().splitlines() or [""])[-1]
            want = f"segmamba: error: {path}: {message}"
            check(name, p.returncode == 5 and last == want,
                  f"exit {p.returncode}: {last}" + ("" if last == want else f"\n  want: {want}"))
    print(f"{len(FAILED)} failed" if FAILED else "all passed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
