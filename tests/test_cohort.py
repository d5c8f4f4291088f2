#!/usr/bin/python3
"""`segmamba predict --list`: a cohort of BraTS-like phantoms (tools/phantom.py)
through a small random-weight 4-channel model (tests/reference/gen_case.py)
with a 32^3 patch.

The list has good cases (one reached through a quoted path holding a comma
and spaces, one without a reference) and two broken on purpose: a missing
file and a channel with another geometry. Checked:
  * single process: every good case writes DIR/<id>.nii.gz (and the optional
    outputs), the broken ones are named in DIR/summary.csv with their errors,
    the exit code is the first failure's;
  * the summary's Dice and HD95 per BraTS region against numpy/scipy
    (tests/test_metrics_medpy.py's implementation of medpy's definition) on the
    written label maps and the phantoms' references, and their means;
  * a re-run skips every case whose outputs exist (files untouched), a
    missing output is redone, --overwrite redoes all;
  * under `mpirun -n 2 --oversubscribe` (when built with MPI): the same
    label maps byte for byte and the same summary (but the times), with
    cases run by both ranks;
  * a 4D-file list (column "image") gives the same labels as the channels;
  * an ensemble (--model twice) over a list gives each case the one-case
    ensemble's labels;
  * lists that are refused as a whole (bad id, duplicate id, missing column,
    broken quoting, ragged rows) and misuse of the options.

    /usr/bin/python3 tests/test_cohort.py --segmamba build/segmamba [--mpirun mpirun] [--seed S]
"""

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import nibabel as nib
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
import phantom  # noqa: E402
from test_metrics_medpy import score  # noqa: E402
from checks import check, make_tiny_model, results  # noqa: E402

PYTHON = "/usr/bin/python3"
CHANNELS = list(phantom.CHANNELS)
SHAPE = (40, 48, 44)  # phantoms: the crop box needs 2 windows of 32 per axis
MODEL_SEED = 11  # a fixed random model; the phantoms change with --seed
BRATS = {"TC": [1, 3], "WT": [1, 2, 3], "ET": [3]}
# Open MPI refuses to run as root (as the CI does) without these.
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def run(cmd, env=None):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True,
                       env={**os.environ, **(env or {})})
    return p, time.perf_counter() - t0


def read_summary(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {r["id"]: r for r in rows}


def make_model(tmp, seed=MODEL_SEED, name="model"):
    out = os.path.join(tmp, name)
    p = make_tiny_model(out, len(CHANNELS), len(phantom.LABEL_NAMES), seed)
    if p.returncode != 0:
        sys.exit(f"gen_case failed:\n{p.stdout}{p.stderr}")
    card = {"channels": [{"name": c, "normalization": "zscore"} for c in CHANNELS],
            "spacing": [1, 1, 1], "patch": [32, 32, 32], "nslices": [16, 8, 4, 2],
            "fue": False, "labels": list(phantom.LABEL_NAMES), "output": "argmax"}
    card_path = os.path.join(tmp, "card.json")
    with open(card_path, "w") as f:
        json.dump(card, f)
    return os.path.join(out, "model.safetensors"), card_path


def write_list(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def make_cohort(tmp, seed, n_good):
    """Good phantoms, one moved under a folder whose name needs quoting, and
    two broken cases; returns the list path and what each case should give."""
    data = os.path.join(tmp, "data")
    cases = [phantom.generate(seed, i, SHAPE) for i in range(n_good)]
    paths = [phantom.write_case(data, c) for c in cases]
    odd = os.path.join(data, "odd, name \"quoted\" ")
    shutil.move(paths[1]["dir"], odd)
    paths[1] = {"channels": [os.path.join(odd, os.path.basename(p)) for p in paths[1]["channels"]],
                "seg": os.path.join(odd, os.path.basename(paths[1]["seg"]))}
    other = phantom.generate(seed, n_good, (SHAPE[0] + 2, SHAPE[1], SHAPE[2]))
    other_paths = phantom.write_case(os.path.join(tmp, "other"), other)

    rel = lambda p: os.path.relpath(p, tmp)  # noqa: E731  (relative to the list's folder)
    rows, expect = [], {}
    for i, (c, p) in enumerate(zip(cases, paths)):
        ref = "" if i == 2 else rel(p["seg"])
        rows.append([c["id"], "note, with comma"] + [rel(x) for x in p["channels"]] + [ref])
        expect[c["id"]] = {"status": "ok", "seg": p["seg"], "scored": bool(ref)}
    missing = [rel(x).replace(cases[0]["id"] + "-", "missing-") for x in paths[0]["channels"]]
    rows.insert(2, ["broken-missing", ""] + missing + [rel(paths[0]["seg"])])
    expect["broken-missing"] = {"status": "failed", "error": "missing-t2w.nii.gz"}
    geom = [rel(x) for x in paths[3]["channels"][:3]] + [rel(other_paths["channels"][3])]
    rows.append(["broken-geometry", ""] + geom + [rel(paths[3]["seg"])])
    expect["broken-geometry"] = {"status": "failed", "error": "dims differ"}
    list_path = os.path.join(tmp, "cohort.csv")
    write_list(list_path, ["id", "comment"] + CHANNELS + ["seg"], rows)
    return list_path, expect, cases


def outputs(out_dir, cid):
    return [os.path.join(out_dir, cid + ".nii.gz"),
            os.path.join(out_dir, "probabilities", cid + ".nii.gz"),
            os.path.join(out_dir, "preview", cid + ".png")]


def check_first_run(name, p, out_dir, expect, first_failure_code):
    check(f"{name}: exit code {first_failure_code} (the first broken case's)",
          p.returncode == first_failure_code, f"exit {p.returncode}\n{p.stderr}")
    summary = read_summary(os.path.join(out_dir, "summary.csv"))
    for cid, e in expect.items():
        row = summary.get(cid)
        if not check(f"{name}: {cid} in the summary as {e['status']}",
                     row is not None and row["status"] == e["status"], row):
            continue
        if e["status"] == "ok":
            check(f"{name}: {cid} outputs written", all(os.path.isfile(f) for f in outputs(out_dir, cid)))
        else:
            check(f"{name}: {cid} error names the problem", e["error"] in row["error"], row["error"])
            check(f"{name}: {cid} wrote no label map",
                  not os.path.exists(os.path.join(out_dir, cid + ".nii.gz")))
            check(f"{name}: {cid} reported on stderr", f"{cid}: failed" in p.stderr, p.stderr)
    check(f"{name}: a mean row", "(mean)" in summary)
    return summary


def check_metrics(summary, out_dir, expect):
    """The summary's metrics against numpy Dice and scipy HD95 on the files."""
    sums, n = {}, 0
    for cid, e in expect.items():
        if e["status"] != "ok":
            continue
        row = summary[cid]
        if not e["scored"]:
            check(f"metrics: {cid} (no reference) has none", row["TC_dice"] == "" and row["mean_dice"] == "", row)
            continue
        pred_img = nib.load(os.path.join(out_dir, cid + ".nii.gz"))
        ref_img = nib.load(e["seg"])
        pred = np.asarray(pred_img.dataobj).astype(np.uint8)
        ref = np.asarray(ref_img.dataobj).astype(np.uint8)
        spacing = tuple(float(z) for z in ref_img.header.get_zooms()[:3])
        want = {}
        for region, labels in BRATS.items():
            want[region] = score(np.isin(pred, labels), np.isin(ref, labels), spacing, False)
        want["mean"] = (np.mean([want[r][0] for r in BRATS]), np.mean([want[r][1] for r in BRATS]))
        bad = []
        for region, (dice, hd) in want.items():
            got_d, got_h = float(row[f"{region}_dice"]), float(row[f"{region}_hd95"])
            if abs(got_d - dice) > 1e-6 or abs(got_h - hd) > 1e-4:
                bad.append(f"{region}: got {got_d} {got_h}, want {dice:.6f} {hd:.4f}")
            sums.setdefault(region, [0.0, 0.0])
            sums[region][0] += dice
            sums[region][1] += hd
        n += 1
        detail = ", ".join(f"{r} {want[r][0]:.3f}/{want[r][1]:.2f}" for r in want)
        check(f"metrics: {cid} Dice/HD95 match numpy+scipy ({detail})", not bad, bad)
    mean = summary["(mean)"]
    bad = [r for r, (d, h) in sums.items()
           if abs(float(mean[f"{r}_dice"]) - d / n) > 2e-6 or abs(float(mean[f"{r}_hd95"]) - h / n) > 2e-4]
    check(f"metrics: means over the {n} scored cases", n > 0 and not bad, (bad, mean))
    nontrivial = [d for (d, _) in sums.values() if 0 < d / n < 1]
    check("metrics: the comparison is not degenerate (some mean Dice strictly between 0 and 1)",
          nontrivial, sums)


def signature(path):
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns


def check_resume(args, base, out_dir, expect):
    good = [c for c, e in expect.items() if e["status"] == "ok"]
    before = {c: signature(os.path.join(out_dir, c + ".nii.gz")) for c in good}
    p, _ = run(base + ["--out-dir", out_dir])
    s = read_summary(os.path.join(out_dir, "summary.csv"))
    check("re-run: every good case skipped, files untouched",
          all(s[c]["status"] == "skipped" for c in good) and
          all(signature(os.path.join(out_dir, c + ".nii.gz")) == before[c] for c in good),
          {c: s[c]["status"] for c in s})
    check("re-run: the broken cases fail again",
          all(s[c]["status"] == "failed" for c, e in expect.items() if e["status"] != "ok"))
    check("re-run: skipped cases keep their metrics",
          all((s[c]["TC_dice"] != "") == expect[c]["scored"] for c in good), s)

    redo = good[0]
    os.remove(os.path.join(out_dir, "probabilities", redo + ".nii.gz"))
    p, _ = run(base + ["--out-dir", out_dir])
    s = read_summary(os.path.join(out_dir, "summary.csv"))
    check(f"re-run: {redo}, missing an optional output, is redone and only it",
          s[redo]["status"] == "ok" and all(s[c]["status"] == "skipped" for c in good if c != redo)
          and os.path.isfile(os.path.join(out_dir, "probabilities", redo + ".nii.gz")),
          {c: s[c]["status"] for c in s})

    before = {c: signature(os.path.join(out_dir, c + ".nii.gz")) for c in good}
    p, _ = run(base + ["--out-dir", out_dir, "--overwrite"])
    s = read_summary(os.path.join(out_dir, "summary.csv"))
    check("--overwrite: every good case redone and rewritten",
          all(s[c]["status"] == "ok" for c in good) and
          all(signature(os.path.join(out_dir, c + ".nii.gz")) != before[c] for c in good),
          {c: s[c]["status"] for c in s})


def check_mpi(args, base, single_dir, tmp, expect, single_seconds):
    out_dir = os.path.join(tmp, "out-mpi")
    cmd = [args.mpirun, "-n", "2", "--oversubscribe"] + base + ["--out-dir", out_dir]
    p, secs = run(cmd, env=MPI_ENV)
    print(f"timing: mpirun -n 2 {secs:.1f} s (single process {single_seconds:.1f} s)")
    check_first_run("mpirun -n 2", p, out_dir, expect, 2)
    ranks = {int(line.rsplit("(rank ", 1)[1].rstrip(")")) for line in p.stderr.splitlines()
             if ": ok in " in line and "(rank " in line}
    check("mpirun -n 2: both ranks segmented cases", ranks == {0, 1}, p.stderr)
    good = [c for c, e in expect.items() if e["status"] == "ok"]
    differ = []
    for c in good:
        for a, b in zip(outputs(single_dir, c)[:2], outputs(out_dir, c)[:2]):
            with open(a, "rb") as fa, open(b, "rb") as fb:
                if fa.read() != fb.read():
                    differ.append(os.path.relpath(b, out_dir))
    check("mpirun -n 2: label maps and probabilities identical to the single process, byte for byte",
          not differ, differ)
    s1 = read_summary(os.path.join(single_dir, "summary.csv"))
    s2 = read_summary(os.path.join(out_dir, "summary.csv"))
    strip = lambda s: {c: {k: v for k, v in r.items() if k != "seconds"} for c, r in s.items()}  # noqa: E731
    check("mpirun -n 2: the same summary but the times", strip(s1) == strip(s2), (s1, s2))
    with open(os.path.join(single_dir, "summary.csv")) as f1, open(os.path.join(out_dir, "summary.csv")) as f2:
        ids1 = [line.split(",", 1)[0] for line in f1]
        ids2 = [line.split(",", 1)[0] for line in f2]
    check("mpirun -n 2: summary rows in list order", ids1 == ids2, (ids1, ids2))


def check_4d(args, tmp, model, card, cases, single_dir):
    c = cases[0]
    d = os.path.join(tmp, "4d")
    os.makedirs(d)
    img = np.ascontiguousarray(c["image"].transpose(3, 2, 1, 0)).astype(np.int16)
    nib.save(nib.Nifti1Image(img, phantom.affine_for(c["image"].shape[1:])), os.path.join(d, "x.nii.gz"))
    write_list(os.path.join(d, "list.csv"), ["image", "id"], [["x.nii.gz", c["id"]]])
    out = os.path.join(d, "out")
    p, _ = run([args.segmamba, "predict", "--model", model, "--card", card, "--list",
                os.path.join(d, "list.csv"), "--out-dir", out, "--threads", "1", "--no-tta", "--quiet"])
    ok = p.returncode == 0
    if ok:
        a = np.asarray(nib.load(os.path.join(out, c["id"] + ".nii.gz")).dataobj)
        b = np.asarray(nib.load(os.path.join(single_dir, c["id"] + ".nii.gz")).dataobj)
        ok = a.shape == b.shape and (a == b).all()
    check("a list of 4D files (column 'image') gives the same labels as the channels", ok, p.stderr)


def check_ensemble(args, tmp, model, card, cases, single_dir):
    """predict --list with two --model (a second random model of the same
    network): each case's label map is the one-case ensemble's byte for byte
    (test_pipeline_reference.py checks that one against an independent pipeline), and
    the second model changes some labels of the first alone."""
    model2, _ = make_model(tmp, MODEL_SEED + 1, "model2")
    d = os.path.join(tmp, "ensemble")
    os.makedirs(d)
    chosen = [cases[0], cases[2]]  # cases[1] lives under the quoted folder
    chans = {c["id"]: phantom.case_paths(os.path.join(tmp, "data"), c["id"])["channels"] for c in chosen}
    write_list(os.path.join(d, "list.csv"), ["id"] + CHANNELS, [[cid] + ch for cid, ch in chans.items()])
    two = ["--model", model, "--model", model2, "--card", card, "--threads", "1", "--no-tta", "--quiet"]
    out = os.path.join(d, "out")
    p, seconds = run([args.segmamba, "predict"] + two + ["--list", os.path.join(d, "list.csv"),
                                                         "--out-dir", out])
    print(f"timing: an ensemble of two models over {len(chosen)} cases {seconds:.1f} s")
    if not check("a cohort with two --model runs", p.returncode == 0, f"exit {p.returncode}: {p.stderr}"):
        return
    changed = 0
    for cid, ch in chans.items():
        one = os.path.join(d, cid + "-single.nii.gz")
        q, _ = run([args.segmamba, "predict"] + two + ["-i"] + ch + ["-o", one])
        a = np.asarray(nib.load(os.path.join(out, cid + ".nii.gz")).dataobj)
        b = np.asarray(nib.load(one).dataobj) if q.returncode == 0 else None
        check(f"ensemble cohort case {cid}: the one-case ensemble's labels byte for byte",
              b is not None and a.shape == b.shape and (a == b).all(),
              q.stderr if b is None else f"{int((a != b).sum())} voxels differ")
        alone = np.asarray(nib.load(os.path.join(single_dir, cid + ".nii.gz")).dataobj)
        changed += int((a != alone).sum())
    check("the second model changes labels of the first alone", changed > 0,
          "the ensemble's labels are the first model's everywhere")


def check_refusals(args, tmp, model, card, cases):
    d = os.path.join(tmp, "refusals")
    os.makedirs(d)
    files = [os.path.relpath(p, d) for p in phantom.case_paths(os.path.join(tmp, "data"), cases[0]["id"])["channels"]]
    good = ",".join(files)
    lists = {
        "an id with a path separator": (f"id,{','.join(CHANNELS)}\n../x,{good}\n", 3, "not usable as a file name"),
        "an id with '..'": (f"id,{','.join(CHANNELS)}\na..b,{good}\n", 3, "not usable"),
        "a duplicate id": (f"id,{','.join(CHANNELS)}\na,{good}\nb,{good}\na,{good}\n", 3, "lines 2 and 4 both have id 'a'"),
        "a missing channel column": (f"id,t2w,t2f,t1n\na,{','.join(files[:3])}\n", 3, "no column 't1c'"),
        "an unclosed quote": (f"id,{','.join(CHANNELS)}\n\"a,{good}\n", 3, "not closed"),
        "a quote inside a field": (f"id,{','.join(CHANNELS)}\na\"b,{good}\n", 3, "inside unquoted field 1"),
        "a ragged row": (f"id,{','.join(CHANNELS)}\na,{good},extra\n", 3, "line 2 has 6 fields; the header has 5"),
        "no header": ("", 3, "empty"),
    }
    base = [args.segmamba, "predict", "--model", model, "--card", card, "--quiet"]
    for what, (text, code, needle) in lists.items():
        path = os.path.join(d, "list.csv")
        with open(path, "w") as f:
            f.write(text)
        out = os.path.join(d, "out-" + what.replace(" ", "-").replace("'", ""))
        p, _ = run(base + ["--list", path, "--out-dir", out])
        check(f"refuses a list with {what}: exit {code}", p.returncode == code and needle in p.stderr
              and not os.path.exists(os.path.join(out, "x.nii.gz")), f"exit {p.returncode}: {p.stderr}")
    path = os.path.join(d, "list.csv")
    with open(path, "w") as f:
        f.write(f"id,{','.join(CHANNELS)}\na,{good}\n")
    misuse = {
        "--list with -i": (["--list", path, "--out-dir", d, "-i", files[0]], "-i and -o are for one case"),
        "--list without --out-dir": (["--list", path], "--list needs --model and --out-dir"),
        "--out-dir without --list": (["-i", files[0], "-o", os.path.join(d, "o.nii.gz"), "--out-dir", d], "go with --list"),
        "--ref-column naming no column": (["--list", path, "--out-dir", d, "--ref-column", "seg"], "no such column"),
    }
    for what, (extra, needle) in misuse.items():
        p, _ = run(base + extra)
        check(f"refuses {what}: exit 1", p.returncode == 1 and needle in p.stderr, f"exit {p.returncode}: {p.stderr}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--segmamba", required=True)
    ap.add_argument("--mpirun", help="run the cohort under `mpirun -n 2` too (an MPI build)")
    ap.add_argument("--seed", type=int, default=None, help="phantom seed (default: random, printed)")
    ap.add_argument("--cases", type=int, default=5, help="good cases (default 5)")
    ap.add_argument("--keep", help="work in this folder and keep it")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(2), "little")
    print(f"test_cohort: phantom seed {seed}, model seed {MODEL_SEED}")
    with tempfile.TemporaryDirectory(prefix="sm_cohort_") as tmp:
        if args.keep:
            tmp = args.keep
            os.makedirs(tmp, exist_ok=True)
        model, card = make_model(tmp)
        list_path, expect, cases = make_cohort(tmp, seed, args.cases)
        base = [args.segmamba, "predict", "--model", model, "--card", card, "--list", list_path,
                "--ref-column", "seg", "--probabilities", "--preview", "--threads", "1", "--no-tta"]
        single_dir = os.path.join(tmp, "out-single")
        p, single_seconds = run(base + ["--out-dir", single_dir])
        print(f"timing: single process {single_seconds:.1f} s for {len(expect)} cases")
        summary = check_first_run("single process", p, single_dir, expect, 2)
        check_metrics(summary, single_dir, expect)
        if args.mpirun:
            check_mpi(args, base, single_dir, tmp, expect, single_seconds)
        else:
            print("test_cohort: no MPI in this build; the mpirun run is not part of this test")
        check_4d(args, tmp, model, card, cases, single_dir)
        check_ensemble(args, tmp, model, card, cases, single_dir)
        check_resume(args, base, single_dir, expect)
        check_refusals(args, tmp, model, card, cases)
    print(f"test_cohort: {results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
