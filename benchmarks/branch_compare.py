"""Recipes compared from one saved state: run folders made with ``train --branch-from`` (and the
source run continued as it was), or with ``train --init-from`` the same weights, read from their
``evals.csv`` after the branch point.

    python benchmarks/branch_compare.py RUN_A RUN_B ... --since-step 6019 \
        --json benchmarks/branch_compare.json --plot benchmarks/branch_compare.png --results benchmarks/RESULTS.md
    python benchmarks/branch_compare.py RUN_C RUN_D --since-step 3450 --section mnist_arms ...   # a second table
    python benchmarks/branch_compare.py RUN_E --recorded benchmarks/prior_free_b256.json:fashion-mnist-pf256-s1 \
        --since-step 2775 ...   # beside an arm an earlier --json recorded (its run folder gone)

Each arm's evaluations (every ``--eval-every`` steps of its training: 1,000 samples, seed 0) are listed
against the CPU-hours spent since the branch point (training steps and evaluations, one process);
the spread of an arm is that of its last evaluations (training noise), which is what tells two
arms apart. No training or sampling happens here.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

from quality_study import replace_section   # this folder's scripts: one way to rewrite a RESULTS section
from fsvae_sj.training import TrainConfig

# RESULTS.md sections this script writes: name -> the heading its markers go under when first written
SECTIONS = {"branch_compare": "### Learning-rate schedule from one saved state (issue 20)",
            "mnist_arms": "### What limits the samples (issue 20)",
            "prior_stage": "### A prior stage after the main run (issue 20)",
            "prior_stage_fashion": "### A prior stage after the main run (issue 20)",
            "prior_free_features": "### What the set MMD sees (issue 20)",
            "prior_free_features_fashion": "### What the set MMD sees (issue 20)",
            "prior_free_again": "### What the set MMD sees (issue 20)",
            "autoencoder_stage": "### The staged prior kept, the autoencoder trained under it (issue 20)",
            "autoencoder_stage_mnist": "### The staged prior kept, the autoencoder trained under it (issue 20)",
            "decoder_stage": "### The decoder alone, the latent distribution kept (issue 20)",
            "decoder_stage_mnist": "### The decoder alone, the latent distribution kept (issue 20)",
            "decoder_second_pass": "### What the samples lack now (issue 20)",
            "prior_free_b256": "### What the samples lack now (issue 20)",
            "prior_free_b256_mnist": "### What the samples lack now (issue 20)",
            "prior_free_images_mnist": "### The prior stage on images (issue 20)",
            "prior_free_images_fashion": "### The prior stage on images (issue 20)",
            "decoder_prior_mix": "### Second passes, and the decoder on the prior's draws (issue 20)",
            "prior_free_images_again_mnist": "### Second passes, and the decoder on the prior's draws (issue 20)",
            "prior_free_b1024": "### Second passes, and the decoder on the prior's draws (issue 20)",
            "prior_free_images_probabilities_mnist": "### The prior stage on images and probabilities at once (issue 20)",
            "prior_statistics_fashion": "### The prior stage on the statistics it samples with (issue 20)",
            "prior_statistics_mnist": "### The prior stage on the statistics it samples with (issue 20)",
            "prior_stage_spread_mnist": "### mnist's quarter-rate prior stage: five data orders, batch statistics beside them (issue 20)",
            "decoder_l1": "### The decoder on the absolute error (issue 20)",
            "decoder_l1_mnist": "### The decoder on the absolute error (issue 20)"}
# the settings an arm may differ by, shown per arm when they differ between the arms
SETTINGS = ("stage", "prior_free_on", "prior_statistics", "decoder_prior_mix", "recon_loss", "batch_size", "ema_decay", "lr", "lr_schedule", "lr_decay_steps", "lr_min_ratio", "lr_warmup_steps", "distance",
            "mmd_reduction", "scheduled_start", "scheduled_end", "seed")
CANDIDATES = (("afd", "val_afd", "raw"), ("ema_afd", "ema_val_afd", "EMA"),
              ("emacal_afd", "emacal_val_afd", "EMA, decoder calibrated"))


def branch_cpu_hours(runs: list[Path]) -> float | None:
    """The CPU-hours the source had spent at the branch point, from a branch's or warm start's
    recorded provenance (``model.safetensors`` metadata; every arm shares that state, so it holds for
    the source too)."""
    from safetensors import safe_open
    for run in runs:
        with safe_open(str(run / "model.safetensors"), "pt") as f:
            extra = json.loads(f.metadata().get("extra", "{}"))
        # the latest branch or warm start is this arm's branch point (a zoo entry's history holds earlier ones)
        for event in reversed(extra.get("provenance", [])):
            if event.get("event", "").startswith(("branched", "warm start")) and "cpu_hours" in event:
                return float(event["cpu_hours"])
    return None


def read_arm(run: Path, since_step: int, start_cpu_hours: float | None) -> dict:
    cfg = json.loads((run / "train_config.json").read_text())
    # After the branch in steps and in CPU time: an arm with another batch size numbers its steps anew, and
    # the history it inherited (in the old numbering) may hold larger step numbers, never more CPU-hours.
    rows = [r for r in csv.DictReader(open(run / "evals.csv")) if int(r["global_step"]) > since_step
            and (start_cpu_hours is None or float(r["cpu_hours"]) > start_cpu_hours)] \
        if (run / "evals.csv").is_file() else []
    cfg = {**TrainConfig().to_dict(), **cfg}   # a field newer than the run's config: its default
    flags = {k: cfg[k] for k in SETTINGS}
    return {"run": run.name, "dataset": cfg["dataset"], "settings": flags, "evaluations": rows,
            "start_cpu_hours": start_cpu_hours}


def recorded_arm(spec: str) -> dict:
    """``JSON:ARM``: the arm named ARM as an earlier ``--json`` of this script recorded it (its run folder
    may be gone: run folders live on one machine); settings it predates read as their defaults."""
    path, _, name = spec.rpartition(":")
    if not path:
        raise SystemExit(f"--recorded takes JSON:ARM, got {spec!r}")
    arms = {a["run"]: a for a in json.loads(Path(path).read_text())["arms"]}
    if name not in arms:
        raise SystemExit(f"{path} records no arm {name!r}; it has {sorted(arms)}")
    defaults = TrainConfig().to_dict()
    arm = arms[name]
    return {**arm, "settings": {k: arm["settings"].get(k, defaults[k]) for k in SETTINGS}}


def markdown(res: dict) -> str:
    lines = [f"Branch point: global step {res['since_step']}. Each row: one evaluation of an arm (1,000 samples, "
             "seed 0; test = the paper's number, val = to the training images, which chooses).", "",
             "| arm | settings | step | CPU-h since branch | recon MSE (EMA) | raw test / val | EMA test / val "
             "| EMA calibrated test / val |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    differ = [k for k in SETTINGS if len({str(a["settings"].get(k)) for a in res["arms"]}) > 1]
    for arm in res["arms"]:
        sched = ", ".join(f"{k} {arm['settings'].get(k)}" for k in differ) or "the same"
        for r in arm["evaluations"]:
            since = (f"{float(r['cpu_hours']) - arm['start_cpu_hours']:.2f}" if arm["start_cpu_hours"] is not None
                     else "?")
            cells = [f"{r.get(t) or '-'} / {r.get(v) or '-'}" for t, v, _ in CANDIDATES]
            lines.append(f"| {arm['run']} | {sched} | {r['global_step']} | {since} | {r['ema_test_recon_mse']} | "
                         + " | ".join(cells) + " |")
    lines += ["", "| arm | evaluations | EMA val, last 3: mean +- sd | EMA calibrated val, last 3: mean +- sd |",
              "| --- | --- | --- | --- |"]
    for arm in res["arms"]:
        spreads = []
        for key in ("ema_val_afd", "emacal_val_afd"):
            vals = [float(r[key]) for r in arm["evaluations"] if r.get(key)][-3:]
            spreads.append(f"{statistics.mean(vals):.2f} +- {statistics.stdev(vals):.2f}" if len(vals) > 1
                           else (f"{vals[0]:.2f}" if vals else "-"))
        lines.append(f"| {arm['run']} | {len(arm['evaluations'])} | {' | '.join(spreads)} |")
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for arm in res["arms"]:
        rows = [r for r in arm["evaluations"] if r.get("ema_afd")]
        if not rows or arm["start_cpu_hours"] is None:
            continue
        x = [float(r["cpu_hours"]) - arm["start_cpu_hours"] for r in rows]
        ema = [float(r["ema_afd"]) for r in rows]
        if all(r.get("emacal_afd") for r in rows):
            line, = ax.plot(x, [float(r["emacal_afd"]) for r in rows], marker="o", label=f"{arm['run']} (EMA calibrated)")
            ax.plot(x, ema, ls=":", marker=".", color=line.get_color(), alpha=0.6)
        else:   # an arm run without --calibrate-decoder: its EMA is its candidate
            ax.plot(x, ema, marker="s", label=f"{arm['run']} (EMA)")
    ax.set_xlabel("CPU-hours since the branch point")
    ax.set_ylabel("AE Frechet to the test set, 1,000 samples")
    ax.set_title("arms from one saved state (solid: the arm's candidate, dotted: EMA)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="*", type=Path, help="run folders (the source and its branches)")
    p.add_argument("--recorded", action="append", default=[], metavar="JSON:ARM",
                   help="also an arm an earlier --json recorded (from the same branch point), listed first")
    p.add_argument("--since-step", type=int, required=True, help="the branch point (global step)")
    p.add_argument("--json", type=Path)
    p.add_argument("--plot", type=Path)
    p.add_argument("--results", type=Path, help="markdown file whose section (between the markers) is replaced")
    p.add_argument("--section", choices=sorted(SECTIONS), default="branch_compare",
                   help="which section of --results (default branch_compare)")
    args = p.parse_args(argv)
    if not args.runs and not args.recorded:
        p.error("give run folders or --recorded arms")
    start = branch_cpu_hours(args.runs) if args.runs else None
    res = {"since_step": args.since_step, "arms": [recorded_arm(a) for a in args.recorded]
           + [read_arm(r, args.since_step, start) for r in args.runs]}
    body = markdown(res)
    if args.plot:
        plot(res, args.plot)
        body += f"\n\n![AE Frechet against CPU-hours since the branch point]({args.plot.name})"
    print(body)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    if args.results:
        replace_section(args.results, body, f"<!-- {args.section}: begin -->", f"<!-- {args.section}: end -->",
                        SECTIONS[args.section])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
