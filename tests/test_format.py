#!/usr/bin/env python3
"""Every C, C++ and CUDA source of the project is formatted as .clang-format
says (clang-format 14, Debian 12's: another version formats differently, so
without it the test is skipped, exit 77). Prints each file that differs and
the first lines clang-format would change; exit 1 if any.

    tests/test_format.py [ROOT]
"""
import os
import shutil
import subprocess
import sys

FOLDERS = ["include", "src", "simd", "blas_backends", "cuda_optional", "models", "python",
           "tests", "bench", "fuzz", "tools"]
SKIP = {os.path.join("tests", "fixtures"), os.path.join("tests", "work")}
EXTENSIONS = (".c", ".h", ".cpp", ".hpp", ".cu", ".cuh")


def sources(root):
    for folder in FOLDERS:
        for dirpath, dirnames, files in os.walk(os.path.join(root, folder)):
            rel = os.path.relpath(dirpath, root)
            dirnames[:] = sorted(d for d in dirnames
                                 if os.path.join(rel, d) not in SKIP and not d.startswith("."))
            for name in sorted(files):
                if name.endswith(EXTENSIONS):
                    yield os.path.join(dirpath, name)


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), ".."))
    exe = shutil.which("clang-format-14")
    if exe is None:
        print("skip: clang-format-14 is not installed (tools/setup.sh installs it)")
        return 77
    if not os.path.exists(os.path.join(root, ".clang-format")):
        print(f"FAIL {root}/.clang-format is missing")
        return 1
    files = list(sources(root))
    bad = 0
    for path in files:
        with open(path, "rb") as f:
            text = f.read()
        p = subprocess.run([exe, "--style=file", "--assume-filename=" + path], input=text,
                           capture_output=True, cwd=root)
        if p.returncode != 0:
            bad += 1
            print(f"FAIL {path}: clang-format failed: {p.stderr.decode(errors='replace')}")
            continue
        if p.stdout != text:
            bad += 1
            old, new = text.decode(errors="replace").splitlines(), \
                p.stdout.decode(errors="replace").splitlines()
            line = next((i for i, (a, b) in enumerate(zip(old, new)) if a != b),
                        min(len(old), len(new)))
            print(f"FAIL {os.path.relpath(path, root)}:{line + 1}: not formatted "
                  f"(clang-format-14 -i {os.path.relpath(path, root)}); from line {line + 1}:")
            for a in old[line:line + 3]:
                print(f"    - {a}")
            for b in new[line:line + 3]:
                print(f"    + {b}")
    print(f"{len(files)} files checked, {bad} not formatted")
    return 1 if bad or not files else 0


if __name__ == "__main__":
    sys.exit(main())
