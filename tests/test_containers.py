#!/usr/bin/env python3
"""Training checkpoints as users hold them (tests/fixtures/containers, written
by a PyTorch 2.x with tests/reference/make_container_fixtures.py): each one
loads, `segmamba forward` gives the plain tiny model's logits bit for bit,
and `segmamba info --json` lists the tensors inference ignores.

usage: test_containers.py --segmamba build/segmamba
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from host_exe import host_command
from checks import check, results  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "fixtures", "tiny")
CONTAINERS = os.path.join(HERE, "fixtures", "containers")
DS_HEADS = ["ds_seg_from_dec1.conv.conv.weight", "ds_seg_from_dec1.conv.conv.bias"]
# fixture -> the names `info` must list as ignored
FIXTURES = {"nnunet.pt": [], "lightning.pt": [], "module_compiled.pt": [], "out_main_seg.pt": DS_HEADS}


def run(exe, *args):
    return subprocess.run([*host_command(exe), *args], capture_output=True, text=True)


def forward(exe, model, out, nslices):
    p = run(exe, "forward", "--model", model, "--input", os.path.join(TINY, "input.npy"),
            "--output", out, "--threads", "2", "--nslices", nslices, "--quiet")
    return np.load(out) if p.returncode == 0 else p.stderr.strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--segmamba", required=True)
    exe = os.path.abspath(ap.parse_args().segmamba)
    with tempfile.TemporaryDirectory(prefix="sm_containers_") as tmp:
        # A .pt has no metadata: every run takes the nslices the tiny model's
        # card gives.
        plain = os.path.join(TINY, "model.safetensors")
        nslices = ",".join(map(str, json.loads(run(exe, "info", "--json", plain).stdout)["nslices"]))
        want = forward(exe, plain, os.path.join(tmp, "plain.npy"), nslices)
        check("plain tiny model runs", isinstance(want, np.ndarray), str(want))
        if not isinstance(want, np.ndarray):
            return 1
        for name, ignored in FIXTURES.items():
            model = os.path.join(CONTAINERS, name)
            got = forward(exe, model, os.path.join(tmp, name + ".npy"), nslices)
            ok = isinstance(got, np.ndarray)
            check(f"{name}: forward", ok, str(got))
            if ok:
                same = got.shape == want.shape and got.tobytes() == want.tobytes()
                check(f"{name}: logits bit-identical to the plain model's", same,
                      f"max |diff| {np.max(np.abs(got - want)) if got.shape == want.shape else got.shape}")
            p = run(exe, "info", "--json", model)
            try:
                info = json.loads(p.stdout)
            except ValueError:
                info = {}
            check(f"{name}: info --json lists ignored {ignored}", info.get("ignored") == ignored,
                  p.stderr.strip() or str(info.get("ignored")))
            if ignored:
                p = run(exe, "info", model)
                line = f"ignored      {len(ignored)} tensors: {', '.join(ignored)}"
                check(f"{name}: info lists them", line in p.stdout.splitlines(), p.stdout)
        p = run(exe, "info", "--json", plain)
        check("plain model: nothing ignored", json.loads(p.stdout or "{}").get("ignored") == [],
              p.stdout)
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
