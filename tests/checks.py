"""What the Python test scripts share: a named check that counts and prints
one line ("ok  NAME" or "FAIL NAME: detail"), and the counts. A script
imports `check` and `results` (one dict for the process, so checks made in
a helper module count with the script's), and makes the small random-weight
models the clinical tests run."""
import json
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
results = {"passed": 0, "failed": 0}


def check(name, cond, detail=""):
    """Counts and prints one check; returns cond, so a caller can stop when
    what follows depends on it."""
    results["passed" if cond else "failed"] += 1
    print(f"{'ok  ' if cond else 'FAIL'} {name}{'' if cond else ': ' + str(detail)[:2000]}",
          flush=True)
    return cond


def make_tiny_model(out, in_chans, out_chans, seed):
    """A small random-weight SegMamba for 32^3 windows (features 4, 8, 12, 18,
    one block per stage) written by tests/reference/gen_case.py into the folder
    out (model.safetensors, model.pt, ...); returns the finished process."""
    config = {"in_chans": in_chans, "out_chans": out_chans, "depths": [1, 1, 1, 1],
              "feat_size": [4, 8, 12, 18], "hidden_size": 22}
    return subprocess.run(["/usr/bin/python3", os.path.join(HERE, "reference", "gen_case.py"),
                           "--config", "custom", "--custom-json", json.dumps(config), "--size",
                           "32", "--seed", str(seed), "--out", out],
                          capture_output=True, text=True)
