#!/usr/bin/python3
"""Compare engine output with reference logits.

    compare.py expected.npy actual.npy [--rel 1e-3] [--argmax 0.999] [--truth truth.npy]

Passes when max|err| <= rel * max|ref| and the argmax over the class axis
(axis 1 of a 5-D (1, C, D, H, W) array, axis 0 of a 4-D (C, D, H, W) one)
agrees on at least the given fraction of voxels. With --truth (a float64
computation of the same case), both are measured against it instead
(compare()'s docstring). Exit status 0 on pass, 1 on
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


def compare(ref, act, rel=1e-3, argmax=0.999, truth=None):
    """Return (ok, report) for reference array ref and actual array act.

    With truth (the same network in float64, gen_case.py --truth), act is
    measured against the exact answer rather than against ref, a float32
    computation with rounding errors of its own: the error ratio is
    max|act - truth| / max|truth|, and an argmax that differs from truth's
    counts as a disagreement. Voxels whose two best classes are closer than
    float32 arithmetic can resolve are decided by rounding; ref's own
    disagreements with truth measure how many such voxels a correct float32
    computation gets "wrong" on this case, so act may have as many as ref
    has, or the fraction argmax allows, whichever is more."""
    ref = np.asarray(ref, dtype=np.float64)
    act = np.asarray(act, dtype=np.float64)
    if ref.shape != act.shape:
        return False, f"FAIL: shape mismatch: expected {ref.shape}, actual {act.shape}"
    if truth is not None:
        truth = np.asarray(truth, dtype=np.float64)
        if truth.shape != ref.shape:
            return False, f"FAIL: shape mismatch: truth {truth.shape}, expected {ref.shape}"
    if not np.isfinite(act).all():
        bad = int(act.size - np.isfinite(act).sum())
        return False, f"FAIL: actual has {bad} non-finite values"
    if ref.size == 0:
        return True, "ok: both arrays are empty"

    oracle = ref if truth is None else truth
    name = "ref" if truth is None else "float64 truth"
    err = np.abs(act - oracle)
    max_err = float(err.max())
    max_ref = float(np.abs(oracle).max())
    ratio = error_ratio(oracle, act)
    lines = [f"shape {ref.shape}",
             f"max|err| {max_err:.6g}  max|{name}| {max_ref:.6g}  ratio {ratio:.3g} (limit {rel:g})",
             f"mean|err| {float(err.mean()):.6g}"]
    if truth is not None:
        lines.append(f"float32 reference vs truth: ratio {error_ratio(truth, ref):.3g}; "
                     f"actual vs float32 reference: ratio {error_ratio(ref, act):.3g}")
    ok = ratio <= rel

    class_axis = {5: 1, 4: 0}.get(ref.ndim)
    if class_axis is None:
        lines.append(f"argmax agreement: n/a for {ref.ndim}-D arrays")
    else:
        labels = oracle.argmax(axis=class_axis)
        differ = int((labels != act.argmax(axis=class_axis)).sum())
        agree = 1.0 - differ / labels.size
        allowed = int(np.floor((1.0 - argmax) * labels.size + 1e-9))
        line = f"argmax agreement {agree:.6f} ({differ} of {labels.size} differ; limit {argmax:g}"
        if truth is not None:
            ref_differ = int((labels != ref.argmax(axis=class_axis)).sum())
            allowed = max(allowed, ref_differ)
            line += f", or the float32 reference's own {ref_differ} against truth"
        lines.append(line + ")")
        ok = ok and differ <= allowed
    lines.insert(0, "ok" if ok else "FAIL")
    return ok, "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("expected")
    p.add_argument("actual")
    p.add_argument("--rel", type=float, default=1e-3, help="limit on max|err| / max|ref|")
    p.add_argument("--argmax", type=float, default=0.999, help="least argmax agreement")
    p.add_argument("--truth", help="float64 logits of the same case (gen_case.py --truth)")
    args = p.parse_args(argv)
    try:
        ref = np.load(args.expected)
        act = np.load(args.actual)
        truth = np.load(args.truth) if args.truth else None
    except (OSError, ValueError) as e:
        print(f"compare: {e}", file=sys.stderr)
        return 2
    ok, report = compare(ref, act, args.rel, args.argmax, truth)
    print(report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
