#!/usr/bin/python3
"""Time per study through the Orthanc plugin against `segmamba predict` on
the same DICOM series, with and without mirror TTA, in one run.

A BraTS-sized phantom (tools/phantom.py, 4 channels of 240x240x155 at 1 mm
by default) is written as 4 DICOM MR series. `segmamba predict -i DIR...
--dicom-seg` runs on the folders; then Orthanc (Debian's, on free loopback
ports, under a scratch folder) with the plugin gets the series by C-STORE
(dcmtk's storescu) and `POST /segmamba/segment` runs each job. The plugin's
time is the job's own "Seconds" (reading the instances from Orthanc,
predicting, encoding, storing the SEG) and the wall time from the POST to
the job's Success; predict's is its wall time (process start, model
loading and writing included: the plugin holds its model open). Each SEG
is decoded and compared with predict's, voxel for voxel. Orthanc's peak
RSS over the run is printed. With --load N, N such studies (other seeds)
are then given to a fresh Orthanc at once (POST /instances), N jobs
submitted together, once with the plugin's ConcurrentJobs 1 and once with
2: the wall time until all succeed and Orthanc's peak RSS.

    /usr/bin/python3 bench/orthanc_compare.py --segmamba build/segmamba \\
        --plugin build/src/orthanc/libOrthancSegMamba.so \\
        --model models/demo/segmamba_demo.safetensors \\
        [--venv build/dicom-venv] [--shape 155 240 240] [--threads N] [--repeat 1]
        [--load N]

Runs under tests/test_dicom.py's venv (made on first use).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
import orthanc_harness as oh  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--segmamba", required=True)
    ap.add_argument("--plugin", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--venv", default=os.path.join(ROOT, "build", "dicom-venv"))
    ap.add_argument("--shape", type=int, nargs=3, default=[155, 240, 240])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--seed", type=int, default=77)
    ap.add_argument("--load", type=int, default=0, help="then N studies at once")
    args = ap.parse_args()
    oh.ensure_venv(args.venv)
    segmamba, plugin, model = (os.path.abspath(p) for p in (args.segmamba, args.plugin, args.model))
    rows = []
    with tempfile.TemporaryDirectory(prefix="segmamba-orthanc-bench-") as tmp:
        print(f"writing a {'x'.join(map(str, args.shape[::-1]))} phantom as 4 DICOM series...",
              flush=True)
        study = oh.write_phantom_study(os.path.join(tmp, "case"), args.seed, shape=args.shape)
        seg = {}
        for tta in (False, True):
            times = []
            for r in range(args.repeat):
                out = os.path.join(tmp, f"predict-{tta}-{r}.dcm")
                cmd = [segmamba, "predict", "--model", model, "-i"] + study["dirs"] + [
                    "-o", os.path.join(tmp, f"predict-{tta}-{r}.nii.gz"), "--dicom-seg", out,
                    "--threads", str(args.threads), "--quiet"] + ([] if tta else ["--no-tta"])
                t0 = time.perf_counter()
                p = subprocess.run(cmd, capture_output=True, text=True)
                times.append(time.perf_counter() - t0)
                if p.returncode != 0:
                    sys.exit(f"predict failed: {p.stderr}")
                seg[tta] = out
            rows.append(("predict (wall, load included)", tta, statistics.median(times)))
            print(f"predict, TTA {'on' if tta else 'off'}: {statistics.median(times):.2f} s",
                  flush=True)
        config = {"SegMamba": {"Models": {"bench": {"Path": model, "TTA": True}},
                               "Threads": args.threads}}
        with oh.Orthanc(os.path.join(tmp, "orthanc"), plugins=[plugin], config_extra=config,
                        verbose=False) as o:
            oh.storescu(o.dicom_port, study["dirs"])
            by_desc = o.series_by_description()
            series = [by_desc[d] for d in study["descriptions"]]
            for tta in (False, True):
                own, wall = [], []
                for r in range(args.repeat):
                    # A second job on the same inputs finds its SEG stored: delete it first.
                    for inst in o.find_seg_instances():
                        o.delete(f"/instances/{inst}")
                    t0 = time.perf_counter()
                    st, ans = o.post("/segmamba/segment",
                                     {"Model": "bench", "Series": series, "TTA": tta})
                    if st != 200:
                        sys.exit(f"POST /segmamba/segment: {st} {ans}")
                    job = o.wait_job(ans["ID"], timeout=3600, poll=0.05)
                    wall.append(time.perf_counter() - t0)
                    if job.get("State") != "Success":
                        sys.exit(f"job {ans['ID']}: {job}")
                    own.append(float(job["Content"]["Seconds"]))
                    got = oh.decode_seg(o.download(job["Content"]["SegInstance"]))
                    same, why = oh.seg_equal(oh.decode_seg(seg[tta]), got, codes=True)
                    print(f"plugin, TTA {'on' if tta else 'off'}: job {own[-1]:.2f} s, POST to "
                          f"Success {wall[-1]:.2f} s; SEG equals predict's: {same} {why}",
                          flush=True)
                rows.append(("plugin job (Content.Seconds)", tta, statistics.median(own)))
                rows.append(("plugin, POST to Success (wall)", tta, statistics.median(wall)))
            peak = o.peak_rss_mib()
        load = []
        if args.load:
            studies = [study] + [
                oh.write_phantom_study(os.path.join(tmp, f"load{i}"), args.seed + 1 + i,
                                       shape=args.shape) for i in range(1, args.load)]
            for concurrent in (1, 2):
                config["SegMamba"]["ConcurrentJobs"] = concurrent
                with oh.Orthanc(os.path.join(tmp, f"orthanc-load{concurrent}"), plugins=[plugin],
                                config_extra=dict(config, ConcurrentJobs=2),
                                verbose=False) as o:
                    for st in studies:
                        for f in (f for files in st["files"] for f in files):
                            with open(f, "rb") as fh:
                                o.upload(fh.read())
                    series = []
                    for st in studies:
                        by = o.series_by_description(o.lookup(st["study_uid"], "Study")[0])
                        series.append([by[d] for d in st["descriptions"]])
                    t0 = time.perf_counter()
                    jobs = [o.post("/segmamba/segment", {"Model": "bench", "Series": s,
                                                         "TTA": False})[1]["ID"] for s in series]
                    done = [o.wait_job(j, timeout=7200) for j in jobs]
                    wall = time.perf_counter() - t0
                    ok = sum(d.get("State") == "Success" for d in done)
                    load.append((concurrent, ok, wall, o.peak_rss_mib()))
                    print(f"{args.load} studies at once, ConcurrentJobs {concurrent}: {ok} "
                          f"Success in {wall:.1f} s", flush=True)
    print(f"\n| {args.shape[2]}x{args.shape[1]}x{args.shape[0]}, {args.threads} threads, "
          f"median of {args.repeat} | TTA off (s) | TTA on (s) |\n|---|---|---|")
    for name in dict.fromkeys(r[0] for r in rows):
        t = {tta: v for n, tta, v in rows if n == name}
        print(f"| {name} | {t[False]:.2f} | {t[True]:.2f} |")
    print(f"Orthanc peak RSS over the run: {peak:.0f} MiB")
    for concurrent, ok, wall, rss in load:
        print(f"{args.load} studies at once (TTA off), ConcurrentJobs {concurrent}: {ok} of "
              f"{args.load} Success, {wall:.1f} s ({wall / args.load:.1f} s a study), Orthanc "
              f"peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
