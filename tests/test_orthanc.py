#!/usr/bin/python3
"""The Orthanc plugin (libOrthancSegMamba.so) in real Orthanc processes on
free loopback ports (tests/orthanc_harness.py), with the small random model
of the clinical tests on phantom studies written as 4 DICOM MR series:

  * GET /segmamba/models; POST /segmamba/segment on series sent by storescu:
    the job's SEG, read back from Orthanc, equals `segmamba predict
    --dicom-seg` on the same series (per-voxel masks, segment labels and
    codes, referenced series) and dciodvfy reports no error; its Content
    holds the SEG's IDs and per-label voxels and mL; a second request stores
    nothing new (the same UIDs: AlreadyStored); the metrics count the jobs;
  * bad requests (unknown model, wrong series count, a series that does not
    exist, an ID that is not one, wrong method, no credentials): their
    status and message, nothing queued; bad data (a series with a missing
    slice, a non-image series): the job fails with the engine's message
    (the SOP Instance UIDs around the gap), nothing stored, Orthanc up;
  * kill -9 while a job runs and another waits, then a restart: both end in
    Success, one SEG each;
  * AutoSegment: a C-STORE of the 4 series gives a SEG with no REST call,
    forwarded (ForwardTo) to a second Orthanc; the study is segmented once;
  * 8 studies at once with ConcurrentJobs 1 and 2: all succeed, each its
    SEG; Orthanc's peak RSS reported;
  * a model that cannot be opened, or an unknown key: Orthanc refuses to
    start, the reason in its log.

    /usr/bin/python3 tests/test_orthanc.py --segmamba build/segmamba \
        --plugin build/src/orthanc/libOrthancSegMamba.so --venv build/dicom-venv [--seed S]

Exit 77 (skipped) without Debian's orthanc or dcmtk's storescu.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import orthanc_harness as oh  # noqa: E402  (standard library only at import)

MODEL = "tiny"


def plugin_config(model, card, **extra):
    section = {"Models": {MODEL: {"Path": model, "Card": card, "TTA": False}}, "Threads": 1,
               "ConcurrentJobs": 1}
    section.update(extra)
    return {"SegMamba": section}


def seg_series_ids(orthanc, study_uid=None):
    return orthanc.find_seg_instances(study_uid)


def segment(orthanc, series, model=MODEL, **kw):
    body = {"Model": model, "Series": series}
    body.update(kw)
    return orthanc.post("/segmamba/segment", body)


def job_count(orthanc):
    status, body = orthanc.get("/jobs")
    return len(body) if status == 200 else -1


def metric(orthanc, name):
    status, body = orthanc.get("/tools/metrics-prometheus")
    text = body.decode() if isinstance(body, bytes) else str(body)
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == name:
            return float(parts[1])
    return None


def send_study(orthanc, study, rest=False):
    """The study's 4 series into Orthanc, by storescu or (rest) POST
    /instances; returns their series IDs in channel order."""
    if rest:
        for f in (f for files in study["files"] for f in files if f):
            with open(f, "rb") as fh:
                orthanc.upload(fh.read())
    else:
        oh.storescu(orthanc.dicom_port, study["dirs"], orthanc.aet)
    by = orthanc.series_by_description(orthanc.lookup(study["study_uid"], "Study")[0])
    return [by[d] for d in study["descriptions"]]


def check_rest_segment(args, tmp, env, check):
    """REST segment against predict --dicom-seg, bad requests and data."""
    import nibabel as nib
    import numpy as np

    model, card = env["model"], env["card"]
    study = oh.write_phantom_study(os.path.join(tmp, "a"), args.seed, non_image=True)
    ref_seg, ref_labels = os.path.join(tmp, "ref-seg.dcm"), os.path.join(tmp, "ref.nii.gz")
    t0 = time.perf_counter()
    p = subprocess.run([args.segmamba, "predict", "--model", model, "--card", card, "--no-tta",
                        "--quiet", "--threads", "1", "-i"] + study["dirs"] +
                       ["-o", ref_labels, "--dicom-seg", ref_seg], capture_output=True, text=True)
    t_predict = time.perf_counter() - t0
    if not check("predict --dicom-seg on the 4 series (the reference)", p.returncode == 0,
                 p.stderr):
        return
    bad = oh.write_phantom_study(os.path.join(tmp, "bad"), args.seed + 1, missing_slice=True)
    with oh.Orthanc(os.path.join(tmp, "orthanc-rest"), plugins=[args.plugin],
                    users={"alice": "s3cret"}, config_extra=plugin_config(model, card)) as o:
        status, body = o.get("/segmamba/models")
        check("GET /segmamba/models: the model, its family, channels and labels",
              status == 200 and len(body) == 1 and body[0]["Name"] == MODEL and
              body[0]["Channels"] == ["t2w", "t2f", "t1n", "t1c"] and
              body[0]["Labels"] == ["background", "NCR", "ED", "ET"] and
              body[0]["Family"] == "SegMamba v1" and body[0]["TTA"] is False and
              body[0]["MambaType"] in ("v3", "v2", "none"), (status, body))
        status, _ = o.get("/segmamba/models", auth=False)
        check("GET /segmamba/models without credentials: 401", status == 401, status)
        status, _ = o.post("/segmamba/segment", {"Model": MODEL, "Series": []}, auth=False)
        check("POST /segmamba/segment without credentials: 401", status == 401, status)
        status, _ = o.get("/segmamba/segment")
        check("GET /segmamba/segment: 405", status == 405, status)

        series = send_study(o, study)
        oh.storescu(o.dicom_port, [study["sr_dir"]], o.aet)
        t0 = time.perf_counter()
        status, body = segment(o, series)
        if not check("POST /segmamba/segment: 200 with the job's ID and path",
                     status == 200 and body.get("Path") == f"/jobs/{body.get('ID')}",
                     (status, body)):
            return
        job = o.wait_job(body["ID"], 120)
        t_plugin = time.perf_counter() - t0
        content = job.get("Content", {})
        if not check(f"the job: Success ({t_plugin:.1f} s through the plugin, "
                     f"{t_predict:.1f} s for predict on folders)", job.get("State") == "Success",
                     job):
            return
        check("the job: progress 100, type SegMamba", job.get("Progress") == 100 and
              job.get("Type") == "SegMamba", job)
        segs = seg_series_ids(o, study["study_uid"])
        check("one SEG stored in the study; Content names it and its series",
              segs == [content.get("SegInstance")] and
              o.get(f"/instances/{segs[0]}")[1].get("ParentSeries") == content.get("SegSeries"),
              (segs, content))
        data = o.download(segs[0]) if segs else None
        with open(ref_seg, "rb") as f:
            ref = f.read()
        ok, why = oh.seg_equal(oh.decode_seg(data or b""), oh.decode_seg(ref))
        check("the SEG from Orthanc equals predict --dicom-seg's (masks, labels, codes, "
              "references)", ok, why)
        decoded = oh.decode_seg(data or b"")
        check("the SEG references the 4 source series", set(decoded["referenced_series"]) ==
              set(study["series_uids"]), decoded["referenced_series"].keys())
        seg_path = os.path.join(tmp, "plugin-seg.dcm")
        with open(seg_path, "wb") as f:
            f.write(data or b"")
        if shutil.which("dciodvfy"):
            p = subprocess.run(["dciodvfy", seg_path], capture_output=True, text=True)
            errors = [l for l in (p.stdout + p.stderr).splitlines() if l.startswith("Error")]
            check("the plugin's SEG: dciodvfy reports no error", not errors, "\n".join(errors))
        else:
            print("note: dciodvfy not installed; the SEG's IOD check skipped")
        labels = np.asarray(nib.load(ref_labels).dataobj)
        want = {n: int(np.count_nonzero(labels == k)) for k, n in ((1, "NCR"), (2, "ED"),
                                                                      (3, "ET"))}
        got = {n: v.get("Voxels") for n, v in content.get("Labels", {}).items()}
        check("Content: voxels per label as predict's label map; mL at 1 mm^3 a voxel",
              got == want and all(abs(v["VolumeML"] - v["Voxels"] / 1000) < 1e-3
                                  for v in content["Labels"].values()), (got, want))
        check("Content: model, series, TTA, seconds", content.get("Model") == MODEL and
              content.get("Series") == series and content.get("TTA") is False and
              content.get("Seconds", 0) > 0, content)

        status, body = segment(o, series)
        job2 = o.wait_job(body.get("ID", ""), 120)
        c2 = job2.get("Content", {})
        check("the same request again: Success, the same SEG (AlreadyStored), none added",
              job2.get("State") == "Success" and c2.get("StoreStatus") == "AlreadyStored" and
              c2.get("SegInstance") == content.get("SegInstance") and
              seg_series_ids(o, study["study_uid"]) == segs, (job2, seg_series_ids(o)))
        check("metrics: segmamba_jobs_done 2, seconds counted",
              metric(o, "segmamba_jobs_done") == 2 and metric(o, "segmamba_job_seconds_count") == 2
              and metric(o, "segmamba_job_seconds_sum") > 0, o.get("/tools/metrics-prometheus"))

        # Bad requests: 400 with a message, nothing queued.
        n_jobs = job_count(o)
        cases = [
            ("unknown model", {"Model": "nope", "Series": series}, "unknown model \"nope\""),
            ("a path as the model", {"Model": "/etc/passwd", "Series": series}, "unknown model"),
            ("3 series for 4 channels", {"Model": MODEL, "Series": series[:3]}, "takes 4 series"),
            ("a series that does not exist",
             {"Model": MODEL, "Series": series[:3] + ["0" * 8 + "-" + "-".join(["1" * 8] * 4)]},
             "does not exist"),
            ("an ID that is not one", {"Model": MODEL, "Series": series[:3] + ["../instances"]},
             "not an Orthanc series ID"),
            ("not JSON", "{\"Model\": ", "invalid JSON"),
            ("an unknown key", {"Model": MODEL, "Series": series, "Path": "/tmp"}, "unknown key"),
        ]
        for what, req, msg in cases:
            status, body = o.post("/segmamba/segment", req)
            try:
                error = json.loads(body)["Error"] if isinstance(body, bytes) else body["Error"]
            except (ValueError, KeyError, TypeError):
                error = None
            check(f"bad request, {what}: 400 with {{\"Error\": message}}",
                  status == 400 and isinstance(error, str) and msg in error, (status, body))
        check("bad requests queued no job", job_count(o) == n_jobs, (job_count(o), n_jobs))

        # Bad data: the job fails with the engine's message, nothing stored.
        bad_series = send_study(o, bad)
        status, body = segment(o, bad_series)
        job = o.wait_job(body.get("ID", ""), 120)
        err = job.get("Content", {}).get("Error", "")
        nb = bad["missing"]["neighbours"]
        print(f"note: the missing slice's job says: {err}")
        check("a series with a missing slice: Failure naming the SOP Instance UIDs around the gap",
              job.get("State") == "Failure" and nb[0] in err and nb[1] in err and
              job["Content"].get("Status") == "E_FORMAT", job)
        sr = o.lookup(study["sr_series_uid"], "Series")
        status, body = segment(o, series[:3] + sr)
        job = o.wait_job(body.get("ID", ""), 120)
        check("a non-image series as a channel: Failure with the engine's message",
              status == 200 and job.get("State") == "Failure" and
              job.get("Content", {}).get("Error"), (status, job))
        check("no SEG stored for the bad inputs", seg_series_ids(o, bad["study_uid"]) == [] and
              seg_series_ids(o, study["study_uid"]) == segs)
        check("metrics: segmamba_jobs_failed 2", metric(o, "segmamba_jobs_failed") == 2,
              metric(o, "segmamba_jobs_failed"))
        status, _ = o.get("/system")
        check("Orthanc still answers after all of it", status == 200 and o.running(), status)


def wait_running(orthanc, job, timeout=120):
    """Waits until the job computes its windows (Running, progress >= 20);
    returns its last JSON."""
    t_end = time.monotonic() + timeout
    while True:
        status, j = orthanc.get(f"/jobs/{job}")
        if status == 200 and j.get("State") == "Running" and j.get("Progress", 0) >= 20:
            return j
        if time.monotonic() > t_end or (status == 200 and j.get("State") in ("Success",
                                                                             "Failure")):
            return j if status == 200 else {}
        time.sleep(0.05)


def check_kill9(args, tmp, env, check):
    """A job killed with Orthanc, and one queued behind it: both come back."""
    model, card = env["model"], env["card"]
    # A larger phantom than the others, with TTA: a job of several seconds.
    studies = [oh.write_phantom_study(os.path.join(tmp, f"k{i}"), args.seed + 10 + i,
                                      shape=(48, 96, 96)) for i in range(2)]
    cfg = plugin_config(model, card)
    cfg["SegMamba"]["Models"][MODEL]["TTA"] = True  # a longer job, to be killed in
    with oh.Orthanc(os.path.join(tmp, "orthanc-kill"), plugins=[args.plugin],
                    config_extra=dict(cfg, ConcurrentJobs=1)) as o:
        ids = [send_study(o, s, rest=True) for s in studies]
        jobs = [segment(o, s)[1].get("ID", "") for s in ids]
        j = wait_running(o, jobs[0])
        st2, j2 = o.get(f"/jobs/{jobs[1]}")
        o.kill9()
        check("killed while job 1 was Running within its windows and job 2 Pending",
              j.get("State") == "Running" and j2.get("State") == "Pending", (j, j2))
        o.start()
        st, j = o.get(f"/jobs/{jobs[0]}")
        print(f"note: after kill -9 and a restart, job 1 is {j.get('State')} "
              f"(progress {j.get('Progress')}), job 2 {o.get(f'/jobs/{jobs[1]}')[1].get('State')}")
        done = [o.wait_job(jid, 180) for jid in jobs]
        check("after kill -9 and a restart: both jobs end in Success",
              all(d.get("State") == "Success" for d in done), done)
        segs = [seg_series_ids(o, s["study_uid"]) for s in studies]
        check("one SEG per study, the ones the jobs name", all(
            len(s) == 1 and s[0] == d.get("Content", {}).get("SegInstance")
            for s, d in zip(segs, done)), (segs, done))

        # Cancel while it computes, resubmit, and a clean stop (SIGTERM) while
        # the resubmitted job runs: it comes back after the restart.
        for s in segs:
            o.delete(f"/instances/{s[0]}")
        job = segment(o, ids[0])[1].get("ID", "")
        wait_running(o, job)
        status, _ = o.post(f"/jobs/{job}/cancel", {})
        j = o.wait_job(job, 60)
        check("cancel while it computes: the job stops (Failure, canceled), nothing stored",
              status == 200 and j.get("State") == "Failure" and
              j.get("ErrorDescription", "").lower().find("cancel") >= 0 and
              seg_series_ids(o, studies[0]["study_uid"]) == [], (status, j))
        status, _ = o.post(f"/jobs/{job}/resubmit", {})
        wait_running(o, job)
        rc = o.stop()
        check("Orthanc stops cleanly (SIGTERM) while a SegMamba job runs", rc == 0,
              (rc, o.log_tail(15)))
        o.start()
        j = o.wait_job(job, 180)
        check("the resubmitted job, stopped with Orthanc, ends in Success after a restart",
              j.get("State") == "Success" and
              len(seg_series_ids(o, studies[0]["study_uid"])) == 1, j)


def check_autosegment(args, tmp, env, check):
    """AutoSegment on a stable study, forwarded to a second Orthanc."""
    model, card = env["model"], env["card"]
    study = oh.write_phantom_study(os.path.join(tmp, "auto"), args.seed + 20)
    rules = [{"Model": MODEL, "Channels": [{"SeriesDescription": f"^phantom {c}$",
                                            "Modality": "MR"}
                                           for c in ("t2w", "t2f", "t1n", "t1c")]}]
    with oh.Orthanc(os.path.join(tmp, "orthanc-b"), name="NODEB") as b:
        cfg = plugin_config(model, card, AutoSegment=rules, ForwardTo="nodeb")
        cfg["DicomModalities"] = {"nodeb": ["NODEB", "127.0.0.1", b.dicom_port]}
        with oh.Orthanc(os.path.join(tmp, "orthanc-auto"), plugins=[args.plugin],
                        config_extra=cfg) as o:
            oh.storescu(o.dicom_port, study["dirs"], o.aet)
            t_end = time.monotonic() + 120
            while time.monotonic() < t_end and not b.find_seg_instances(study["study_uid"]):
                time.sleep(0.5)
            got_b = b.find_seg_instances(study["study_uid"])
            segs = seg_series_ids(o, study["study_uid"])
            check("AutoSegment: a C-STORE of the 4 series gives a SEG, no REST call",
                  len(segs) == 1, (segs, o.log_tail(20)))
            check("ForwardTo: the SEG arrived in the second Orthanc, the same instance",
                  len(got_b) == 1 and segs and b.download(got_b[0]) == o.download(segs[0]),
                  got_b)
            oh.storescu(o.dicom_port, study["dirs"][:1], o.aet)  # the study changes again
            time.sleep(o.config["StableAge"] + 3)
            _, jobs = o.get("/jobs?expand")
            mine = [j for j in jobs if j.get("Type") == "SegMamba"]
            check("the study stable again: not segmented twice",
                  len(mine) == 1 and len(seg_series_ids(o, study["study_uid"])) == 1,
                  [(j["ID"], j["State"]) for j in mine])


def check_load(args, tmp, env, check):
    """8 studies at once, ConcurrentJobs 1 then 2."""
    model, card = env["model"], env["card"]
    studies = [oh.write_phantom_study(os.path.join(tmp, f"load{i}"), args.seed + 30 + i)
               for i in range(8)]
    o = oh.Orthanc(os.path.join(tmp, "orthanc-load"), plugins=[args.plugin],
                   config_extra=dict(plugin_config(model, card), ConcurrentJobs=2))
    with o:
        ids = [send_study(o, s, rest=True) for s in studies]
    for concurrent in (1, 2):
        o.config["SegMamba"]["ConcurrentJobs"] = concurrent
        with o:
            for s in seg_series_ids(o):
                o.delete(f"/instances/{s}")
            t0 = time.perf_counter()
            jobs = [segment(o, s)[1].get("ID", "") for s in ids]
            done = [o.wait_job(j, 300) for j in jobs]
            dt = time.perf_counter() - t0
            segs = [seg_series_ids(o, s["study_uid"]) for s in studies]
            peak = o.peak_rss_mib()
        check(f"8 studies, ConcurrentJobs {concurrent}: all Success, one SEG each "
              f"({dt:.1f} s, {dt / 8:.2f} s a study; Orthanc peak RSS {peak:.0f} MiB)",
              all(d.get("State") == "Success" for d in done) and all(len(s) == 1 for s in segs),
              ([d.get("State") for d in done], segs))


def check_refused_start(args, tmp, env, check):
    garbage = os.path.join(tmp, "garbage.safetensors")
    with open(garbage, "w") as f:
        f.write("not a checkpoint\n")
    for what, section, msg in [
        ("a model that cannot be opened",
         {"Models": {MODEL: {"Path": os.path.join(tmp, "missing.safetensors")}}}, "cannot open"),
        ("a model file that is not a checkpoint (the engine's message)",
         {"Models": {MODEL: {"Path": garbage}}}, "garbage.safetensors: safetensors header length"),
        ("an unknown key", {"Models": {}, "Thread": 1}, "unknown key \"Thread\""),
        ("a ForwardTo naming no modality", {"Models": {}, "ForwardTo": "nowhere"},
         "no modality \"nowhere\""),
        ("a rule naming no model", {"AutoSegment": [{"Model": "x", "Channels": []}]},
         "no model named \"x\""),
    ]:
        o = oh.Orthanc(os.path.join(tmp, "orthanc-refuse"), plugins=[args.plugin],
                       config_extra={"SegMamba": section})
        try:
            o.start(timeout=20)
            refused = False
        except oh.OrthancError:
            refused = True
        finally:
            o.stop()
        check(f"Orthanc refuses to start with {what}, the reason in its log",
              refused and msg in o.log_text(), o.log_tail(10, this_run=True))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--segmamba", required=True)
    ap.add_argument("--plugin", required=True)
    ap.add_argument("--venv", required=True)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--only", default=None, help="one part: rest, kill9, auto, load, refuse")
    args = ap.parse_args()
    if shutil.which(oh.STORESCU) is None or not os.path.exists(oh.ORTHANC):
        print("skip: needs Debian's orthanc and dcmtk's storescu")
        sys.exit(77)
    args.segmamba, args.plugin = os.path.abspath(args.segmamba), os.path.abspath(args.plugin)
    oh.ensure_venv(args.venv)
    os.environ.update(OMP_WAIT_POLICY="passive", OMP_NUM_THREADS="1")
    from checks import check, results  # noqa: E402
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(3), "little")
    print(f"seed {args.seed}", flush=True)
    _, _, test_cohort = oh._dicom_modules()
    t0 = time.perf_counter()
    parts = {"refuse": check_refused_start, "rest": check_rest_segment, "kill9": check_kill9,
             "auto": check_autosegment, "load": check_load}
    with tempfile.TemporaryDirectory(prefix="test-orthanc-") as tmp:
        model, card = test_cohort.make_model(tmp)
        env = {"model": model, "card": card}
        for name, fn in parts.items():
            if args.only in (None, name):
                t = time.perf_counter()
                os.makedirs(os.path.join(tmp, name))
                fn(args, os.path.join(tmp, name), env, check)
                print(f"  ({name}: {time.perf_counter() - t:.1f} s)", flush=True)
        left = subprocess.run(["pgrep", "-f", tmp], capture_output=True, text=True).stdout
        check("no Orthanc of this test left running", not left.strip(), left)
    print(f"{results['passed']} passed, {results['failed']} failed in "
          f"{time.perf_counter() - t0:.1f} s")
    sys.exit(1 if results["failed"] or not results["passed"] else 0)


if __name__ == "__main__":
    main()
