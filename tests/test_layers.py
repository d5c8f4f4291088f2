#!/usr/bin/env python3
"""The layers go one way down (ARCHITECTURE.md): every quoted #include of
the library's folders names a folder the including folder may use.

    cli, python -> (include/ only)
    orthanc (the Orthanc plugin) -> io, core (its JSON reader; the engine
        through include/ only)
    clinical -> io, core (and the engine through include/segmamba.h)
    api (the implementation of segmamba.h) -> models, cuda_optional, engine,
        blas_backends, simd, io, core
    models -> engine, simd, io, core
    cuda_optional -> engine, simd, io, core
    engine -> blas_backends, simd, io, core
    io -> core;  blas_backends, simd, core -> (themselves)

A folder's own headers, include/ and the generated sm_*config.h are always
allowed. No two folders may use each other (the table itself is checked).
The engine and the API choose CPU or CUDA through a runner
(src/engine/runner.h), never by preprocessor: SM_HAVE_CUDA and
SM_CUDA_EMULATED may not appear in src/engine/ or src/api/.
Prints each violation; exit 1 if any.
"""
import os
import re
import sys

LAYERS = {
    "src/cli": set(),
    "python": set(),
    "src/orthanc": {"io", "core"},
    "src/clinical": {"io", "core"},
    "src/api": {"models", "cuda_optional", "engine", "blas_backends", "simd", "io", "core"},
    "models": {"engine", "simd", "io", "core"},
    "cuda_optional": {"engine", "simd", "io", "core"},
    "src/engine": {"blas_backends", "simd", "io", "core"},
    "blas_backends": set(),
    "src/io": {"core"},
    "simd": set(),
    "src/core": set(),
}
# Folders whose code may not test how the CUDA backend was built.
NO_CUDA_SWITCH = ("src/engine", "src/api")
CUDA_SWITCH = re.compile(r"\b(SM_HAVE_CUDA|SM_CUDA_EMULATED)\b")
PUBLIC = {"segmamba.h", "segmamba_pipeline.h", "sm_config.h", "sm_cli_config.h"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def two_way_pairs():
    """The pairs of folders that the table lets use each other."""
    name = {folder: os.path.basename(folder) for folder in LAYERS}
    uses = {name[folder]: others for folder, others in LAYERS.items()}
    return sorted({tuple(sorted((a, b))) for a, others in uses.items() for b in others
                   if b != a and a in uses.get(b, set())})


def main():
    bad = checked = 0
    for a, b in two_way_pairs():
        bad += 1
        print(f"FAIL the table lets {a} and {b} use each other: one way only")
    for folder, others in LAYERS.items():
        allowed = others | {os.path.basename(folder)}
        for root, _, files in os.walk(folder):
            for name in files:
                if not name.endswith((".c", ".cpp", ".h", ".hpp", ".cu")):
                    continue
                path = os.path.join(root, name)
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                if folder in NO_CUDA_SWITCH:
                    for lineno, line in enumerate(text.splitlines(), 1):
                        if CUDA_SWITCH.search(line):
                            bad += 1
                            print(f"FAIL {path}:{lineno}: {line.strip()!r}: {folder} chooses "
                                  "CPU or CUDA through a runner (src/engine/runner.h, "
                                  "cuda_optional/cuda_runner.h), not by preprocessor")
                for inc in INCLUDE.findall(text):
                    checked += 1
                    if inc in PUBLIC:
                        continue
                    if "/" not in inc or inc.startswith("../") or inc.startswith("emu/"):
                        # relative to the including file: its own folder
                        target = os.path.normpath(os.path.join(root, inc))
                        if target.startswith(folder + "/") or os.path.dirname(target) == folder:
                            continue
                        top = target.split("/")[1] if target.startswith("src/") else \
                            target.split("/")[0]
                    else:
                        top = inc.split("/")[0]
                    if top not in allowed:
                        bad += 1
                        print(f"FAIL {path}: includes \"{inc}\" ({folder} may use: "
                              f"{', '.join(sorted(others)) or 'include/ only'}, and itself)")
    print(f"{checked} includes checked, {bad} against the layering")
    return 1 if bad or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
