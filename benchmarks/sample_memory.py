"""Peak memory of ``python -m fsvae_sj.sample`` against -n and --batch-size (issue 22, class 8).

    python benchmarks/sample_memory.py [--runs N:B N:B ...] [--json benchmarks/sample_memory.json]

Each run is a fresh process (the CLI as users start it: re-executed under tcmalloc when present),
writing a .npy into a temporary folder; its peak resident set comes from ``wait4``. The images
are streamed to the file, so the peak should depend on --batch-size and not on -n.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss(n: int, batch: int, model: str) -> dict:
    """Peak RSS (MB) and wall seconds of one ``sample -n n --batch-size batch`` process."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        proc = subprocess.Popen([sys.executable, "-m", "fsvae_sj.sample", "-n", str(n), "--batch-size", str(batch),
                                 "--model", model, "--out", str(Path(tmp) / "s.npy")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.time() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"sample -n {n} failed: {proc.stderr.read().decode()[-2000:]}")
        size = (Path(tmp) / "s.npy").stat().st_size
    return {"n": n, "batch_size": batch, "model": model, "peak_rss_mb": round(usage.ru_maxrss / 1024),
            "wall_s": round(wall, 1), "npy_mb": round(size / 2**20, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", default=["1000:50", "10000:50", "1000:500"], metavar="N:BATCH")
    p.add_argument("--model", default="fashion-mnist")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    rows = []
    for spec in args.runs:
        n, batch = (int(v) for v in spec.split(":"))
        rows.append(peak_rss(n, batch, args.model))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"torch_threads": os.environ.get("OMP_NUM_THREADS"), "runs": rows},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
