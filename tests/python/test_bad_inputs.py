"""The CLI's catalogue of hostile and broken inputs (tests/test_bad_inputs.py)
through the Python API: each command the catalogue runs is done with the
package instead (info: Model(path); forward: Model(...).forward(array);
predict: read_nifti, Model(..., card=...).predict, write_nifti), and must
raise segmamba.Error with the status the CLI exits with and the engine's
message the CLI prints, leave no output behind and not crash. Cases with
an environment variable or run as another user go through a subprocess.
Writers the package does not have (convert, preview, metrics --json, a
.npy output) and the CLI's check of output folders before reading the
model are listed as not applicable; every other case must pass."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np

import segmamba

# The catalogue, tests/test_bad_inputs.py, loaded by its path: its module
# name, test_bad_inputs, is this file's own.
_spec = importlib.util.spec_from_file_location(
    "bad_inputs_catalogue",
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "test_bad_inputs.py"))
catalogue = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(catalogue)

STATUS = {1: "E_ARG", 2: "E_IO", 3: "E_FORMAT", 4: "E_UNSUPPORTED", 5: "E_MODEL", 6: "E_SHAPE",
          7: "E_NOMEM", 8: "E_BACKEND", 9: "E_CANCELLED"}


def options(args):
    """--name value pairs and flags of a CLI command line; -i collects files."""
    opts, i = {"-i": []}, 0
    while i < len(args):
        a = args[i]
        if a == "-i":
            i += 1
            while i < len(args) and not args[i].startswith("-"):
                opts["-i"].append(args[i])
                i += 1
            continue
        if a in ("--no-tta", "--quiet"):
            opts[a] = True
        else:
            opts[a] = args[i + 1]
            i += 1
        i += 1
    return opts


def plan(args, message):
    """(what, None) when the package can do what args asks, else (None, why)."""
    cmd = args[0]
    if message == "refused before the model is read":
        return (None, "the CLI checks its output before reading the model; the package writes "
                      "when asked")
    if cmd == "info":
        return ("info", None)
    if cmd == "forward":
        o = options(args[1:])
        if o["--output"] in message:
            return (None, "forward's .npy output: the package returns arrays")
        try:
            np.load(o["--input"])
        except ValueError as e:
            return (None, f"NumPy reads .npy files in Python, and refuses this one ({e})")
        return ("forward", None)
    if cmd == "predict":
        return ("predict", None)
    return (None, f"`segmamba {cmd}` has no counterpart in the package")


def run(args):
    """Does args with the package; (code, message): 0 and '' on success."""
    cmd = args[0]
    o = options(args[1:]) if cmd != "info" else {}
    try:
        if cmd == "info":
            segmamba.Model(args[1]).close()
        elif cmd == "forward":
            ns = tuple(int(v) for v in o["--nslices"].split(",")) if "--nslices" in o else None
            with segmamba.Model(o["--model"], nslices=ns) as m:
                x = np.load(o["--input"])
                m.forward(x)
        else:
            img = segmamba.read_nifti(o["-i"])
            with segmamba.Model(o["--model"], card=o.get("--card")) as m:
                want = ("labels", "probabilities") if "--probabilities" in o else ("labels",)
                r = m.predict(img, tta="--no-tta" not in o, outputs=want)
            segmamba.write_nifti(o["-o"], r["labels"], like=img)
            if "--probabilities" in o:
                segmamba.write_nifti(o["--probabilities"], r["probabilities"], like=img)
    except segmamba.Error as e:
        assert STATUS[e.code] == e.status
        return e.code, str(e)
    return 0, ""


def run_elsewhere(args, env, prefix):
    """run(args) in a new Python process (an environment, another user)."""
    here = os.path.dirname(os.path.abspath(__file__))
    code = (f"import sys, json; sys.path[:0] = {[here, catalogue.HERE]!r}; "
            f"import test_bad_inputs as t; print(json.dumps(t.run({list(args)!r})))")
    p = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, **(env or {})))
    if p.returncode != 0:
        return -p.returncode, f"the process failed: {p.stderr.strip()[-300:]}"
    return tuple(json.loads(p.stdout.strip().splitlines()[-1]))


def test_catalogue_through_python(exe, monkeypatch, tmp_path, capsys):
    results = {"ok": [], "FAIL": [], "n/a": []}

    def expect(_exe, name, args, code, message, outputs=(), env=None, prefix=()):
        what, why = plan(args, message if "refused before" not in name else
                         "refused before the model is read")
        if not what:
            results["n/a"].append(f"{name}: {why}")
            return None
        got_code, got = run_elsewhere(args, env, prefix) if env or prefix else run(args)
        # forward reads its array from memory: the engine names it 'input'.
        if what == "forward":
            message = message.replace(options(args[1:])["--input"], "input", 1)
        left = [n for out in outputs for n in catalogue.leftovers(out)]
        ok = got_code == code and got == message and not left
        results["ok" if ok else "FAIL"].append(
            f"{name}: {STATUS.get(got_code, got_code)}: {got}" +
            ("" if ok else f"\n     want {STATUS.get(code, code)}: {message}; left {left}"))
        return None

    monkeypatch.setattr(catalogue, "expect", expect)
    monkeypatch.setattr(catalogue, "EXE", exe)
    rng = np.random.default_rng(6)
    tmp = str(tmp_path)
    catalogue.checkpoint_cases(exe, tmp)
    catalogue.forward_cases(exe, tmp)
    card_path, good = catalogue.nifti_cases(exe, tmp, rng)
    catalogue.output_cases(exe, tmp, card_path, good)
    catalogue.full_disk_cases(exe, tmp, card_path, good)  # where mount is allowed
    for k in ("ok", "FAIL", "n/a"):
        for line in results[k]:
            print(f"{k:4} {line}")
    print(f"{len(results['ok'])} ok, {len(results['FAIL'])} failed, "
          f"{len(results['n/a'])} not applicable; the catalogue's own checks: {catalogue.results}")
    assert not results["FAIL"]
    assert catalogue.results["failed"] == 0
    assert len(results["ok"]) >= 30
