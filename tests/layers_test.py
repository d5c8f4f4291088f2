#!/usr/bin/env python3
"""The layers go one way down (ARCHITECTURE.md): every quoted #include of
the library's folders names a folder the including folder may use.

    cli, python -> (include/ only)
    clinical -> io, core (and the engine through include/segmamba.h)
    engine -> models, blas_backends, cuda_optional, simd, io, core
    models, blas_backends, cuda_optional -> engine, simd, io, core
    io -> core;  simd -> (itself);  core -> (itself)

A folder's own headers, include/ and the generated sm_*config.h are always
allowed. Prints each violation; exit 1 if any.
"""
import os
import re
import sys

LAYERS = {
    "src/cli": set(),
    "python": set(),
    "src/clinical": {"io", "core"},
    "src/engine": {"engine", "models", "blas_backends", "cuda_optional", "simd", "io", "core"},
    "models": {"engine", "simd", "io", "core"},
    "blas_backends": {"engine", "simd", "io", "core"},
    "cuda_optional": {"engine", "simd", "io", "core", "cuda_optional"},
    "src/io": {"io", "core"},
    "simd": {"simd"},
    "src/core": {"core"},
}
PUBLIC = {"segmamba.h", "segmamba_pipeline.h", "sm_config.h", "sm_cli_config.h"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def main():
    bad = checked = 0
    for folder, others in LAYERS.items():
        allowed = others | {os.path.basename(folder)}
        for root, _, files in os.walk(folder):
            for name in files:
                if not name.endswith((".c", ".cpp", ".h", ".cu")):
                    continue
                path = os.path.join(root, name)
                with open(path, encoding="utf-8") as f:
                    text = f.read()
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
