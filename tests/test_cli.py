#!/usr/bin/env python3
"""The segmamba CLI: help, exit codes and error messages for bad input.

Uses the committed tiny fixture (tests/fixtures/tiny) and numpy only. Each
case checks the exact exit code documented in `segmamba help` and a
distinctive part of the message; failing runs must leave no output file.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
from safetensors_read import read_safetensors, write_safetensors_f32  # noqa: E402
from host_exe import host_command  # noqa: E402
from checks import check, results  # noqa: E402

FIXTURE = "tests/fixtures/tiny"


def run(exe, *args):
    p = subprocess.run(host_command(exe) + list(args), capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def expect(exe, name, args, code, needle=None, stream="stderr"):
    rc, out, err = run(exe, *args)
    text = err if stream == "stderr" else out
    ok = rc == code and (needle is None or needle in text)
    check(name, ok, f"exit {rc} (want {code}), {stream}: {text.strip()[:400]!r} (want {needle!r})")
    return text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--segmamba", required=True)
    exe = ap.parse_args().segmamba
    model = os.path.join(FIXTURE, "model.safetensors")
    with open(os.path.join(FIXTURE, "case.json")) as f:
        case = json.load(f)
    inp = os.path.join(FIXTURE, "input.npy")
    nslices = ",".join(map(str, case["nslices"]))
    tensors, meta = read_safetensors(model)

    # help and usage
    expect(exe, "no arguments", [], 1, "usage: segmamba")
    for args in (["help"], ["--help"]):
        expect(exe, " ".join(args), args, 0, "Exit codes:", "stdout")
    expect(exe, "forward --help", ["forward", "--help"], 0, "--nslices", "stdout")
    expect(exe, "help forward", ["help", "forward"], 0, "--conv KIND", "stdout")
    expect(exe, "info --help", ["info", "--help"], 0, "--json", "stdout")
    expect(exe, "unknown command", ["frobnicate"], 1, "unknown command 'frobnicate'")
    expect(exe, "version", ["version"], 0, "segmamba ", "stdout")

    # info: the parameter count equals the tensors' sizes counted here
    out = expect(exe, "info --json", ["info", model, "--json"], 0, "parameters", "stdout")
    try:
        info = json.loads(out)
        want = sum(int(np.prod(t.shape)) for t in tensors.values())
        check("info parameter count", info["parameters"] == want, f"{info['parameters']} != {want}")
        cfg = case["config"]
        check("info channels", (info["in_chans"], info["out_chans"]) ==
              (cfg["in_chans"], cfg["out_chans"]), str(info))
    except (ValueError, KeyError) as e:
        check("info --json output", False, repr(e))

    with tempfile.TemporaryDirectory() as tmp:
        out_npy = os.path.join(tmp, "out.npy")
        base = ["forward", "--model", model, "--input", inp, "--output", out_npy,
                "--nslices", nslices]

        # files that cannot be read or are not models
        expect(exe, "missing model", ["info", os.path.join(tmp, "nope.pt")], 2, "nope.pt")
        junk = os.path.join(tmp, "junk.safetensors")
        with open(junk, "wb") as f:
            f.write(b"this is not a checkpoint at all")
        expect(exe, "garbage model", ["info", junk], 3, "junk.safetensors")

        # tensors missing, extra, mis-shaped: exit 5 naming the tensor
        def variant(name, edit):
            t = dict(tensors)
            edit(t)
            path = os.path.join(tmp, name + ".safetensors")
            write_safetensors_f32(path, t, meta)
            return path

        victim = "vit.stages.0.0.mamba.x_proj_s.weight"
        p = variant("missing", lambda t: t.pop(victim))
        expect(exe, "missing tensor", ["info", p], 5, victim)
        p = variant("extra", lambda t: t.update({"vit.extra.weight": np.zeros(3, np.float32)}))
        expect(exe, "extra tensor", ["info", p], 5, "vit.extra.weight")
        shape = tensors[victim].shape
        bad = (shape[0] + 1,) + tuple(shape[1:])
        p = variant("misshaped", lambda t: t.update({victim: np.zeros(bad, np.float32)}))
        want = f"has shape ({', '.join(map(str, bad))}), expected ({', '.join(map(str, shape))})"
        expect(exe, "mis-shaped tensor", ["info", p], 5, want)

        # inputs the model refuses: exit 6, and no output written
        x = np.load(inp)
        wrong_c = os.path.join(tmp, "wrong_c.npy")
        np.save(wrong_c, np.zeros((1, x.shape[1] + 1) + x.shape[2:], np.float32))
        expect(exe, "wrong channel count", base[:4] + [wrong_c] + base[5:], 6, "wrong_c.npy")
        odd = os.path.join(tmp, "odd.npy")
        np.save(odd, np.zeros(x.shape[:2] + (24, 32, 32), np.float32))
        expect(exe, "side not a multiple of 16", base[:4] + [odd] + base[5:], 6, "multiple of 16")
        expect(exe, "nslices not dividing", base[:-1] + ["7,1,1,1"], 6, "nslices")
        check("no output after failures", not os.path.exists(out_npy))
        expect(exe, "input missing", base[:4] + [os.path.join(tmp, "none.npy")] + base[5:], 2,
               "none.npy")

        # bad option values: exit 1
        expect(exe, "bad --threads", base + ["--threads", "0"], 1, "--threads")
        expect(exe, "bad --conv", base + ["--conv", "fft"], 1, "--conv")
        expect(exe, "bad --nslices", base[:-1] + ["1,2"], 1, "--nslices")
        expect(exe, "missing --output", base[:5], 1, "required")
        expect(exe, "option without value", base + ["--threads"], 1, "needs a value")

        # an output folder that does not exist: exit 2, nothing left behind
        nowhere = os.path.join(tmp, "no", "such", "dir", "y.npy")
        expect(exe, "output folder missing", base[:6] + [nowhere] + base[7:], 2, "y.npy")

        # and the success path writes a logits array of the right shape
        rc, _, err = run(exe, *base, "--quiet")
        check("forward succeeds", rc == 0 and err == "", f"exit {rc}: {err}")
        if rc == 0:
            y = np.load(out_npy)
            check("logits shape", y.shape == (1, case["config"]["out_chans"]) + x.shape[2:],
                  str(y.shape))
            leftovers = [f for f in os.listdir(tmp) if ".tmp" in f]
            check("no temporary files left", not leftovers, str(leftovers))

        # bench with two models: a row each (its own load and peak RSS), the
        # side-by-side table, and every row in the JSON
        bj = os.path.join(tmp, "bench.json")
        out = expect(exe, "bench with two models", ["bench", "--model", model, "--model", model,
                     "--size", "16", "--repeat", "1", "--threads", "1", "--json", bj], 0,
                     "ratio = row / model 1", "stdout")
        check("bench prints each model's rows", out.count("model      " + model) == 2
              and out.count("MiB (from loading to closing this model)") == 2, out[:400])
        try:
            with open(bj) as f:
                runs = json.load(f)["runs"]
            check("bench --json: a run per model", len(runs) == 2 and all(
                r["model"] == model and r["family"] == "SegMamba v1" and r["seconds"] > 0
                for r in runs), str(runs)[:400])
        except (OSError, ValueError, KeyError) as e:
            check("bench --json output", False, repr(e))
        expect(exe, "bench with 9 models", ["bench"] + ["--model", model] * 9, 1,
               "more than 8 times")
        expect(exe, "bench rows over 8", ["bench", "--model", model, "--model", model, "--conv",
               "blas,ref,auto,winograd,onednn"], 1, "more than 8 rows")

    interrupt_predict(exe)
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


def interrupt_predict(exe):
    """Ctrl-C during predict: exit code 9 (cancelled), the run stops at the
    next window, and no output (nor temporary file) is left."""
    import signal
    import nibabel as nib
    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory() as tmp:
        # The tiny fixture with a card of its own: 4x4x4 windows of 32^3, 8
        # mirrorings, a few seconds in all natively (long enough to be
        # interrupted), not minutes under emulation.
        card = os.path.join(tmp, "tiny.card.json")
        with open(card, "w") as f:
            json.dump({"channels": [{"name": "a"}, {"name": "b"}], "patch": [32, 32, 32],
                       "nslices": [16, 8, 4, 2], "labels": ["background", "x", "y"]}, f)
        images = []
        for name in ("a", "b"):
            x = rng.normal(100.0, 20.0, (80, 72, 72)).astype(np.float32)
            path = os.path.join(tmp, f"case-{name}.nii.gz")
            nib.save(nib.Nifti1Image(x, np.eye(4)), path)
            images.append(path)
        out = os.path.join(tmp, "seg.nii.gz")
        cmd = host_command(exe) + ["predict", "--model", os.path.join(FIXTURE, "model.safetensors"),
                                   "--card", card, "-i"] + images + ["-o", out, "--threads", "1"]
        p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        first = p.stderr.readline()  # the progress line after the first window
        p.send_signal(signal.SIGINT)
        err = first + p.stderr.read()
        rc = p.wait()
        check("Ctrl-C during predict: exit 9", rc == 9 and "cancelled" in err,
              f"exit {rc}: {err.strip()[-300:]!r}")
        check("Ctrl-C during predict: stopped early", "512/512" not in err, err.strip()[-300:])
        check("Ctrl-C during predict: nothing written", sorted(os.listdir(tmp)) == sorted(
            [os.path.basename(f) for f in images] + ["tiny.card.json"]), str(os.listdir(tmp)))


if __name__ == "__main__":
    sys.exit(main())
