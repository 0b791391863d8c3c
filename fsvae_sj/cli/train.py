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

from . import common
from ..models.config import ConfigError, parse_file
from ..datasets import DATASETS
from ..models.losses import DISTANCES, MMD_REDUCTIONS
from ..models.registry import ARCHITECTURES
from ..spiking.surrogate import DEFAULT_A, PRESETS
from ..training import (BRANCH_CHANGES, EXIT_FINISHED, EXIT_NONFINITE, EXIT_STOPPED, RECIPES, RESUMABLE_CHANGES,
                        TrainConfig, branch_run, resolve_config, run_training)


# What each TrainConfig field does as a flag (its unit or choices); the default shown after it
# is the field's, except where the field's None stands for something else (EFFECTIVE_DEFAULTS).
FIELD_HELP = {
    "dataset": f"training and test images: one of {', '.join(DATASETS)}",
    "model": f"architecture: one of {', '.join(ARCHITECTURES)}",
    "epochs": "passes over the training images",
    "batch_size": "images per optimiser step, per process",
    "lr": "AdamW learning rate (at the first step; see --lr-schedule)",
    "weight_decay": "AdamW weight decay",
    "scheduled": "scheduled sampling: in training, each input z_t of the prior from time step t = 5 on is "
                 "replaced by the prior's own guess with probability p (true/false)",
    "scheduled_start": "scheduled sampling's p in the first epoch (it grows linearly to --scheduled-end)",
    "scheduled_end": "scheduled sampling's p that the linear ramp reaches at the end of --epochs",
    "distance": f"prior-posterior distance in the FSVAE loss: one of {', '.join(DISTANCES)} (mmd: of the "
                f"PSP-filtered firing probabilities)",
    "mmd_reduction": f"the MMD's reduction: one of {', '.join(MMD_REDUCTIONS)} (mean over steps, images and "
                     f"channels, as the authors' code; sum over the T steps as the paper writes it: T times larger)",
    "n_steps": "time steps T of the spiking network (FSVAE)",
    "surrogate": f"surrogate-gradient preset: one of {', '.join(PRESETS)} (code: the authors' code, rectangle "
                 f"centred at u = 0; paper: centred at the threshold)",
    "surrogate_a": "width a of the rectangle surrogate (height 1/a), in membrane units",
    "seed": "seed of the initial weights, the data order and every random draw of training",
    "limit_train": "train on the first N training images only",
    "limit_test": "test images used by each evaluation (recon MSE)",
    "save_every": "also save state.pt and model.safetensors every N steps within an epoch (0: at epoch ends only)",
    "data_root": common.DATA_ROOT,
    "download": "download missing datasets with torchvision (true/false)",
    "ema_decay": "keep an exponential moving average of the weights and tdBN statistics with this decay per step, "
                 "in (0, 1), saved as ema.safetensors",
    "lr_schedule": "learning-rate schedule: constant or cosine (from --lr down to --lr x --lr-min-ratio)",
    "lr_min_ratio": "cosine schedule's last learning rate as a fraction of --lr",
    "lr_decay_steps": "optimiser steps over which the cosine schedule decays (0: until the end of --epochs)",
    "lr_warmup_steps": "optimiser steps of a linear learning-rate ramp at the start of this run (after --init-from "
                       "the optimiser restarts: its first steps are large); 0: none",
    "eval_every": "also evaluate every N optimiser steps, into evals.csv (0: at epoch ends only)",
    "eval_samples": "samples for the AE Frechet distance of each evaluation, 0 or >= 2 (0: none)",
    "calibrate_decoder": "also score, at each evaluation, the EMA with its decoder's tdBN statistics re-estimated on "
                         "this many prior samples (fsvae_sj.calibration); best.safetensors may be that one; 0: off",
    "stage": "what the run trains: full (the whole model on the FSVAE loss); autoencoder (encoder, posterior and "
             "decoder on the same loss, the prior frozen in eval mode); decoder (the decoder alone on the reconstruction "
             "error, everything else frozen in eval mode); prior (the prior alone on --distance, "
             "teacher-forced on the posterior's z); prior-free (the prior alone, drawing its own z in training mode, "
             "on the kernel MMD between its latent spike trains and the posterior's over the batch). In the prior "
             "stages encoder, posterior and decoder stay frozen in eval mode (weights and tdBN statistics unchanged): "
             "a stage after the main run, started with --init-from",
    "prior_free_on": "what the prior-free stage's MMD compares: spikes (the latent spike trains), probabilities "
                     "(the firing probabilities they are drawn from: less noise, the difference seen at smaller batches) "
                     "or images (the frozen decoder's images of the trains, with the spikes' gradient passed straight "
                     "through to their probabilities; a decoder pass more per step), or several joined by + "
                     "(e.g. images+probabilities: the sum of their MMDs, of one draw)",
    "decoder_prior_mix": "decoder stage: probability in [0, 1] that each latent of each step of the posterior's z is "
                         "replaced by the frozen prior's own draw given the posterior's history (the decoder learns to "
                         "decode the prior's errors too); 0: the posterior's z alone. Measured on fashion-mnist at 0.5: samples worse "
                         "(benchmarks/RESULTS.md, \"Second passes, and the decoder on the prior's draws\")",
    "recon_loss": "the reconstruction error trained on (full, autoencoder and decoder stages): mse (the paper's) or l1 "
                  "(the mean absolute error: each pixel's median given the latent code, not its mean; sharper where "
                  "mse blends)",
    "prior_statistics": "prior-free stage: how the prior's tdBN normalises: batch (training mode: the batch statistics "
                        "of its own trains, running statistics updated from them) or running (eval mode: the running "
                        "statistics it generates with, never updated; the function trained is the one that samples)",
}
EFFECTIVE_DEFAULTS = {
    "lr": "1e-3 x batch size x processes / 250: 1e-3 at the paper's batch of 250",
    "surrogate_a": "the preset's: " + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_A.items()),
    "limit_train": "all",
    "data_root": common.DATA_ROOT_DEFAULT,
    "ema_decay": "none, no average",
}


def build_parser():
    p = common.parser(
        "train",
        "Train FSVAE or the ANN VAE baseline with the paper's recipe (or --recipe zoo-short). "
        "Re-running with the same --out resumes exactly (model, optimiser, EMA, epoch, step, data "
        "order, RNG); a resume may change only " + ", ".join(RESUMABLE_CHANGES) + ". "
        "--init-from continues from a zoo entry or a .safetensors when the run state is gone. "
        "Under torchrun it trains with DistributedDataParallel (Gloo on CPU, NCCL on GPU). "
        "SIGTERM or Ctrl-C finishes the step, saves and exits with 75; a second Ctrl-C aborts at once "
        "(the last save is kept). A start removes temporaries a killed save left in the run folder. "
        "Exit status: 0 finished, 75 stopped early and resumable, 3 non-finite loss or weights "
        "(the last good state is kept), 2 a refused setting, missing data or unknown flags, 130 aborted.",
        common.device_flag(), common.fused_lif_flag(default=True))
    d = TrainConfig()
    p.add_argument("--out", required=True, metavar="DIR",
                   help="run directory (state.pt, *.safetensors, log.csv, evals.csv, grids, TensorBoard events); "
                        "required")
    p.add_argument("--config", metavar="FILE",
                   help="a TrainConfig JSON/YAML; command-line flags override it (default: none)")
    p.add_argument("--recipe", choices=sorted(RECIPES),
                   help="a named recipe: 'paper' (the defaults) or 'zoo-short' (the zoo's short-budget one: "
                        + ", ".join(f"{k}={v}" for k, v in RECIPES["zoo-short"].items()) + "); flags override it "
                        "(default paper)")
    p.add_argument("--init-from", metavar="NAME|PATH",
                   help="start a new run from a zoo entry or .safetensors: weights and tdBN statistics exact, "
                        "optimiser restarted, epochs/steps/CPU-hours/learning curve and the source's recipe carried over "
                        "(flags override it; --stage is not carried: full unless given) (default: freshly "
                        "initialised weights)")
    p.add_argument("--branch-from", metavar="RUN",
                   help="start a new run (--out) from another run folder's whole state: weights, optimiser "
                        "moments, EMA, data order and RNG; only the learning-rate schedule ("
                        + ", ".join("--" + k.replace("_", "-") for k in BRANCH_CHANGES) + ") and what a resume "
                        "may change may differ, and the schedule starts at the branch point: recipes compared "
                        "from one saved state (default: none)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(d, f.name)
        shown = str(default).lower() if isinstance(default, bool) else default
        help_ = f"{FIELD_HELP[f.name]} (default {EFFECTIVE_DEFAULTS.get(f.name, shown)})"
        if isinstance(default, bool):
            p.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=None,
                           metavar="BOOL", help=help_)
        else:
            typ = {"lr": float, "surrogate_a": float, "limit_train": int, "limit_test": int,
                   "data_root": str, "ema_decay": float}.get(f.name, type(default))
            p.add_argument(flag, type=typ, default=None, help=help_)
    p.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="wall-clock seconds for this invocation: stop at a step boundary and save (exit status "
                        "75) (default: no limit)")
    p.add_argument("--cpu-budget", type=float, metavar="SECONDS",
                   help="CPU seconds (this process, all threads) of training steps in this invocation; evaluations "
                        "and saves are not counted, so recipes compared side by side get equal compute; stop at a "
                        "step boundary and save (exit status 75) (default: no limit)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps in this invocation "
                                                 "(exit status 75; 0 when the run finishes) (default: no limit)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (default: a tqdm bar per epoch on the first process)")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def requested(args) -> dict:
    """The settings asked for, lowest first: --recipe, --config (only what the file states), flags."""
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if getattr(args, f.name) is not None}
    stated = {}
    if args.config:
        full = TrainConfig.load(args.config).to_dict()   # validates: unknown fields and bad values are refused
        stated = {k: full[k] for k in parse_file(args.config)}
    return {**(RECIPES[args.recipe] if args.recipe else {}), **stated, **flags}


@common.command
def main(argv=None) -> int:
    args = parse_args(argv)
    device = common.resolve_device(args.device)
    try:
        if args.branch_from:
            if args.init_from:
                raise ConfigError("--branch-from and --init-from exclude each other: a branch keeps the "
                                  "source run's optimiser, --init-from restarts it")
            branch_run(Path(args.branch_from), Path(args.out), requested(args))
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


cli = common.entry_point(main)

if __name__ == "__main__":
    cli()
