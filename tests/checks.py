"""What the Python test scripts share: a named check that counts and prints
one line ("ok  NAME" or "FAIL NAME: detail"), and the counts. A script
imports `check` and `results` (one dict for the process, so checks made in
a helper module count with the script's)."""

results = {"passed": 0, "failed": 0}


def check(name, cond, detail=""):
    """Counts and prints one check; returns cond, so a caller can stop when
    what follows depends on it."""
    results["passed" if cond else "failed"] += 1
    print(f"{'ok  ' if cond else 'FAIL'} {name}{'' if cond else ': ' + str(detail)[:2000]}",
          flush=True)
    return cond
