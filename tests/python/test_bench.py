"""python -m segmamba bench prints the figures `segmamba bench` prints, line
for line (the same labels, the same model and input lines), and its JSON."""
import json
import os
import subprocess
import sys

from conftest import FIXTURE, run_cli


def test_bench_same_figures_as_cli(exe, tmp_path):
    model = os.path.join(FIXTURE, "model.safetensors")
    args = ["--size", "32", "--repeat", "2", "--threads", "1"]
    py = subprocess.run([sys.executable, "-m", "segmamba", "bench", model, *args, "--json",
                         str(tmp_path / "b.json")], capture_output=True, text=True)
    assert py.returncode == 0, py.stderr
    cli = run_cli(exe, "bench", "--model", model, *args)
    print(py.stdout)
    py_lines, cli_lines = py.stdout.splitlines(), cli.stdout.splitlines()
    assert [l.split()[0] for l in py_lines] == [l.split()[0] for l in cli_lines]
    assert py_lines[0] == cli_lines[0] and py_lines[1] == cli_lines[1]  # model, input
    with open(tmp_path / "b.json") as f:
        figures = json.load(f)
    assert figures["backend"] == "cpu" and figures["seconds"] > 0 and figures["gflop"] > 0
