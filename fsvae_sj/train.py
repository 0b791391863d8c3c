"""``python -m fsvae_sj.train`` (``fsvae-train``): train FSVAE or the ANN VAE baseline.

    python -m fsvae_sj.train --dataset fashion-mnist --out runs/fmnist
    python -m fsvae_sj.train --out runs/fmnist            # resumes where it stopped
    python -m fsvae_sj.train --out runs/f2 --init-from fashion-mnist   # continue a zoo entry
    torchrun --nproc_per_node 2 -m fsvae_sj.train --dataset mnist --out runs/mnist

The run folder, the resume rules and the loop are :mod:`fsvae_sj.training`.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import torch.distributed as dist

from . import _cli
from .training import (EXIT_FINISHED, EXIT_NONFINITE, EXIT_STOPPED, RECIPES, RESUMABLE_CHANGES, TrainConfig,
                       resolve_config, run_training)


def parse_args(argv=None):
    p = _cli.parser(
        "train",
        "Train FSVAE or the ANN VAE baseline with the paper's recipe (or --recipe zoo-short). "
        "Re-running with the same --out resumes exactly (model, optimiser, EMA, epoch, step, data "
        "order, RNG); a resume may change only " + ", ".join(RESUMABLE_CHANGES) + ". "
        "--init-from continues from a zoo entry or a .safetensors when the run state is gone. "
        "Under torchrun it trains with DistributedDataParallel (Gloo on CPU, NCCL on GPU). "
        "Exit status: 0 finished, 75 stopped early and resumable, 3 non-finite loss or weights "
        "(the last good state is kept), 2 a refused setting, missing data or unknown flags.",
        _cli.device_flag(), _cli.fused_lif_flag(default=True))
    d = TrainConfig()
    p.add_argument("--out", required=True, help="run directory (state.pt, *.safetensors, log.csv, evals.csv, grids)")
    p.add_argument("--config", help="a TrainConfig JSON/YAML; command-line flags override it")
    p.add_argument("--recipe", choices=sorted(RECIPES),
                   help="a named recipe: 'paper' (the defaults) or 'zoo-short' (the zoo's short-budget one: "
                        + ", ".join(f"{k}={v}" for k, v in RECIPES["zoo-short"].items()) + "); flags override it")
    p.add_argument("--init-from", metavar="NAME|PATH",
                   help="start a new run from a zoo entry or .safetensors: weights and tdBN statistics exact, "
                        "optimiser restarted, epochs/steps/CPU-hours/learning curve carried over")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(d, f.name)
        if isinstance(default, bool):
            p.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=None,
                           metavar="BOOL", help=f"(default {default})")
        else:
            typ = {"lr": float, "surrogate_a": float, "limit_train": int, "limit_test": int,
                   "data_root": str, "ema_decay": float}.get(f.name, type(default))
            help_ = "architecture: fsvae or ann-vae (default fsvae)" if f.name == "model" else f"(default {default})"
            p.add_argument(flag, type=typ, default=None, help=help_)
    p.add_argument("--time-budget", type=float, help="seconds; stop at a step boundary and save (exit status 75)")
    p.add_argument("--cpu-budget", type=float, metavar="SECONDS",
                   help="CPU seconds (this process, all threads) of training steps in this invocation; evaluations "
                        "and saves are not counted, so recipes compared side by side get equal compute; stop at a "
                        "step boundary and save (exit status 75)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps in this invocation "
                                                 "(exit status 75; 0 when the run finishes)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def requested(args) -> dict:
    """The settings asked for, lowest first: --recipe, --config (only what the file states), flags."""
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if getattr(args, f.name) is not None}
    stated = {}
    if args.config:
        full = TrainConfig.load(args.config).to_dict()   # validates: unknown fields and bad values are refused
        import yaml   # YAML is a superset of JSON: one parser for both
        stated = {k: full[k] for k in (yaml.safe_load(Path(args.config).read_text()) or {})}
    return {**(RECIPES[args.recipe] if args.recipe else {}), **stated, **flags}


@_cli.command
def main(argv=None) -> int:
    args = parse_args(argv)
    device = _cli.resolve_device(args.device)
    try:
        cfg, init = resolve_config(Path(args.out), requested(args), args.init_from)
        out = run_training(cfg, Path(args.out), args.time_budget, device, progress=not args.no_progress,
                           max_steps=args.max_steps, init=init, fused_lif=args.fused_lif,
                           cpu_budget=args.cpu_budget)
        code = EXIT_FINISHED if out["status"] == "finished" else EXIT_STOPPED
    except FloatingPointError as e:
        print(f"error: {e}", file=sys.stderr)
        code = EXIT_NONFINITE
    finally:
        distributed = dist.is_initialized()
        if distributed:
            dist.destroy_process_group()
    if distributed:
        # Under torchrun the interpreter's teardown races with threads of the process group and
        # sometimes aborts ("terminate called without an active exception", seen here once in a
        # few CI runs) after all the work is saved: leave without it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


cli = _cli.entry_point(main)

if __name__ == "__main__":
    cli()
