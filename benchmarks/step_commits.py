"""Did the training step get slower? Time it at several commits side by side, in one run.

    git worktree add /tmp/then 3aecad6
    python benchmarks/step_commits.py /tmp/then . --batch 64 --rounds 3 --repeats 5 --json OUT

Each checkout times its own ``benchmarks/run.py --worker train_step@BATCH`` (a fresh process with
``PYTHONPATH`` at that checkout, the compiled kernels, warm-up excluded, median of ``--repeats``),
rounds interleaved (A B A B ...) so that the machine's drift hits every commit alike; same
allocator (the default, glibc) and thread count for all. The losses' digests must agree: the
commits compute the same step.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path


def commit_of(checkout: Path) -> str:
    return subprocess.run(["git", "-C", str(checkout), "log", "-1", "--format=%h %ad", "--date=short"],
                          capture_output=True, text=True, check=True).stdout.strip()


def time_step(checkout: Path, batch: int, repeats: int, threads: int) -> dict:
    # the thread count through the environment: older workers take no argument for it
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": str(threads)}
    env.pop("LD_PRELOAD", None)
    run_py = checkout / "benchmarks" / "run.py"
    takes_threads = '"--worker", nargs=6' in run_py.read_text()
    cmd = [sys.executable, str(run_py), "--worker", "train_step", str(batch), "ours", str(repeats), "cpu",
           *([str(threads)] if takes_threads else [])]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=checkout)
    if out.returncode != 0:
        raise SystemExit(f"error: {checkout} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkouts", nargs="+", type=Path, help="git checkouts (worktrees) to compare")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write every round here")
    a = ap.parse_args(argv)
    checkouts = [c.resolve() for c in a.checkouts]
    commits = {c: commit_of(c) for c in checkouts}
    cells = {str(c): [] for c in checkouts}
    for r in range(a.rounds):
        for c in checkouts:
            res = time_step(c, a.batch, a.repeats, a.threads)
            cells[str(c)].append(res)
            print(f"round {r}: {commits[c]}: {res['seconds']:.3f} s (digest {res['digest']})", flush=True)
    digests = {res["digest"] for rows in cells.values() for res in rows}
    summary = {str(c): {"commit": commits[c], "median_s": statistics.median(x["seconds"] for x in cells[str(c)]),
                        "rounds_s": [round(x["seconds"], 4) for x in cells[str(c)]]} for c in checkouts}
    for s in summary.values():
        print(f"{s['commit']}: median {s['median_s']:.3f} s over rounds {s['rounds_s']}")
    if len(digests) != 1:
        print(f"the commits' losses differ: digests {sorted(digests)}")
    if a.json:
        a.json.write_text(json.dumps({"batch": a.batch, "threads": a.threads, "repeats": a.repeats,
                                      "same_loss": len(digests) == 1, "summary": summary, "cells": cells},
                                     indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
