#!/usr/bin/python3
"""Compare engine output with reference logits.

    compare.py expected.npy actual.npy [--rel 1e-3] [--argmax 0.999]

Passes when max|err| <= rel * max|ref| and the argmax over the class axis
(axis 1 of a 5-D (1, C, D, H, W) array, axis 0 of a 4-D (C, D, H, W) one)
agrees on at least the given fraction of voxels. Exit status 0 on pass, 1 on
failure, 2 on unreadable input. Needs only NumPy.
"""

import argparse
import sys

import numpy as np


def error_ratio(ref, act):
    """max|act - ref| / max|ref| (0 when both are zero, inf when only ref
    is), for arrays of one shape, at least one element."""
    ref = np.asarray(ref, dtype=np.float64)
    max_err = float(np.abs(np.asarray(act, dtype=np.float64) - ref).max())
    max_ref = float(np.abs(ref).max())
    if max_ref > 0:
        return max_err / max_ref
    return 0.0 if max_err == 0 else float("inf")


def compare(ref, act, rel=1e-3, argmax=0.999):
    """Return (ok, report) for reference array ref and actual array act."""
    ref = np.asarray(ref, dtype=np.float64)
    act = np.asarray(act, dtype=np.float64)
    if ref.shape != act.shape:
        return False, f"FAIL: shape mismatch: expected {ref.shape}, actual {act.shape}"
    if not np.isfinite(act).all():
        bad = int(act.size - np.isfinite(act).sum())
        return False, f"FAIL: actual has {bad} non-finite values"
    if ref.size == 0:
        return True, "ok: both arrays are empty"

    err = np.abs(act - ref)
    max_err = float(err.max())
    max_ref = float(np.abs(ref).max())
    ratio = error_ratio(ref, act)
    lines = [f"shape {ref.shape}",
             f"max|err| {max_err:.6g}  max|ref| {max_ref:.6g}  ratio {ratio:.3g} (limit {rel:g})",
             f"mean|err| {float(err.mean()):.6g}"]
    ok = ratio <= rel

    class_axis = {5: 1, 4: 0}.get(ref.ndim)
    if class_axis is None:
        lines.append(f"argmax agreement: n/a for {ref.ndim}-D arrays")
    else:
        agree = float((ref.argmax(axis=class_axis) == act.argmax(axis=class_axis)).mean())
        lines.append(f"argmax agreement {agree:.6f} (limit {argmax:g})")
        ok = ok and agree >= argmax
    lines.insert(0, "ok" if ok else "FAIL")
    return ok, "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("expected")
    p.add_argument("actual")
    p.add_argument("--rel", type=float, default=1e-3, help="limit on max|err| / max|ref|")
    p.add_argument("--argmax", type=float, default=0.999, help="least argmax agreement")
    args = p.parse_args(argv)
    try:
        ref = np.load(args.expected)
        act = np.load(args.actual)
    except (OSError, ValueError) as e:
        print(f"compare: {e}", file=sys.stderr)
        return 2
    ok, report = compare(ref, act, args.rel, args.argmax)
    print(report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
