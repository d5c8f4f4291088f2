"""Real Orthanc processes for the tests of the Orthanc plugin (issue 26).

What tests/test_orthanc.py shares with its helpers, in plain functions:

  * free_port(); Orthanc(workdir, name, plugins, config_extra, users): one
    Debian Orthanc (/usr/sbin/Orthanc) on free loopback ports with its
    storage, index, JSON config and log under workdir; start(), stop()
    (SIGTERM, then SIGKILL), kill9(), restart() (same ports and storage), a
    context manager that always stops it; log_tail(n); pid; peak_rss_mib();
    REST helpers get/post/put/delete returning (status, JSON or bytes) and
    never raising on HTTP errors; wait_job(); instances_of_series(),
    series_of_study(), find_seg_instances(), download();
  * storescu(port, paths): dcmtk's storescu, raising with its stderr;
  * write_phantom_study(out_dir, seed, ...): a BraTS-like phantom
    (tools/phantom.py) as 4 DICOM MR series of one study (as
    tests/dicom_checks.py writes them), optionally with a slice missing and
    a non-image (SR) series;
  * decode_seg(bytes or path) and seg_equal(a, b): a DICOM SEG's segments,
    per-frame masks keyed by the source instance each frame references,
    and its references; two SEGs compared voxel for voxel.

Only the standard library is imported at module level: the phantom writer
and the SEG decoder import numpy, nibabel and pydicom when called, so they
need the DICOM venv of tests/test_dicom.py (ensure_venv() below re-executes
the calling script under it). Orthanc and storescu need neither.

Self-test against plain Debian Orthanc (no plugin), from a build folder:

    /usr/bin/python3 tests/orthanc_harness.py --segmamba build/segmamba \
        --venv build/dicom-venv
"""

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ORTHANC = "/usr/sbin/Orthanc"
STORESCU = "storescu"
MR = "1.2.840.10008.5.1.4.1.1.4"
SEG = "1.2.840.10008.5.1.4.1.1.66.4"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def ensure_venv(venv):
    """Makes tests/test_dicom.py's venv (pydicom, highdicom, SimpleITK over
    Debian's numpy and nibabel) at venv if needed and re-executes the
    running script under its Python (os.execv: returns only when already
    running there)."""
    sys.path.insert(0, HERE)
    import test_dicom  # stdlib only at import time

    test_dicom.ensure_venv(os.path.abspath(venv))


def free_port():
    """A TCP port free on the loopback interface now (the kernel's choice;
    another process may take it before it is used, which is unlikely)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_ports(n):
    """n distinct free ports (each socket held until all are chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent():
    """In the child before exec: SIGKILL when the parent (thread) dies."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def wait_until(fn, timeout=60, poll=0.2):
    """Calls fn() every poll s until it returns something true; returns
    that, or the last (false) value after timeout s."""
    t_end = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > t_end:
            return v
        time.sleep(poll)


def dciodvfy_errors(seg):
    """dciodvfy's "Error" lines for a DICOM file (bytes or a path); [] when
    it finds none. Raises FileNotFoundError without dciodvfy."""
    with tempfile.TemporaryDirectory(prefix="dciodvfy-") as tmp:
        if isinstance(seg, (bytes, bytearray)):
            path = os.path.join(tmp, "object.dcm")
            with open(path, "wb") as f:
                f.write(seg)
        else:
            path = str(seg)
        p = subprocess.run(["dciodvfy", path], capture_output=True, text=True)
    return [line for line in (p.stdout + p.stderr).splitlines() if line.startswith("Error")]


def _proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _proc_status(pid):
    """{field: kiB} of /proc/PID/status's Vm* lines; {} once it is gone."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Vm"):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


class RssSampler(threading.Thread):
    """Samples a process's VmRSS and VmHWM every interval seconds until
    stop() or the process ends; peak_kib is the highest seen (VmHWM is the
    kernel's own peak, so a spike between samples is counted too while the
    process lives)."""

    def __init__(self, pid, interval=0.1):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self.samples = 0
        self._stop_event = threading.Event()

    def sample(self):
        st = _proc_status(self.pid)
        if st:
            self.samples += 1
            self.peak_kib = max(self.peak_kib, st.get("VmRSS", 0), st.get("VmHWM", 0))
        return bool(st)

    def run(self):
        while not self._stop_event.is_set() and self.sample():
            self._stop_event.wait(self.interval)

    def stop(self):
        self.sample()
        self._stop_event.set()
        if self.is_alive():
            self.join(5)


class OrthancError(RuntimeError):
    pass


class Orthanc:
    """One Orthanc process on free loopback ports, everything under workdir:

        config.json, storage/, index/ (SQLite), orthanc.log (its --verbose
        log; each start appends to it after a '==== start N ====' line).

    Orthanc(workdir, name="ORTHANC", plugins=[...], config_extra={...},
    users={"user": "pass"} or None): name is its DICOM AET (and "Name");
    plugins are paths to .so files (or folders) put in "Plugins" (a path
    that does not exist raises FileNotFoundError: Orthanc would skip it
    without a word; plugins() lists what it loaded);
    config_extra is merged over the defaults last (e.g. "DicomModalities",
    "ConcurrentJobs", a "SegMamba" section; None values delete a key).
    With users, AuthenticationEnabled is true with those RegisteredUsers and
    the REST helpers send the first user's credentials (auth=False sends
    none); without, authentication is off.

    Used as a context manager it is started on entry (unless already) and
    always stopped on exit. Attributes: http_port, dicom_port, aet, url,
    config (the dict written), config_path, log_path, pid, proc.
    env: variables added to the process's environment (OMP_WAIT_POLICY is
    passive unless set). The process gets SIGKILL if the thread that started
    it dies (PR_SET_PDEATHSIG), so a test killed by its runner leaves no
    Orthanc behind; start it from the main thread."""

    def __init__(self, workdir, name="ORTHANC", plugins=(), config_extra=None, users=None,
                 verbose=True, env=None):
        for p in plugins:  # Orthanc 1.10 skips a plugin path that does not exist, silently
            if not os.path.exists(p):
                raise FileNotFoundError(f"Orthanc plugin {p} does not exist")
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.aet = name
        self.http_port, self.dicom_port = _free_ports(2)
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.users = dict(users) if users else None
        self.verbose = verbose
        self.env = dict(env or {})
        self.proc = None
        self.sampler = None
        self.starts = 0
        self.log_path = os.path.join(self.workdir, "orthanc.log")
        self.config_path = os.path.join(self.workdir, "config.json")
        self._log_offset = 0
        self.peaks_mib = []  # the peak RSS of each finished run
        self.config = {
            "Name": name,
            "StorageDirectory": os.path.join(self.workdir, "storage"),
            "IndexDirectory": os.path.join(self.workdir, "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": name,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(self.users),
            "Plugins": [os.path.abspath(p) for p in plugins],
            "DicomModalities": {},
            "SaveJobs": True,
            "StableAge": 2,
            "JobsHistorySize": 100,  # Orthanc's 10 would forget finished jobs under load
            "LogExportedResources": False,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowStore": True,
        }
        if self.users:
            self.config["RegisteredUsers"] = dict(self.users)
        for k, v in (config_extra or {}).items():
            if v is None:
                self.config.pop(k, None)
            else:
                self.config[k] = v
        self.write_config()

    # ---- process --------------------------------------------------------

    def write_config(self):
        """(Re)writes config.json from self.config (e.g. after changing it
        between a stop and a restart)."""
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=2)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=30):
        """Launches Orthanc and waits until GET /system answers (any HTTP
        status: 401 counts, the server is up). Raises OrthancError with the
        log's tail if it exits or does not answer within timeout s."""
        if self.running():
            raise OrthancError(f"Orthanc {self.aet} is already running (pid {self.pid})")
        self.starts += 1
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            log.write(f"==== start {self.starts}: {ORTHANC} {self.config_path} ====\n".encode())
            log.flush()
            args = [ORTHANC] + (["--verbose"] if self.verbose else []) + [self.config_path]
            env = dict(os.environ, **self.env)
            env.setdefault("OMP_WAIT_POLICY", "passive")
            # dcmtk (Orthanc's DICOM) leaves Nagle's algorithm on unless
            # TCP_NODELAY=1: with storescu's the same, each C-STORE waits
            # for a delayed ACK (about 90 ms an instance on loopback here).
            env.setdefault("TCP_NODELAY", "1")
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.workdir, env=env,
                                         start_new_session=True, preexec_fn=_die_with_parent)
        self.sampler = RssSampler(self.proc.pid)
        self.sampler.start()
        t_end = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self._finish_run()
                raise OrthancError(f"Orthanc {self.aet} exited with {rc} while starting:\n"
                                   + self.log_tail(40, this_run=True))
            status, _ = self.get("/system", timeout=2)
            if status:
                return self
            if time.monotonic() > t_end:
                self.kill9()
                raise OrthancError(f"Orthanc {self.aet} did not answer on {self.url} within "
                                   f"{timeout} s:\n" + self.log_tail(40, this_run=True))
            time.sleep(0.1)

    def _finish_run(self):
        if self.sampler:
            self.sampler.stop()
            self.peaks_mib.append(self.sampler.peak_kib / 1024)
            self.sampler = None

    def stop(self, timeout=30):
        """SIGTERM, wait up to timeout s, then SIGKILL; returns the exit
        status (None when it was not running)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.sampler and self.sampler.sample()
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._finish_run()
        return self.proc.returncode

    def kill9(self):
        """SIGKILL now (a crash: no clean shutdown), and wait for it."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.sampler and self.sampler.sample()
            self.proc.kill()
            self.proc.wait()
        self._finish_run()
        return self.proc.returncode

    def restart(self, timeout=30):
        """Stops it if it runs (SIGTERM) and starts it again on the same
        ports, storage and index (config.json rewritten from self.config)."""
        self.stop()
        self.write_config()
        return self.start(timeout)

    def __enter__(self):
        if not self.running():
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def log_tail(self, n=40, this_run=False):
        """The last n lines of orthanc.log (this_run: only since the last
        start)."""
        try:
            with open(self.log_path, "rb") as f:
                if this_run:
                    f.seek(self._log_offset)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-n:])

    def log_text(self, this_run=True):
        """The whole log (this_run: since the last start)."""
        return self.log_tail(10 ** 9, this_run)

    def peak_rss_mib(self):
        """The peak resident memory of the running process (VmHWM, or the
        highest VmRSS sampled every 0.1 s if higher) in MiB; for a stopped
        one, its last run's peak; 0 if it never ran."""
        if self.sampler:
            self.sampler.sample()
            return self.sampler.peak_kib / 1024
        return self.peaks_mib[-1] if self.peaks_mib else 0.0

    # ---- REST -------------------------------------------------------------

    def request(self, method, path, body=None, auth=True, timeout=60, headers=None):
        """One HTTP request to this Orthanc: body a dict/list (sent as
        JSON), str or bytes. Returns (status, answer): the answer parsed
        when it is JSON, else bytes. Never raises for an HTTP error status;
        a connection failure gives (0, its message as str)."""
        data = None
        hdrs = dict(headers or {})
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            data = body.encode()
        elif body is not None:
            data = bytes(body)
            hdrs.setdefault("Content-Type", "application/octet-stream")
        if auth and self.users:
            user, password = next(iter(self.users.items()))
            if isinstance(auth, tuple):
                user, password = auth
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            hdrs["Authorization"] = "Basic " + token
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, _parse(r.read(), r.headers.get("Content-Type", ""))
        except urllib.error.HTTPError as e:
            return e.code, _parse(e.read(), e.headers.get("Content-Type", "") if e.headers else "")
        except (urllib.error.URLError, OSError) as e:
            return 0, str(getattr(e, "reason", e))

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=b"", **kw):
        return self.request("POST", path, body, **kw)

    def put(self, path, body=b"", **kw):
        return self.request("PUT", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def wait_job(self, job_id, timeout=120, poll=0.2):
        """Polls /jobs/ID until its State is Success or Failure; returns
        the job's JSON. On timeout, or if Orthanc exits, returns the last
        answer (a dict; {"State": None, ...} when there was none) with
        "TimedOut": True or "OrthancExited": True added, so a caller's
        State check fails instead of the script hanging."""
        t_end = time.monotonic() + timeout
        last = {"State": None, "ID": job_id}
        while True:
            status, body = self.get(f"/jobs/{job_id}", timeout=10)
            if status == 200 and isinstance(body, dict):
                last = body
                if body.get("State") in ("Success", "Failure"):
                    return body
            elif status:
                last = {"State": None, "ID": job_id, "HttpStatus": status, "Answer": body}
            if not self.running():
                return dict(last, OrthancExited=True)
            if time.monotonic() > t_end:
                return dict(last, TimedOut=True)
            time.sleep(poll)

    def _ids(self, path, key):
        status, body = self.get(path)
        return list(body.get(key, [])) if status == 200 and isinstance(body, dict) else []

    def studies(self):
        status, body = self.get("/studies")
        return body if status == 200 else []

    def series(self):
        status, body = self.get("/series")
        return body if status == 200 else []

    def instances(self):
        status, body = self.get("/instances")
        return body if status == 200 else []

    def series_of_study(self, study_id):
        """The Orthanc IDs of a study's series ([] if unknown)."""
        return self._ids(f"/studies/{study_id}", "Series")

    def instances_of_series(self, series_id):
        """The Orthanc IDs of a series' instances ([] if unknown)."""
        return self._ids(f"/series/{series_id}", "Instances")

    def lookup(self, uid, level=None):
        """Orthanc IDs of resources with this DICOM UID (/tools/lookup),
        optionally only of one level ("Study", "Series", "Instance")."""
        status, body = self.post("/tools/lookup", uid)
        if status != 200:
            return []
        return [r["ID"] for r in body if level is None or r.get("Type") == level]

    def series_by_description(self, study_id=None):
        """{SeriesDescription: Orthanc series ID} (of one study or all)."""
        ids = self.series_of_study(study_id) if study_id else self.series()
        out = {}
        for s in ids:
            status, body = self.get(f"/series/{s}")
            if status == 200:
                out[body.get("MainDicomTags", {}).get("SeriesDescription", "")] = s
        return out

    def find_seg_instances(self, study_uid=None):
        """The Orthanc IDs of the stored instances of Modality SEG
        (/tools/find at Instance level), optionally of one study."""
        query = {"Modality": "SEG"}
        if study_uid:
            query["StudyInstanceUID"] = study_uid
        status, body = self.post("/tools/find", {"Level": "Instance", "Query": query})
        return list(body) if status == 200 and isinstance(body, list) else []

    def download(self, instance_id):
        """The bytes of a stored instance (/instances/ID/file); None if the
        request failed."""
        status, body = self.get(f"/instances/{instance_id}/file")
        return body if status == 200 and isinstance(body, bytes) else None

    def metrics(self):
        """/tools/metrics-prometheus as {"name" or "name{labels}": float}
        ({} if it did not answer)."""
        status, body = self.get("/tools/metrics-prometheus")
        if status != 200:
            return {}
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        out = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            parts = line.split()
            try:
                out[parts[0]] = float(parts[1])
            except (IndexError, ValueError):
                pass
        return out

    def plugins(self):
        """The IDs of the loaded plugins (GET /plugins), [] on failure."""
        status, body = self.get("/plugins")
        return body if status == 200 and isinstance(body, list) else []

    def jobs(self):
        """Every job Orthanc knows (GET /jobs?expand), [] on failure."""
        status, body = self.get("/jobs?expand")
        return body if status == 200 and isinstance(body, list) else []

    def upload(self, data):
        """POST /instances with a DICOM file's bytes; (status, answer)."""
        return self.post("/instances", data)

    def tags(self, instance_id):
        """The simplified tags of an instance ({} on failure)."""
        status, body = self.get(f"/instances/{instance_id}/simplified-tags")
        return body if status == 200 else {}


def _parse(data, content_type):
    if "json" in content_type:
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return data
    return data


def storescu(port, files_or_dirs, aet_called="ORTHANC", host="127.0.0.1", aet_calling="STORESCU",
             timeout=300):
    """Sends files and folders (recursively: +sd +r) to a DICOM node with
    dcmtk's storescu, proposing the SOP classes of the files (-R: its
    default list lacks SEG, for one); raises RuntimeError with its output if it fails or
    logs an error. Returns its stderr."""
    paths = [str(p) for p in ([files_or_dirs] if isinstance(files_or_dirs, (str, os.PathLike))
                              else files_or_dirs)]
    cmd = [STORESCU, "-aet", aet_calling, "-aec", aet_called, "-to", "30", "-R", "+sd", "+r", host,
           str(port)] + paths
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, TCP_NODELAY="1"))
    errors = [line for line in (p.stdout + p.stderr).splitlines() if line.startswith(("E:", "F:"))]
    if p.returncode != 0 or errors:
        raise RuntimeError(f"storescu to {aet_called}@{host}:{port} failed (exit {p.returncode}):\n"
                           + p.stdout + p.stderr)
    return p.stderr


# ---- phantom studies ---------------------------------------------------------

def _dicom_modules():
    """tests/dicom_checks.py (its writers), tools/phantom.py and
    tests/test_cohort.py, imported on first use (they need the venv)."""
    for d in (HERE, os.path.join(ROOT, "tools")):
        if d not in sys.path:
            sys.path.insert(0, d)
    import dicom_checks
    import phantom
    import test_cohort
    return dicom_checks, phantom, test_cohort


def write_phantom_study(out_dir, seed, shape=None, index=1, patient_id=None, missing_slice=None,
                        non_image=False):
    """A BraTS-like phantom (tools/phantom.py generate(seed, index, shape),
    shape by default tests/test_cohort.py's SHAPE) written as NIfTI (the
    BraTS layout under out_dir/nifti) and as 4 single-frame DICOM MR series
    of one study and one frame of reference, one folder per channel
    (out_dir/dicom/<channel>, descriptions "phantom t2w", "phantom t2f",
    "phantom t1n", "phantom t1c", series numbers 1 to 4), as
    tests/dicom_checks.py's check_predict_and_seg does. Patient ID
    (default "PH<seed>") and name, the study and series UIDs differ per
    seed, so several studies are several patients.

    missing_slice: None, True (the middle slice of t1c) or (channel, k):
    that slice's file is deleted (a series with a gap). non_image: also
    write a Basic Text SR (no Pixel Data) in the same study, as its own
    series (out_dir/dicom/sr, description "phantom report").

    Returns a dict: nifti (the 4 channel paths), seg_nifti (the reference
    label map), dirs (the 4 folders), study_uid, frame_of_reference,
    patient_id, series_uids (4), descriptions (4), sop_uids (per channel,
    in slice order, the removed one included), files (per channel, in slice
    order; None for a removed slice), and with missing_slice: missing
    (channel, k, SOP Instance UID, path, the UIDs of slices k-1 and k+1);
    with non_image: sr_dir, sr_series_uid, sr_sop_uid."""
    import numpy as np
    from pydicom.uid import generate_uid

    dicom_checks, phantom, test_cohort = _dicom_modules()
    shape = tuple(shape or test_cohort.SHAPE)
    rng = np.random.default_rng(seed)
    case = phantom.generate(seed, index, shape)
    paths = phantom.write_case(os.path.join(out_dir, "nifti"), case)
    study, forf = generate_uid(), generate_uid()
    patient_id = patient_id or f"PH{seed}"
    out = {"nifti": list(paths["channels"]), "seg_nifti": paths["seg"], "dirs": [],
           "study_uid": study, "frame_of_reference": forf, "patient_id": patient_id,
           "series_uids": [], "descriptions": [], "sop_uids": [], "files": []}
    for n, (c, p) in enumerate(zip(phantom.CHANNELS, paths["channels"])):
        d = os.path.join(out_dir, "dicom", c)
        desc = f"phantom {c}"
        dss = dicom_checks.series_from_nifti(p, d, rng, desc, study, forf)
        for path, ds in dss:  # per-study patient, per-channel series number
            ds.PatientID = patient_id
            ds.PatientName = f"Phantom^{seed}"
            ds.AccessionNumber = f"A{seed}"[:16]
            ds.SeriesNumber = n + 1
            ds.save_as(path, enforce_file_format=True)
        out["dirs"].append(d)
        out["descriptions"].append(desc)
        out["series_uids"].append(dss[0][1].SeriesInstanceUID)
        out["sop_uids"].append([ds.SOPInstanceUID for _, ds in dss])  # written in slice order
        out["files"].append([path for path, _ in dss])
    if missing_slice:
        c, k = ("t1c", shape[0] // 2) if missing_slice is True else missing_slice
        ci = list(phantom.CHANNELS).index(c)
        if not 0 < k < shape[0] - 1:
            raise ValueError("missing_slice: an inner slice, so the series has a gap")
        path = out["files"][ci][k]
        os.remove(path)
        out["files"][ci][k] = None
        uids = out["sop_uids"][ci]
        out["missing"] = {"channel": c, "slice": k, "sop_uid": uids[k], "path": path,
                          "neighbours": (uids[k - 1], uids[k + 1])}
    if non_image:
        d = os.path.join(out_dir, "dicom", "sr")
        out.update(write_text_sr(d, study, patient_id, f"Phantom^{seed}"))
    return out


def write_text_sr(out_dir, study_uid, patient_id, patient_name="Phantom^Test"):
    """A Basic Text SR (no Pixel Data) in the given study, written with
    pydicom to out_dir/sr.dcm; returns sr_dir, sr_series_uid, sr_sop_uid."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    os.makedirs(out_dir, exist_ok=True)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = BASIC_TEXT_SR
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID = patient_name, patient_id
    ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
    ds.StudyInstanceUID = study_uid
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", ""
    ds.ReferringPhysicianName = ""
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 99
    ds.SeriesDescription = "phantom report"
    ds.Modality = "SR"
    ds.Manufacturer = "pydicom"
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = "20240101", "120000"
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    title = Dataset()
    title.CodeValue, title.CodingSchemeDesignator = "11528-7", "LN"
    title.CodeMeaning = "Radiology Report"
    ds.ConceptNameCodeSequence = Sequence([title])
    item = Dataset()
    item.RelationshipType, item.ValueType = "CONTAINS", "TEXT"
    name = Dataset()
    name.CodeValue, name.CodingSchemeDesignator, name.CodeMeaning = "121071", "DCM", "Finding"
    item.ConceptNameCodeSequence = Sequence([name])
    item.TextValue = "A phantom; no finding."
    ds.ContentSequence = Sequence([item])
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    ds.PerformedProcedureCodeSequence = Sequence()
    path = os.path.join(out_dir, "sr.dcm")
    ds.save_as(path, enforce_file_format=True)
    return {"sr_dir": out_dir, "sr_series_uid": ds.SeriesInstanceUID,
            "sr_sop_uid": ds.SOPInstanceUID}


# ---- SEG decoding --------------------------------------------------------------

def decode_seg(seg):
    """A DICOM SEG (bytes, or a path) decoded with pydicom and numpy as
    PS3.5 8.1.1 packs BINARY frames (one bit a pixel, LSB first, frames
    concatenated), as tests/dicom_checks.py's seg_decode does. Each frame is
    placed by its own functional groups: its segment (Referenced Segment
    Number) and the source instance it was derived from (Derivation Image
    Sequence), so masks are on the source grid, one (rows, cols) bool array
    per source slice. Returns a dict:

      segments: {number: {"label": str, "category": code value, "type":
                 code value, "frames": {source SOP Instance UID: mask}}}
      positions: {source SOP Instance UID: (x, y, z) of its frames}
      referenced_series: {series UID: set of SOP Instance UIDs}
      sop_instance_uid, series_uid, study_uid, frame_of_reference,
      patient_id, rows, cols, number_of_frames, sop_class_uid
      problems: [str] (bad Pixel Data length, a frame with no source or
                 given twice, a type other than BINARY)"""
    import io

    import numpy as np
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(seg) if isinstance(seg, (bytes, bytearray)) else seg)
    problems = []
    R, C = int(ds.Rows), int(ds.Columns)
    F = int(getattr(ds, "NumberOfFrames", 1))
    out = {"sop_instance_uid": ds.SOPInstanceUID, "series_uid": ds.SeriesInstanceUID,
           "study_uid": ds.StudyInstanceUID, "sop_class_uid": ds.SOPClassUID,
           "frame_of_reference": getattr(ds, "FrameOfReferenceUID", None),
           "patient_id": getattr(ds, "PatientID", None), "rows": R, "cols": C,
           "number_of_frames": F, "segments": {}, "positions": {}, "referenced_series": {},
           "problems": problems}
    for item in getattr(ds, "SegmentSequence", []):
        cat = item.SegmentedPropertyCategoryCodeSequence[0].CodeValue \
            if "SegmentedPropertyCategoryCodeSequence" in item else None
        typ = item.SegmentedPropertyTypeCodeSequence[0].CodeValue \
            if "SegmentedPropertyTypeCodeSequence" in item else None
        out["segments"][int(item.SegmentNumber)] = {
            "label": str(item.SegmentLabel), "category": cat, "type": typ, "frames": {}}
    for s in getattr(ds, "ReferencedSeriesSequence", []):
        out["referenced_series"][s.SeriesInstanceUID] = {
            i.ReferencedSOPInstanceUID for i in getattr(s, "ReferencedInstanceSequence", [])}
    if getattr(ds, "SegmentationType", None) != "BINARY":
        problems.append(f"SegmentationType {getattr(ds, 'SegmentationType', None)}, not BINARY")
        return out
    nbytes = (F * R * C + 7) // 8
    pixel = ds.PixelData
    if len(pixel) != nbytes + nbytes % 2:
        problems.append(f"{len(pixel)} bytes of Pixel Data for {F} frames of {R}x{C}")
    bits = np.unpackbits(np.frombuffer(pixel, np.uint8), bitorder="little")
    if bits.size < F * R * C:
        return out
    frames = bits[:F * R * C].reshape(F, R, C).astype(bool)
    groups = getattr(ds, "PerFrameFunctionalGroupsSequence", [])
    if len(groups) != F:
        problems.append(f"{len(groups)} per-frame functional groups for {F} frames")
    for f, item in enumerate(groups[:F]):
        s = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        try:
            uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        except (AttributeError, IndexError):
            problems.append(f"frame {f + 1}: no Derivation Image Sequence naming its source")
            continue
        if "PlanePositionSequence" in item:
            pos = item.PlanePositionSequence[0].ImagePositionPatient
            out["positions"][uid] = tuple(float(v) for v in pos)
        seg_item = out["segments"].setdefault(s, {"label": None, "category": None, "type": None,
                                                  "frames": {}})
        if s not in [int(i.SegmentNumber) for i in getattr(ds, "SegmentSequence", [])]:
            problems.append(f"frame {f + 1}: segment {s} is not in the Segment Sequence")
        if uid in seg_item["frames"]:
            problems.append(f"frame {f + 1}: segment {s} on {uid} twice")
        seg_item["frames"][uid] = frames[f]
    return out


def seg_volume(decoded, source_uids, segment):
    """One segment of a decoded SEG as a (D, rows, cols) bool array on the
    source series whose SOP Instance UIDs are given in slice order (slices
    without a frame are empty)."""
    import numpy as np

    vol = np.zeros((len(source_uids), decoded["rows"], decoded["cols"]), bool)
    frames = decoded["segments"].get(segment, {}).get("frames", {})
    for k, uid in enumerate(source_uids):
        if uid in frames:
            vol[k] = frames[uid]
    return vol


def seg_labels(decoded, source_uids):
    """The decoded SEG as a (D, rows, cols) uint8 label map on the source
    series (segment numbers; later segments win where they overlap)."""
    import numpy as np

    labels = np.zeros((len(source_uids), decoded["rows"], decoded["cols"]), np.uint8)
    for s in sorted(decoded["segments"]):
        labels[seg_volume(decoded, source_uids, s)] = s
    return labels


def seg_equal(a, b, codes=True):
    """Compares two decoded SEGs (decode_seg, or bytes/paths, decoded here):
    the same segments with the same labels (and property codes, unless
    codes=False), the same masks voxel for voxel on the source grid (a
    frame absent in one is equal to an empty frame in the other), the same
    referenced series and instances, study, frame of reference and patient.
    Returns (True, "") or (False, why: the differences found, the first
    few)."""
    import numpy as np

    a = a if isinstance(a, dict) else decode_seg(a)
    b = b if isinstance(b, dict) else decode_seg(b)
    why = [f"{n}: {p}" for n, d in (("first", a), ("second", b)) for p in d["problems"]]
    for key in ("study_uid", "frame_of_reference", "patient_id", "rows", "cols"):
        if a[key] != b[key]:
            why.append(f"{key}: {a[key]} != {b[key]}")
    if a["referenced_series"] != b["referenced_series"]:
        why.append(f"referenced series/instances differ: {sorted(a['referenced_series'])} vs "
                   f"{sorted(b['referenced_series'])}")
    if sorted(a["segments"]) != sorted(b["segments"]):
        why.append(f"segment numbers {sorted(a['segments'])} != {sorted(b['segments'])}")
    for s in sorted(set(a["segments"]) & set(b["segments"])):
        sa, sb = a["segments"][s], b["segments"][s]
        if sa["label"] != sb["label"]:
            why.append(f"segment {s}: label {sa['label']!r} != {sb['label']!r}")
        if codes and (sa["category"], sa["type"]) != (sb["category"], sb["type"]):
            why.append(f"segment {s}: codes {(sa['category'], sa['type'])} != "
                       f"{(sb['category'], sb['type'])}")
        empty = np.zeros((a["rows"], a["cols"]), bool)
        for uid in sorted(set(sa["frames"]) | set(sb["frames"])):
            ma, mb = sa["frames"].get(uid, empty), sb["frames"].get(uid, empty)
            if ma.shape != mb.shape:
                why.append(f"segment {s} on {uid}: shapes {ma.shape} != {mb.shape}")
            elif not np.array_equal(ma, mb):
                why.append(f"segment {s} on {uid}: {np.count_nonzero(ma != mb)} pixels differ")
    return (not why, "; ".join(why[:8]) + (f" (and {len(why) - 8} more)" if len(why) > 8 else ""))


# ---- self-test -------------------------------------------------------------------

def _self_test(args):
    """Against plain Debian Orthanc (no plugin): two instances, a phantom
    study by storescu, kill -9 and restart, C-STORE from one to the other
    through DicomModalities, authentication, a SEG by predict --dicom-seg
    stored and downloaded equal to the file, the bad-input variants."""
    import nibabel as nib
    import numpy as np

    from checks import check, make_tiny_model, results  # noqa: F401

    _, phantom, test_cohort = _dicom_modules()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="orthanc-harness-") as tmp:
        study = write_phantom_study(os.path.join(tmp, "case"), args.seed, non_image=True)
        bad = write_phantom_study(os.path.join(tmp, "bad"), args.seed + 1, missing_slice=True)
        check("two phantom studies: distinct patients and study UIDs",
              study["patient_id"] != bad["patient_id"] and study["study_uid"] != bad["study_uid"])
        D = test_cohort.SHAPE[0]
        check("missing slice: one file fewer in t1c, its neighbours named",
              sum(f is not None for f in bad["files"][3]) == D - 1 and
              not os.path.exists(bad["missing"]["path"]) and len(bad["missing"]["neighbours"]) == 2)
        b_dir = os.path.join(tmp, "orthanc-b")
        with Orthanc(b_dir, name="NODEB") as b, Orthanc(
                os.path.join(tmp, "orthanc-a"), name="NODEA", users={"alice": "s3cret"},
                config_extra={"DicomModalities": {"nodeb": ["NODEB", "127.0.0.1", b.dicom_port]}},
        ) as a:
            check("two Orthancs on distinct free ports",
                  len({a.http_port, a.dicom_port, b.http_port, b.dicom_port}) == 4)
            status, _ = a.get("/system", auth=False)
            check("authentication: /system without credentials is 401", status == 401, status)
            status, body = a.get("/system")
            check("authentication: with credentials 200 and the AET", status == 200 and
                  body.get("DicomAet") == "NODEA", (status, body))
            storescu(a.dicom_port, study["dirs"] + [study["sr_dir"]], "NODEA")
            ids = a.lookup(study["study_uid"], "Study")
            series = a.series_of_study(ids[0]) if ids else []
            counts = sorted(len(a.instances_of_series(s)) for s in series)
            check("storescu: the study with 5 series (4 x D slices, 1 SR) arrived",
                  len(ids) == 1 and counts == [1, D, D, D, D], counts)
            desc = a.series_by_description(ids[0]) if ids else {}
            check("series found by description", sorted(desc) == sorted(
                study["descriptions"] + ["phantom report"]), desc)
            pid = a.pid
            a.kill9()
            status, _ = a.get("/system")
            check("kill9: the process is gone, REST answers status 0", not a.running() and
                  status == 0, status)
            a.start()
            counts2 = sorted(len(a.instances_of_series(s)) for s in a.series_of_study(ids[0]))
            check("restart after kill -9: same ports, a new process, the study kept",
                  a.pid != pid and counts2 == counts, counts2)
            check(f"peak RSS measured ({a.peak_rss_mib():.1f} MiB)", a.peak_rss_mib() > 1)
            status, body = a.post("/modalities/nodeb/store",
                                  {"Resources": [desc["phantom t2w"]], "Synchronous": False})
            job = a.wait_job(body.get("ID") if isinstance(body, dict) else "none", 60)
            check("C-STORE from A to B (a DicomModalities entry) as a job: Success",
                  status == 200 and job.get("State") == "Success", (status, body, job))
            got = b.lookup(study["series_uids"][0], "Series")
            check("B has the series, all slices", len(got) == 1 and
                  len(b.instances_of_series(got[0])) == D, got)

            # A SEG from the engine, through Orthanc and back.
            model, card = test_cohort.make_model(tmp)
            seg_path = os.path.join(tmp, "seg.dcm")
            labels_path = os.path.join(tmp, "labels.nii.gz")
            env = dict(os.environ, OMP_WAIT_POLICY="passive", OMP_NUM_THREADS="1")
            p = subprocess.run([args.segmamba, "predict", "--model", model, "--card", card,
                                "--no-tta", "--quiet", "--threads", "1", "-i"] + study["dirs"] +
                               ["-o", labels_path, "--dicom-seg", seg_path],
                               capture_output=True, text=True, env=env)
            if check("predict --dicom-seg on the four series", p.returncode == 0, p.stderr):
                storescu(a.dicom_port, seg_path, "NODEA")
                segs = a.find_seg_instances()
                check("find_seg_instances: one SEG", len(segs) == 1, segs)
                check("find_seg_instances(study): the same one",
                      a.find_seg_instances(study["study_uid"]) == segs)
                data = a.download(segs[0]) if segs else None
                with open(seg_path, "rb") as f:
                    original = f.read()
                check("downloaded SEG is the file sent, byte for byte", data == original,
                      len(data or b""))
                da, db = decode_seg(data or b""), decode_seg(seg_path)
                ok, why = seg_equal(da, db)
                check("decode_seg of the download equals decode_seg of the file", ok, why)
                errors = dciodvfy_errors(data or b"")
                check("dciodvfy_errors: none in the downloaded SEG", not errors, errors)
                check("dciodvfy_errors: a truncated SEG has some",
                      dciodvfy_errors((data or b"")[:2000]) != [])
                check("the decoded SEG references the four series",
                      set(da["referenced_series"]) == set(study["series_uids"]),
                      da["referenced_series"].keys())
                labels = np.asarray(nib.load(labels_path).dataobj).transpose(2, 1, 0)
                got = seg_labels(da, study["sop_uids"][0])
                check("the decoded SEG on the source grid equals predict's label map",
                      np.array_equal(got, labels) and len(np.unique(labels)) > 1,
                      np.count_nonzero(got != labels))
                # seg_equal must see a one-voxel change and a relabelled segment.
                s, uid = next((s, u) for s in db["segments"] for u in db["segments"][s]["frames"])
                db["segments"][s]["frames"][uid] = db["segments"][s]["frames"][uid].copy()
                db["segments"][s]["frames"][uid][0, 0] ^= True
                ok1, why1 = seg_equal(da, db)
                db2 = decode_seg(seg_path)
                db2["segments"][1]["label"] = "other"
                ok2, why2 = seg_equal(da, db2)
                check("seg_equal: one voxel changed, or a label, is a difference",
                      not ok1 and "1 pixels differ" in why1 and not ok2 and "label" in why2,
                      (why1, why2))
            storescu(a.dicom_port, bad["dirs"], "NODEA")
            bid = a.lookup(bad["series_uids"][3], "Series")
            check("the series with a missing slice arrives one slice short",
                  len(bid) == 1 and len(a.instances_of_series(bid[0])) == D - 1)
            status, body = a.get("/jobs")
            check("REST get of /jobs answers a list", status == 200 and isinstance(body, list))
            status, body = a.get("/nowhere")
            check("REST: an unknown route is 404, not an exception", status == 404, status)
            m = a.metrics()
            check("metrics: Prometheus figures parsed", m.get("orthanc_count_instances", 0) >=
                  5 * D, sorted(m)[:10])
            n_before = len(a.instances())
            check("restart (SIGTERM): exit status 0", a.stop() == 0, a.log_tail(5))
            a.restart()
            check("restart: the instances kept", len(a.instances()) == n_before)
            check("stop of B: exit status 0", b.stop() == 0, b.log_tail(5))
            status, body = a.post("/modalities/nodeb/store",
                                  {"Resources": [desc["phantom t2w"]], "Synchronous": False})
            job = a.wait_job(body.get("ID") if isinstance(body, dict) else "none", 120)
            check("wait_job: a store to a stopped node ends in Failure",
                  job.get("State") == "Failure", job)
            check("jobs(): both store jobs listed, one Success and one Failure",
                  sorted(j.get("State") for j in a.jobs()) == ["Failure", "Success"], a.jobs())
            pa, pb = a.proc, b.proc
        check("context managers stopped both", pa.poll() is not None and pb.poll() is not None)
        with open(os.path.join(tmp, "bad.so"), "w") as f:
            f.write("not a shared library\n")
        bad_plugin = Orthanc(os.path.join(tmp, "orthanc-c"), plugins=[os.path.join(tmp, "bad.so")])
        try:
            bad_plugin.start(timeout=20)
            raised = ""
        except OrthancError as e:
            raised = str(e)
        check("start: an Orthanc that exits raises with its log's tail",
              "exited" in raised and "bad.so" in raised and not bad_plugin.running(), raised)
        bad_plugin.stop()
        # A script killed by its runner (SIGKILL) takes its Orthanc along.
        code = ("import sys, time; sys.path.insert(0, sys.argv[1]); import orthanc_harness as h; "
                "o = h.Orthanc(sys.argv[2]); o.start(); print(o.pid, flush=True); time.sleep(600)")
        child = subprocess.Popen([sys.executable, "-c", code, HERE, os.path.join(tmp, "orthanc-d")],
                                 stdout=subprocess.PIPE, text=True)
        opid = int(child.stdout.readline() or 0)
        child.kill()
        child.wait()
        gone = wait_until(lambda: not os.path.exists(f"/proc/{opid}") or
                          _proc_state(opid) == "Z", 10)
        check("an Orthanc whose test process is killed dies with it", opid and gone, opid)
        left = subprocess.run(["pgrep", "-f", tmp], capture_output=True, text=True).stdout
        check("no Orthanc of this test left running", not left.strip(), left)
    print(f"{results['passed']} passed, {results['failed']} failed in "
          f"{time.perf_counter() - t0:.1f} s")
    return 1 if results["failed"] or not results["passed"] else 0


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--segmamba", required=True)
    ap.add_argument("--venv", required=True)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    sys.path.insert(0, HERE)
    if shutil.which(STORESCU) is None or not os.path.exists(ORTHANC):
        print("skip: needs Debian's orthanc and dcmtk")
        sys.exit(77)
    ensure_venv(args.venv)
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(3), "little")
    print(f"seed {args.seed}", flush=True)
    sys.exit(_self_test(args))
