"""Short study on FashionMNIST: surrogate preset and width ``a``, and the learning rate.

Every configuration trains from the same seed for the same number of optimiser
steps, then is judged by ``fsvae_sj.evaluate`` (recon MSE on the test set, AE
Frechet on generated samples with seed 0). Runs live under the user cache and
resume if interrupted; finished configurations are not retrained.

    python benchmarks/surrogate_study.py                      # 120 steps of batch 64 each
    python benchmarks/surrogate_study.py --steps 30 --batch-size 250 --num-samples 1000

Writes ``benchmarks/surrogate_study.json`` and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from fsvae_sj.files import atomic_write_json

# (name, train flags). lr None = the recipe's rule 1e-3 * batch / 250.
CONFIGS = [
    ("code a=1 (authors' code)", {"surrogate": "code", "surrogate_a": 1.0}),
    ("code a=0.5", {"surrogate": "code", "surrogate_a": 0.5}),
    ("paper a=0.2 (paper text)", {"surrogate": "paper", "surrogate_a": 0.2}),
    ("paper a=0.5", {"surrogate": "paper", "surrogate_a": 0.5}),
    ("code a=1, lr 1e-3", {"surrogate": "code", "surrogate_a": 1.0, "lr": 1e-3}),
]


def slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name).strip("-").lower()


def steps_done(run: Path) -> int:
    """Optimiser steps already taken in ``run`` (0 if it never saved)."""
    state = run / "state.pt"
    if not state.is_file():
        return 0
    import torch
    st = torch.load(state, map_location="cpu", weights_only=True)
    return int(st["step"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/surrogate_study.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=120, help="optimiser steps per configuration")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-samples", type=int, default=2000, help="generated images for AE Frechet")
    p.add_argument("--root", default=os.path.expanduser("~/.cache/fsvae_sj/runs/study"))
    p.add_argument("--out", default=str(Path(__file__).with_name("surrogate_study.json")))
    args = p.parse_args(argv)

    results = []
    for name, flags in CONFIGS:
        run = Path(args.root) / slug(name)
        result_file = run / "eval.json"
        if not result_file.is_file():
            remaining = args.steps - steps_done(run)
            if remaining > 0:
                cmd = [sys.executable, "-m", "fsvae_sj.train", "--out", str(run), "--dataset", "fashion-mnist",
                       "--batch-size", str(args.batch_size), "--save-every", "20", "--limit-test", "500",
                       "--max-steps", str(remaining), "--no-progress"]
                for k, v in flags.items():
                    cmd += ["--" + k.replace("_", "-"), str(v)]
                subprocess.run(cmd, check=True)
            subprocess.run([sys.executable, "-m", "fsvae_sj.evaluate", "--model", str(run / "model.safetensors"),
                            "--dataset", "fashion-mnist", "--metrics", "recon,afd",
                            "--num-samples", str(args.num_samples), "--json", str(result_file)], check=True)
        res = json.loads(result_file.read_text())
        results.append({"config": name, **flags, "steps": args.steps, "batch_size": args.batch_size,
                        "recon_mse": res["recon_mse"], "afd": res["afd"]})
        print(json.dumps(results[-1]), flush=True)

    atomic_write_json(args.out, {"num_samples": args.num_samples, "results": results})
    print(f"\n| configuration | recon MSE | AE Frechet ({args.num_samples} samples) |\n| --- | --- | --- |")
    for r in results:
        print(f"| {r['config']} | {r['recon_mse']:.4f} | {r['afd']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
