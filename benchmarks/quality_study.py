"""Quality study: which recipe and which generation-time statistics move the AE Frechet distance.

    python benchmarks/quality_study.py --init-from fashion-mnist --cpu-hours 0.1 \
        --out ~/.cache/fsvae_sj/study --json benchmarks/quality_study.json

Every training variant starts with ``python -m fsvae_sj.train --init-from`` the same saved state
(weights and tdBN statistics exact, optimiser restarted, the same data order) and trains for the
same CPU budget (``--cpu-budget``: CPU seconds of training steps, evaluations not counted), with an
EMA of the weights (``--ema-decay``) and evaluations along the way (``--eval-every`` steps, ``--samples``
samples, seed 0). At the end each variant's raw and EMA weights, and the EMA with its decoder's
statistics re-estimated on the prior's samples (:func:`fsvae_sj.calibration.calibrate_decoder`),
are scored with ``--samples`` samples at two sampling seeds (the spread of the number) against the test
statistics (the paper's number) and the training images' (the validation number, which chooses);
the chosen candidate is then scored with the cards' protocol (5,000 samples, seed 0).

Statistics variants (no training; applied to the starting weights): as trained; the decoder's
statistics re-estimated on the prior's samples or on the eval-mode posterior's; the prior's own
re-estimated on its own samples (one round).

Writes the JSON (every evaluation of every variant; re-running measures only what is missing), a
plot of AE Frechet against CPU-hours (``--plot``) and the markdown table (printed, and written
into ``--results`` between the study's markers).
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import sys
import time
from pathlib import Path

import torch

# name -> train flags added to the source's recipe. "{steps}": the steps the budget buys
# (measured on the first variant), so that a schedule "over the budget" ends with it.
VARIANTS = {
    "continue": [],
    "authors-lr": ["--lr", "2.56e-4"],            # their linear scaling, 1e-3 x 64 / 250
    "cosine": ["--lr-schedule", "cosine", "--lr-min-ratio", "0.01", "--lr-decay-steps", "{steps}"],
    "authors-lr-cosine": ["--lr", "2.56e-4", "--lr-schedule", "cosine", "--lr-min-ratio", "0.01",
                          "--lr-decay-steps", "{steps}"],
    "warmup-50": ["--lr-warmup-steps", "50"],     # the restarted optimiser eased in
    "authors-lr-warmup-50": ["--lr", "2.56e-4", "--lr-warmup-steps", "50"],
    "scheduled-0.3": ["--scheduled-start", "0.3", "--scheduled-end", "0.3"],   # the ramp's planned end
    "scheduled-0.5": ["--scheduled-start", "0.5", "--scheduled-end", "0.5"],   # the prior on its own more
}
STATISTICS = ("as-trained", "decoder-on-prior", "decoder-on-posterior", "prior-on-own-samples")
MARK_BEGIN, MARK_END = "<!-- quality_study: begin -->", "<!-- quality_study: end -->"


def score(model, dataset: str, n: int, seeds=(0, 1)) -> dict:
    """AE Frechet of ``n`` samples per seed, to the test and the training statistics."""
    from fsvae_sj.metrics import afd_scores, generate
    out = {}
    for s in seeds:
        d = afd_scores(generate(model, n, seed=s), dataset)
        out[f"test_s{s}"], out[f"val_s{s}"] = round(d["test"], 3), round(d["train"], 3)
    return out


def statistics_variant(model, name: str, dataset: str):
    """A copy of ``model`` with the generation-time statistics of variant ``name``."""
    from fsvae_sj.calibration import calibrate_decoder, decoder_parts, reestimate_statistics
    from fsvae_sj.datasets import batch_of, make_dataset
    from fsvae_sj.seeding import sample_generators
    m = copy.deepcopy(model).eval()
    if name == "decoder-on-prior":
        calibrate_decoder(m)
    elif name == "decoder-on-posterior":
        train = make_dataset(dataset, "train", limit=2000)
        zs = []
        for i in range(0, 2000, 250):
            x = batch_of(train, torch.arange(i, i + 250))
            with torch.no_grad():
                zs.append(m.posterior.sample(m.encode(x), sample_generators(1, 250, start=i))[0])
        reestimate_statistics(m, decoder_parts(m), [lambda z=z: m.decode(z) for z in zs])
    elif name == "prior-on-own-samples":
        zs = [m.prior.generate(250, m.config.n_steps, sample_generators(1, 250, start=i))[0] for i in range(0, 2000, 250)]
        reestimate_statistics(m, [m.prior], [lambda z=z: m.prior.run(torch.cat([torch.zeros_like(z[:1]), z[:-1]]))
                                             for z in zs])
    elif name != "as-trained":
        raise ValueError(f"unknown statistics variant {name!r}; expected one of {STATISTICS}")
    return m


def train_variant(name: str, args, steps: int | None) -> dict:
    from fsvae_sj.train import main as train
    from fsvae_sj.training import EXIT_FINISHED, EXIT_STOPPED
    run = args.out / name
    flags = [f.replace("{steps}", str(steps)) for f in VARIANTS[name]]
    if "{steps}" in "".join(VARIANTS[name]) and steps is None:
        raise SystemExit(f"error: variant {name} needs the budget's step count: run 'continue' first")
    c0 = time.process_time()
    if (run / "state.pt").is_file():   # trained by an earlier invocation: measured, not trained further
        code = EXIT_STOPPED
    else:
        code = train(["--out", str(run), "--init-from", args.init_from, "--cpu-budget", str(args.cpu_hours * 3600),
                      "--ema-decay", str(args.ema_decay), "--eval-every", str(args.eval_every),
                      "--eval-samples", str(args.samples), "--save-every", "50", "--no-progress", *flags])
    if code not in (EXIT_FINISHED, EXIT_STOPPED):
        raise SystemExit(f"error: variant {name} stopped with status {code}")
    st = torch.load(run / "state.pt", map_location="cpu", weights_only=True)
    rs = json.loads(st["run_state"])
    first = rs["first_step"]
    rows = [r for r in csv.DictReader(open(run / "evals.csv")) if int(r["global_step"]) > first]
    start_cpu = rs["provenance"][-1]["cpu_hours"]   # the warm start's (this run's first event)
    return {"flags": flags, "process_cpu_hours": round((time.process_time() - c0) / 3600, 4),
            "steps": _global_step(run, st) - first, "first_step": first, "evaluations": rows, "start_cpu_hours": start_cpu}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--init-from", required=True, help="the shared starting point (zoo name or .safetensors)")
    p.add_argument("--cpu-hours", type=float, default=0.1, help="CPU-hours of training steps per variant (default 0.1)")
    p.add_argument("--eval-every", type=int, default=50, help="steps between evaluations along the way (default 50)")
    p.add_argument("--ema-decay", type=float, default=0.99, help="EMA of the weights in every variant (default 0.99)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"training variants, of {','.join(VARIANTS)}")
    p.add_argument("--statistics", default=",".join(STATISTICS), help=f"statistics variants, of {','.join(STATISTICS)}")
    p.add_argument("--samples", type=int, default=1000, help="samples per score along the way and at the end (default 1000)")
    p.add_argument("--final-samples", type=int, default=5000, help="samples of the chosen candidate's score (default 5000)")
    p.add_argument("--out", type=Path, required=True, help="folder for the variants' runs")
    p.add_argument("--json", type=Path, required=True, help="results; existing entries are kept, not re-measured")
    p.add_argument("--plot", type=Path, help="PNG of AE Frechet against CPU-hours")
    p.add_argument("--results", type=Path, help="a markdown file whose study section is replaced by the table")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from fsvae_sj import zoo
    from fsvae_sj.calibration import calibrate_decoder
    from fsvae_sj.hub.checkpoint import read_checkpoint
    from fsvae_sj.files import atomic_write_json
    from fsvae_sj.metrics import afd_scores, generate
    path = args.init_from if Path(args.init_from).is_file() else zoo.fetch(zoo.get_weights(args.init_from))
    dataset = read_checkpoint(path)[2].get("train_config", {}).get("dataset") or zoo.get_weights(args.init_from).dataset
    res = json.loads(args.json.read_text()) if args.json.is_file() else {}
    res.update({"init_from": str(args.init_from), "dataset": dataset, "cpu_hours": args.cpu_hours,
                "ema_decay": args.ema_decay, "samples": args.samples})
    res.setdefault("statistics", {})
    res.setdefault("variants", {})
    source = zoo.load(args.init_from)

    def save():
        atomic_write_json(args.json, res)

    for name in filter(None, args.statistics.split(",")):
        if name not in res["statistics"]:
            c0 = time.process_time()
            res["statistics"][name] = score(statistics_variant(source, name, dataset), dataset, args.samples)
            res["statistics"][name]["cpu_seconds"] = round(time.process_time() - c0, 1)
            save()
            print(name, res["statistics"][name], flush=True)
    steps = res.get("budget_steps")
    for name in filter(None, args.variants.split(",")):
        if name not in VARIANTS:
            raise SystemExit(f"error: unknown variant {name!r}; expected some of {','.join(VARIANTS)}")
        v = res["variants"].get(name)
        if v is None or "final" not in v:
            v = train_variant(name, args, steps)
            if steps is None:
                steps = res["budget_steps"] = v["steps"]
            final = {}
            for label, f in (("raw", "model.safetensors"), ("ema", "ema.safetensors")):
                m = zoo.load(args.out / name / f)
                final[label] = score(m, dataset, args.samples)
                if label == "ema":
                    final["ema+decoder-on-prior"] = score(calibrate_decoder(m), dataset, args.samples)
            v["final"] = final
            res["variants"][name] = v
            save()
            print(name, json.dumps(final), flush=True)
    # the chosen candidate (lowest mean validation number), scored with the cards' protocol
    cands = [(sum(c[k] for k in c if k.startswith("val_")) / 2, vn, cn)
             for vn, v in res["variants"].items() for cn, c in v["final"].items()]
    if cands and args.final_samples:
        _, vn, cn = min(cands)
        if res.get("chosen", {}).get("candidate") != [vn, cn]:
            m = zoo.load(args.out / vn / ("model.safetensors" if cn == "raw" else "ema.safetensors"))
            if cn.endswith("decoder-on-prior"):
                calibrate_decoder(m)
            d = afd_scores(generate(m, args.final_samples, seed=0), dataset)
            res["chosen"] = {"candidate": [vn, cn], "samples": args.final_samples,
                             "test": round(d["test"], 3), "val": round(d["train"], 3)}
            save()
    table = markdown(res)
    print(table)
    if args.plot:
        plot(res, args.plot)
    if args.results:
        replace_section(args.results, table + (f"\n\n![AE Frechet against CPU-hours]({args.plot.name})"
                                               if args.plot else ""))
    return 0


def _global_step(run: Path, st: dict) -> int:
    """The optimiser step a run's loaded ``state.pt`` stands at, counted over the whole run."""
    cfg = json.loads((run / "train_config.json").read_text())
    from fsvae_sj.datasets import make_dataset
    from fsvae_sj.training import batches_per_epoch
    n = batches_per_epoch(len(make_dataset(cfg["dataset"], "train", limit=cfg.get("limit_train"))), cfg["batch_size"])
    return st["epoch"] * n + st["step"]


def _mean_spread(c: dict, prefix: str) -> str:
    a, b = c[f"{prefix}_s0"], c[f"{prefix}_s1"]
    return f"{(a + b) / 2:.1f} +- {abs(a - b) / 2:.1f}"


def markdown(res: dict) -> str:
    lines = [f"From `{res['init_from']}` ({res['dataset']}). AE Frechet of {res['samples']:,} samples, mean +- half the "
             f"difference of sampling seeds 0 and 1; **test**: to the authors' test statistics (the paper's "
             f"number), **val**: to the training images' (the one that chooses).", "",
             "| statistics at generation (start weights) | test | val |", "| --- | --- | --- |"]
    for name, c in res["statistics"].items():
        lines.append(f"| {name} | {_mean_spread(c, 'test')} | {_mean_spread(c, 'val')} |")
    lines += ["", f"Training variants, {res['cpu_hours']} CPU-hours of steps each "
              f"({res.get('budget_steps', '?')} steps of the first), EMA decay {res['ema_decay']}:", "",
              "| variant | flags | candidate | test | val |", "| --- | --- | --- | --- | --- |"]
    for name, v in res["variants"].items():
        for cn, c in v.get("final", {}).items():
            lines.append(f"| {name} | `{' '.join(v['flags'])}` | {cn} | {_mean_spread(c, 'test')} | "
                         f"{_mean_spread(c, 'val')} |")
    if "chosen" in res:
        ch = res["chosen"]
        lines += ["", f"Chosen by the validation number: {ch['candidate'][0]} / {ch['candidate'][1]}; with the "
                  f"cards' protocol ({ch['samples']} samples, seed 0): test {ch['test']}, val {ch['val']}."]
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, v in res["variants"].items():
        rows = v["evaluations"]
        if not rows:
            continue
        x = [float(r["cpu_hours"]) - v["start_cpu_hours"] for r in rows]
        line, = ax.plot(x, [float(r["ema_afd"]) for r in rows], marker="o", label=f"{name} (EMA)")
        ax.plot(x, [float(r["afd"]) for r in rows], ls=":", color=line.get_color(), alpha=0.6)
    for name, style in (("as-trained", "--"), ("decoder-on-prior", "-.")):
        if name in res["statistics"]:
            ax.axhline(res["statistics"][name]["test_s0"], color="black", ls=style, lw=1,
                       label=f"start, {name.replace('-', ' ')} (no training)")
    ax.set_xlabel("CPU-hours since the shared start (training steps and evaluations)")
    ax.set_ylabel(f"AE Frechet, {res['samples']:,} samples (lower is better)")
    ax.set_title(f"{res['dataset']}: variants from one state (solid EMA, dotted raw)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def replace_section(path: Path, body: str, begin: str = MARK_BEGIN, end: str = MARK_END,
                    heading: str = "## Quality study (issue 20)") -> None:
    """Put ``body`` between the markers ``begin``/``end`` of the markdown file ``path`` (appended
    under ``heading`` the first time); the rest of the file stays as it is."""
    text = path.read_text() if path.is_file() else ""
    block = f"{begin}\n{body}\n{end}"
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + f"\n\n{heading}\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
