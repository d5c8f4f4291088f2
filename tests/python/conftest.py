"""Shared fixtures of the Python package's tests (tools/legs/python.sh runs
them in a venv where `pip install .` put the package).

Cases come from the project's own generators: the committed tiny fixture,
fresh ones from tests/reference/gen_case.py through model_case.generate
(seed printed), the demo phantom from tools/phantom.py. The CLI they are
compared with is SEGMAMBA_EXE (default build/segmamba)."""
import argparse
import json
import os
import random
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTS = os.path.join(ROOT, "tests")
sys.path.insert(0, TESTS)
sys.path.insert(0, os.path.join(TESTS, "reference"))

FIXTURE = os.path.join(TESTS, "fixtures", "tiny")
DEMO_MODEL = os.path.join(ROOT, "models", "demo", "segmamba_demo.safetensors")
THREADS = 2


@pytest.fixture(scope="session")
def exe():
    path = os.environ.get("SEGMAMBA_EXE", os.path.join(ROOT, "build", "segmamba"))
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: build the CLI first (tools/setup.sh)")
    return path


def run_cli(exe, *args):
    p = subprocess.run([exe, *args], capture_output=True, text=True)
    assert p.returncode == 0, f"segmamba {' '.join(args)}: exit {p.returncode}: {p.stderr}"
    return p


def load_case(case_dir):
    with open(os.path.join(case_dir, "case.json")) as f:
        return json.load(f)


def fresh_case(tmp_path_factory, name, **kw):
    """A case written by gen_case.py (model_case.generate): kw are its options.
    These tests compare with the float32 reference alone, so no float64
    answer is made (no_truth)."""
    from model_case import generate
    out = str(tmp_path_factory.mktemp(name))
    args = argparse.Namespace(seed=random.randrange(1 << 31), config="tiny", shape=None, size=32,
                              threads=THREADS, fue=False, mamba_type=None, family=None,
                              dtype=None, no_truth=True)
    for k, v in kw.items():
        setattr(args, k, v)
    generate(args, out)
    return out


@pytest.fixture(scope="session")
def tiny_case():
    return FIXTURE


@pytest.fixture(scope="session")
def official_case(tmp_path_factory):
    """The official configuration (features 48-384, hidden 768) at 32^3."""
    return fresh_case(tmp_path_factory, "official", config="official", size=32)


@pytest.fixture(scope="session")
def demo_case(tmp_path_factory):
    """The demo phantom of tools/demo.sh (BraTS-like, 80x96x96, four files)."""
    out = str(tmp_path_factory.mktemp("demo"))
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "phantom.py"), "--out", out,
                    "--cases", "1", "--seed", "2024", "--start", "0"], check=True,
                   capture_output=True)
    cid = "BraTS-PHT-00000-2024"
    return {"dir": out, "inputs": [os.path.join(out, cid, f"{cid}-{c}.nii.gz")
                                   for c in ("t2w", "t2f", "t1n", "t1c")],
            "seg": os.path.join(out, cid, f"{cid}-seg.nii.gz")}
