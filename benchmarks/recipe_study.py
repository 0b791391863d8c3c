"""Quality per CPU-hour: learning-rate schedules compared from the same state, side by side.

    python benchmarks/recipe_study.py --init-from RUN/model.safetensors --steps 300 \
        --out /tmp/recipe_study --json benchmarks/recipe_study.json

Every branch starts with ``python -m fsvae_sj.train --init-from`` the same file (weights and
tdBN statistics exact, optimiser restarted, the same data order), runs ``--steps`` steps of the
source's recipe with its own learning-rate schedule, and tracks an EMA of the weights. Each
branch is evaluated every ``--eval-every`` steps (AE Frechet of 1,000 samples, seed 0; recon MSE
of 1,000 test images), raw and EMA weights; the JSON holds every evaluation of every branch.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch

BRANCHES = {
    "constant": [],
    "cosine": ["--lr-schedule", "cosine", "--lr-min-ratio", "0.01"],
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--init-from", required=True, help="the shared starting point (.safetensors or zoo name)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--ema-decay", type=float, default=0.99)
    p.add_argument("--out", type=Path, required=True, help="folder for the branches' runs")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--branches", default=",".join(BRANCHES), help=f"subset of {','.join(BRANCHES)}")
    p.add_argument("--measure-existing", action="store_true",
                   help="measure branch folders that already exist instead of refusing them")
    args = p.parse_args(argv)
    from fsvae_sj import zoo
    from fsvae_sj.hub.checkpoint import read_checkpoint
    from fsvae_sj.datasets import make_dataset
    from fsvae_sj.files import atomic_write_json
    from fsvae_sj.metrics import afd_score, generate, recon_mse
    from fsvae_sj.training import EXIT_FINISHED, EXIT_STOPPED
    from fsvae_sj.train import main as train
    path = args.init_from if Path(args.init_from).is_file() else zoo.fetch(zoo.get_weights(args.init_from))
    dataset = read_checkpoint(path)[2]["train_config"]["dataset"]
    source = zoo.load(args.init_from)
    result = {"init_from": args.init_from, "steps": args.steps, "ema_decay": args.ema_decay, "branches": {},
              "source": {"afd": round(afd_score(generate(source, 1000, seed=0), dataset), 3),
                         "test_recon_mse": round(recon_mse(source, make_dataset(dataset, "test", limit=1000)), 6)}}
    if args.json.is_file():   # keep branches measured by an earlier invocation
        result["branches"] = json.loads(args.json.read_text()).get("branches", {})
    for name in args.branches.split(","):
        run = args.out / name
        if not run.exists():
            code = train(["--out", str(run), "--init-from", args.init_from, "--max-steps", str(args.steps),
                          "--ema-decay", str(args.ema_decay), "--eval-every", str(args.eval_every),
                          "--lr-decay-steps", str(args.steps), "--no-progress", *BRANCHES[name]])
            if code not in (EXIT_FINISHED, EXIT_STOPPED):
                return code
        elif not args.measure_existing:
            raise SystemExit(f"error: {run} exists; every branch must start from --init-from "
                             f"(use a new --out, or --measure-existing to only measure it)")
        st = torch.load(run / "state.pt", map_location="cpu", weights_only=True)
        rs = json.loads(st["run_state"])
        start = rs["first_step"]
        # the branch's own evaluations (the source's were carried over by --init-from), then its end
        rows = [r for r in csv.DictReader(open(run / "evals.csv")) if int(r["global_step"]) > start]
        end = {"global_step": rs["first_step"] + args.steps}
        for label, f in (("", "model.safetensors"), ("ema_", "ema.safetensors")):
            m = zoo.load(run / f)
            end[label + "afd"] = round(afd_score(generate(m, 1000, seed=0), dataset), 3)
            end[label + "test_recon_mse"] = round(recon_mse(m, make_dataset(dataset, "test", limit=1000)), 6)
        result["branches"][name] = {"args": BRANCHES[name], "evaluations": rows, "final": end}
        atomic_write_json(args.json, result)
    print(markdown(result))
    return 0


def markdown(result: dict) -> str:
    """The study as a table: AE Frechet (1,000 samples, seed 0) and recon MSE (1,000 test
    images) of raw and EMA weights, from the shared start to each branch's end."""
    src = result["source"]
    lines = ["| branch | steps after the start | AE Frechet raw | AE Frechet EMA | recon raw | recon EMA |",
             "| --- | --- | --- | --- | --- | --- |",
             f"| (start) | 0 | {src['afd']} | | {src['test_recon_mse']} | |"]
    for name, b in result["branches"].items():
        start = b["final"]["global_step"] - result["steps"]
        for r in b["evaluations"] + [b["final"]]:
            lines.append(f"| {name} | {int(r['global_step']) - start} | {r['afd']} | {r['ema_afd']} | "
                         f"{r['test_recon_mse']} | {r['ema_test_recon_mse']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
