"""Train FSVAE (or the ANN VAE baseline): resumable, time-boxed, single or multi-process.

The library behind ``python -m fsvae_sj.train`` (:mod:`fsvae_sj.train` is its command line):
:func:`resolve_config` decides a run's :class:`TrainConfig`, :func:`run_training` trains.

The run directory holds ``state.pt`` (model, optimiser, EMA, epoch, step, every RNG;
written atomically, loaded with ``weights_only=True``), ``model.safetensors`` (the
raw weights in our format), ``ema.safetensors`` (their exponential moving average,
when ``--ema-decay`` is set), ``best.safetensors`` (whichever of the two had the best
AE Frechet distance at any evaluation so far), ``log.csv`` (one row per epoch),
``evals.csv`` (every evaluation), image grids, and the same numbers and grids as
TensorBoard events (:mod:`fsvae_sj.tblog`). Resuming from ``state.pt`` gives the same
weights as a run that never stopped.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import io
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from . import tblog, zoo
from .calibration import calibrate_decoder
from .zoo.checkpoint import read_checkpoint, save_model
from .models.config import ConfigError, _Serialisable
from .datasets import DATASETS, batch_of, canonical, make_dataset
from .errors import CheckpointError
from .files import atomic_write_bytes, remove_stale_temporaries, sha256_file
from .locks import claim_folder
from .models.losses import DISTANCES, MMD_REDUCTIONS, LossSettings
from .metrics import afd_scores, generate, recon_mse
from .models.registry import ARCHITECTURES, architecture, build_model, load_state_strict
from .spiking.lif import use_fused_kernels

STATE = "state.pt"
# Exit statuses of the command line: finished; stopped early (SIGTERM, Ctrl-C, --time-budget, --max-steps; run
# again to resume, as EX_TEMPFAIL says); a non-finite loss or weights (last good state kept).
EXIT_FINISHED, EXIT_STOPPED, EXIT_NONFINITE = 0, 75, 3

# Settings a resume may change: they decide how long to train and what is measured or
# saved, never what the finished steps learned. Any other difference is refused. (A new
# --epochs also stretches the scheduled-sampling ramp, p = start + (end - start) * epoch /
# epochs, for the epochs still to come.)
RESUMABLE_CHANGES = ("epochs", "save_every", "eval_every", "eval_samples", "limit_test", "calibrate_decoder")
# What a branch (a new run from another run's whole state, see branch_run) may change besides: the
# learning-rate schedule, which then starts at the branch point.
BRANCH_CHANGES = ("lr_schedule", "lr_decay_steps", "lr_min_ratio", "lr_warmup_steps")

# The zoo's short-budget recipe (its cards cite it by name); the paper's is TrainConfig().
RECIPES = {
    "paper": {},
    "zoo-short": {"batch_size": 64, "lr": 1e-3, "surrogate": "paper", "surrogate_a": 0.5,
                  "limit_test": 1000, "save_every": 100, "ema_decay": 0.999, "eval_every": 300},
}


@dataclass(frozen=True)
class TrainConfig(_Serialisable):
    """The paper's recipe by default (T 16, batch 250, AdamW 1e-3 x batch/250, wd 1e-3,
    150 epochs, scheduled sampling 0.1 -> 0.3, constant learning rate, no weight average).

    ``ema_decay``: keep an exponential moving average of the weights and tdBN statistics
    (``torch.optim.swa_utils.AveragedModel``, buffers included); None: off.
    ``lr_schedule``: ``"constant"`` or ``"cosine"`` (from ``lr`` at the run's first step
    to ``lr * lr_min_ratio`` after ``lr_decay_steps`` steps, or at the end of ``epochs`` if 0).
    ``lr_warmup_steps``: a linear ramp of the learning rate over the run's first steps: a restarted
    AdamW's first steps move every weight by about ``lr`` whatever its gradient's size (its moment
    estimates are fresh), which knocked trained weights back (benchmarks/RESULTS.md, quality study).
    ``eval_every``: also evaluate every N optimiser steps (0: at epoch ends only);
    ``eval_samples``: samples for the AE Frechet distance of each evaluation (0: none).
    ``calibrate_decoder``: also evaluate (and keep as ``best.safetensors`` when it wins) the EMA
    with its decoder's tdBN statistics re-estimated on this many prior samples
    (:func:`fsvae_sj.calibration.calibrate_decoder`); 0: off. Changes no training step.
    """

    dataset: str = "fashion-mnist"
    model: str = "fsvae"
    epochs: int = 150
    batch_size: int = 250
    lr: float | None = None
    weight_decay: float = 1e-3
    scheduled: bool = True
    scheduled_start: float = 0.1
    scheduled_end: float = 0.3
    distance: str = "mmd"
    mmd_reduction: str = "mean"
    n_steps: int = 16
    surrogate: str = "code"
    surrogate_a: float | None = None
    seed: int = 0
    limit_train: int | None = None
    limit_test: int | None = 2000
    save_every: int = 50
    data_root: str | None = None
    download: bool = False
    ema_decay: float | None = None
    lr_schedule: str = "constant"
    lr_min_ratio: float = 0.01
    lr_decay_steps: int = 0
    lr_warmup_steps: int = 0
    eval_every: int = 0
    eval_samples: int = 1000
    calibrate_decoder: int = 0

    def __post_init__(self):
        self._check_types()
        ranges = {"epochs": (self.epochs >= 1, ">= 1"), "n_steps": (self.n_steps >= 1, ">= 1"),
                  "seed": (self.seed >= 0, ">= 0"), "lr": (self.lr is None or self.lr > 0, "> 0 or null"),
                  "weight_decay": (self.weight_decay >= 0, ">= 0"),
                  "scheduled_start": (0 <= self.scheduled_start <= 1, "in [0, 1]"),
                  "scheduled_end": (0 <= self.scheduled_end <= 1, "in [0, 1]"),
                  "distance": (self.distance in DISTANCES, f"one of {DISTANCES}"),
                  "mmd_reduction": (self.mmd_reduction in MMD_REDUCTIONS, f"one of {MMD_REDUCTIONS}"),
                  "limit_test": (self.limit_test is None or self.limit_test >= 1, ">= 1 or null"),
                  "save_every": (self.save_every >= 0, ">= 0"), "eval_every": (self.eval_every >= 0, ">= 0"),
                  "lr_min_ratio": (0 <= self.lr_min_ratio <= 1, "in [0, 1]"),
                  "lr_decay_steps": (self.lr_decay_steps >= 0, ">= 0"),
                  "lr_warmup_steps": (self.lr_warmup_steps >= 0, ">= 0"),
                  "calibrate_decoder": (self.calibrate_decoder == 0 or self.calibrate_decoder >= 2,
                                        "0 (off) or >= 2 samples")}
        for name, (ok, want) in ranges.items():
            if not ok:
                raise ConfigError(f"TrainConfig field {name} must be {want}, got {getattr(self, name)!r}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.eval_samples == 1 or self.eval_samples < 0:
            raise ConfigError(f"eval_samples must be 0 (no AE Frechet) or >= 2, got {self.eval_samples}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")

    def model_config(self):
        """The config of the architecture ``model`` for the dataset's images, with the recipe's
        fields that architecture takes (the registry says which)."""
        arch, data = architecture(self.model), DATASETS[canonical(self.dataset)]
        return arch.config.for_images(data.channels, data.size,
                                      **{f: getattr(self, f) for f in arch.recipe_fields})

    def loss_settings(self, epoch: int, batches: int) -> LossSettings:
        """What ``model.loss`` needs in ``epoch`` of ``batches`` steps."""
        return LossSettings(scheduled_p(self, epoch), self.distance, self.mmd_reduction, 1.0 / batches)

    def base_lr(self, world: int = 1) -> float:
        return self.lr if self.lr is not None else 1e-3 * self.batch_size * world / 250


def config_differences(old: dict, new: dict) -> list[str]:
    """Fields whose values differ, absent fields read as their defaults."""
    d = TrainConfig().to_dict()
    return [k for k in sorted(set(old) | set(new)) if {**d, **old}.get(k) != {**d, **new}.get(k)]


def scheduled_p(cfg: TrainConfig, epoch: int) -> float:
    if not cfg.scheduled:
        return 0.0
    return cfg.scheduled_start + (cfg.scheduled_end - cfg.scheduled_start) * epoch / cfg.epochs


def learning_rate(cfg: TrainConfig, global_step: int, first_step: int, total_steps: int, world: int = 1) -> float:
    """The learning rate of optimiser step ``global_step`` (counted over the whole run): the
    schedule's, times ``(k + 1) / (lr_warmup_steps + 1)`` for the k-th step of the run while
    ``k < lr_warmup_steps``."""
    lr = cfg.base_lr(world)
    k = global_step - first_step
    warm = (k + 1) / (cfg.lr_warmup_steps + 1) if 0 <= k < cfg.lr_warmup_steps else 1.0
    if cfg.lr_decay_steps:
        total_steps = first_step + cfg.lr_decay_steps
    if cfg.lr_schedule == "constant" or total_steps <= first_step:
        return lr * warm
    t = min(max(k / (total_steps - first_step), 0.0), 1.0)
    lo = lr * cfg.lr_min_ratio
    return (lo + (lr - lo) * 0.5 * (1 + math.cos(math.pi * t))) * warm


def batches_per_epoch(n: int, batch_size: int) -> int:
    """Batches of one rank's ``n`` images; a last batch of one image is left out, since tdBN
    (and BatchNorm) in training mode cannot normalise a single value per channel."""
    if batch_size < 2:
        raise ConfigError(f"batch size must be >= 2 (tdBN in training mode needs two images), got {batch_size}")
    if n < 2:
        raise ConfigError(f"{n} training image(s) per process; at least 2 are needed")
    return n // batch_size + (n % batch_size >= 2)


def epoch_order(n: int, seed: int, epoch: int, rank: int, world: int) -> torch.Tensor:
    """This rank's sample order for an epoch: a permutation fixed by (seed, epoch), sharded."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g)
    per_rank = n // world
    return perm[rank * per_rank:(rank + 1) * per_rank] if world > 1 else perm


def process_placement(device: str, env=None) -> tuple[str | None, str]:
    """(process-group backend or None for one process, this process's device).

    Under torchrun (``WORLD_SIZE`` > 1) each rank takes its own GPU ``cuda:LOCAL_RANK``
    when ``device`` asks for CUDA, with NCCL; on the CPU, Gloo. The backend follows the
    requested device, not whether the machine happens to have a GPU."""
    env = os.environ if env is None else env
    if int(env.get("WORLD_SIZE", "1")) <= 1:
        return None, device
    if device.startswith("cuda"):
        return "nccl", f"cuda:{int(env.get('LOCAL_RANK', '0'))}"
    return "gloo", device


def _dist_info(device: str) -> tuple[int, int, str]:
    """(rank, world size, this process's device), joining the process group if torchrun started us."""
    backend, device = process_placement(device)
    if backend is None:
        return 0, 1, device
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size(), device


def build(cfg: TrainConfig):
    """The run's freshly initialised model (initialisation drawn from ``cfg.seed``)."""
    torch.manual_seed(cfg.seed)
    return build_model(cfg.model_config())


def make_ema(model, decay: float):
    """EMA of the weights and of the tdBN / BatchNorm running statistics."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


class _Objective(torch.nn.Module):
    """``model.loss`` as a module's forward: DistributedDataParallel synchronises gradients
    only through the forward of the module it wraps."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, settings: LossSettings, generator: torch.Generator):
        return self.model.loss(x, settings, generator)


def _agree(flag: bool, world: int, device) -> bool:
    """True on every rank if it is true on any (so that all ranks stop at the same step)."""
    if world == 1:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _check_finite(module, what: str) -> None:
    bad = [k for k, v in module.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise FloatingPointError(f"{what} has non-finite values in {bad[:4]}{' ...' if len(bad) > 4 else ''}; "
                                 f"nothing was written")


@dataclass
class RunState:
    """What a run carries from one step to the next, besides model and optimiser."""

    epoch: int = 0
    step: int = 0
    history: list = dataclasses.field(default_factory=list)   # one row per completed epoch
    evals: list = dataclasses.field(default_factory=list)     # one row per evaluation
    elapsed: float = 0.0       # wall seconds, all sessions
    cpu_seconds: float = 0.0   # this process's CPU time (all its threads), all sessions
    first_step: int = 0        # global step where this run's learning-rate schedule starts
    provenance: list = dataclasses.field(default_factory=list)  # warm starts, optimiser restarts
    best_afd: float | None = None   # runs before the validation reference chose by this (the test AE Frechet)
    best_val_afd: float | None = None   # the AE Frechet to the training images of best.safetensors
    meters: dict = dataclasses.field(default_factory=dict)     # sums of this epoch's losses so far

    def meta(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "history": self.history, "evals": self.evals,
                "elapsed": self.elapsed, "cpu_seconds": self.cpu_seconds, "first_step": self.first_step,
                "provenance": self.provenance, "best_afd": self.best_afd, "best_val_afd": self.best_val_afd,
                "meters": self.meters}


class _Clock:
    """Wall and process-CPU time since the run (re)started, added to what earlier sessions used."""

    def __init__(self, rs: RunState):
        self.rs, self.wall0, self.cpu0 = rs, time.time(), time.process_time()
        self.elapsed0, self.cpu_seconds0 = rs.elapsed, rs.cpu_seconds

    def update(self) -> None:
        self.rs.elapsed = self.elapsed0 + time.time() - self.wall0
        self.rs.cpu_seconds = self.cpu_seconds0 + time.process_time() - self.cpu0


def _save_state(run: Path, model, opt, ema, cfg, rs: RunState, gen, rank: int, world: int):
    """Every rank calls this (its sampling generator is gathered); rank 0 writes.
    Non-finite weights are never written: the last good checkpoint stays."""
    gens = [gen.get_state()]
    if world > 1:
        gens = [None] * world
        dist.all_gather_object(gens, gen.get_state())
    if rank != 0:
        return
    core = model
    _check_finite(core, "the model")
    state = {"train_config": cfg.to_dict(), "model_config": core.config.to_dict(),
             "model": core.state_dict(), "optimizer": opt.state_dict(), "epoch": rs.epoch, "step": rs.step,
             "torch_rng": torch.get_rng_state(), "gen": gens, "run_state": json.dumps(rs.meta()),
             "history": json.dumps(rs.history), "elapsed": rs.elapsed}
    if ema is not None:
        state["ema"] = ema.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(run / STATE, buf.getvalue())
    extra = {"train_config": cfg.to_dict(), **rs.meta()}
    save_model(core, run / "model.safetensors", extra=extra)
    if ema is not None:
        save_model(ema.module, run / "ema.safetensors", extra={**extra, "weights": "ema"})


def read_state(path: Path) -> dict:
    """A run's ``state.pt`` (tensors and plain values only: ``weights_only``); raises
    :class:`~fsvae_sj.errors.CheckpointError` naming the file and the ways on when it is cut short,
    corrupt or lacks a part."""
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:   # torch's readers raise RuntimeError, EOFError, UnpicklingError, ...
        raise CheckpointError(
            f"{path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'empty'}): cut "
            f"short or corrupt. To go on from the last saved weights, start a new run with --out NEW --init-from "
            f"{path.parent / 'model.safetensors'}; or delete {path} to start this run again") from None
    missing = [k for k in ("train_config", "model", "optimizer", "gen", "torch_rng") if not isinstance(st, dict)
               or k not in st]
    if missing:
        raise CheckpointError(f"{path} is not a run state of ours (no {', '.join(missing)}); delete it, or start "
                              f"a new run with --init-from {path.parent / 'model.safetensors'}")
    return st


def _load_state(run: Path, cfg: TrainConfig, model, opt, ema, gen, rank: int, world: int) -> RunState:
    st = read_state(run / STATE)
    saved_world = len(st["gen"]) if isinstance(st["gen"], list) else 1
    if saved_world != world:
        raise CheckpointError(f"{run / STATE} was written by {saved_world} process(es), this is {world}: the batches, "
                         f"data shards and learning rate depend on it; resume with {saved_world} or use "
                         f"--init-from in a new run")
    load_state_strict(model, st["model"], source=str(run / STATE))
    opt.load_state_dict(st["optimizer"])
    torch.set_rng_state(st["torch_rng"])
    gens = st["gen"]  # one state per rank (a single tensor in the first format)
    gen.set_state(gens[rank] if isinstance(gens, list) else gens)
    if "run_state" in st:
        rs = RunState(**json.loads(st["run_state"]))
    else:  # written before RunState: its elapsed wall time x 1 thread bounds the CPU time
        rs = RunState(epoch=st["epoch"], step=st["step"], history=json.loads(st["history"]),
                      elapsed=st["elapsed"], cpu_seconds=st["elapsed"])
    # best.safetensors may be newer than the state (a kill between the two writes): it keeps its score
    best = run / "best.safetensors"
    if best.is_file():
        meta = read_checkpoint(best)[2]
        if meta.get("afd_samples") == cfg.eval_samples and meta.get("val_afd_at_save") is not None:
            rs.best_val_afd = min(x for x in (rs.best_val_afd, meta["val_afd_at_save"]) if x is not None)
    if ema is not None:
        if "ema" in st:
            ema.load_state_dict(st["ema"])
        else:  # the average starts here
            ema.update_parameters(model)
            rs.provenance.append({"event": "EMA started", "epoch": rs.epoch, "step": rs.step,
                                  "ema_decay": cfg.ema_decay})
    return rs


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def _save_grids(run: Path, model, x: torch.Tensor, epoch: int) -> dict[str, Path]:
    from torchvision.utils import save_image
    x = x[:32].to(next(model.parameters()).device)
    with torch.no_grad():
        samples = model.sample(64, seed=0).cpu()
        recon = model.reconstruct(x, seed=0).cpu()
    x = x.cpu()
    grids = {name: run / f"{name}_epoch{epoch:03d}.png" for name in ("sample", "recon")}
    for name, images in (("sample", samples), ("recon", torch.cat([x[:32], recon]))):
        buf = io.BytesIO()   # written whole or not at all, like every file of the run
        save_image((images + 1) / 2, buf, format="png", nrow=8)
        atomic_write_bytes(grids[name], buf.getvalue())
    return grids


def _evaluate(run: Path, core, ema, cfg: TrainConfig, test_set, rs: RunState, global_step: int) -> dict:
    """Recon MSE on the test subset and AE Frechet of ``eval_samples`` samples (seed 0) to the
    test statistics (``afd``, the paper's number) and to the training images' (``val_afd``), for
    the raw weights and their EMA; keeps ``best.safetensors``: the lowest ``val_afd`` so far
    (choosing by the test number and then reporting it would flatter it)."""
    row = {"epoch": rs.epoch, "step": rs.step, "global_step": global_step,
           "cpu_hours": round(rs.cpu_seconds / 3600, 4), "wall_seconds": round(rs.elapsed, 1)}
    candidates = [("raw", core)] + ([("ema", ema.module)] if ema is not None else [])
    if ema is not None and cfg.calibrate_decoder:
        candidates.append(("ema-calibrated", calibrate_decoder(copy.deepcopy(ema.module), n=cfg.calibrate_decoder)))
    was = core.training
    best = None
    for name, m in candidates:
        m.eval()
        prefix = {"raw": "", "ema": "ema_", "ema-calibrated": "emacal_"}[name]
        row[prefix + "test_recon_mse"] = round(recon_mse(m, test_set), 6)
        if cfg.eval_samples > 0 and canonical(cfg.dataset) in ("mnist", "fashion-mnist"):
            afd = afd_scores(generate(m, cfg.eval_samples, seed=0), canonical(cfg.dataset))
            row[prefix + "afd"] = round(afd["test"], 3)
            row[prefix + "val_afd"] = round(afd["train"], 3)
            if best is None or afd["train"] < best[0]:
                best = (afd["train"], name, m, afd["test"])
    core.train(was)
    rs.evals.append(row)
    if best is not None and (rs.best_val_afd is None or best[0] < rs.best_val_afd):
        rs.best_val_afd = best[0]
        row["best"] = best[1]
        _check_finite(best[2], f"the {best[1]} weights")
        save_model(best[2], run / "best.safetensors",
                   extra={"train_config": cfg.to_dict(), **rs.meta(), "weights": best[1],
                          "val_afd_at_save": round(best[0], 3), "afd_at_save": round(best[3], 3),
                          "afd_samples": cfg.eval_samples})
    _write_csv(run / "evals.csv", rs.evals)
    print(json.dumps(row), flush=True)
    return row


@dataclass
class _Session:
    """What one invocation of :func:`run_training` trains with (made by :func:`_setup`)."""

    cfg: TrainConfig
    run: Path
    rank: int
    world: int
    device: str
    train_set: object
    test_set: object
    n_batches: int
    model: torch.nn.Module
    net: torch.nn.Module            # the model's loss as a module, wrapped for DDP when world > 1
    opt: torch.optim.Optimizer
    ema: object | None
    gen: torch.Generator
    rs: RunState
    clock: _Clock
    tb: tblog.RunLog | None         # TensorBoard events, on rank 0

    def save(self) -> None:
        self.clock.update()
        _save_state(self.run, self.model, self.opt, self.ema, self.cfg, self.rs, self.gen, self.rank, self.world)


@dataclass
class _Limits:
    """When this invocation stops early, at a step boundary (SIGTERM or Ctrl-C, time budget, step count)."""

    time_budget: float | None
    max_steps: int | None
    stop_requested: object          # () -> the name of the stopping signal that arrived, or None
    cpu_budget: float | None = None  # CPU seconds of this invocation's training steps
    start: float = dataclasses.field(default_factory=time.time)
    steps_run: int = 0
    last_step: float = 0.0          # seconds of the last step: a step must fit in the budget left
    cpu_used: float = 0.0           # CPU seconds of the steps run (evaluations and saves excluded)
    last_step_cpu: float = 0.0

    def reason(self) -> str | None:
        if self.max_steps is not None and self.steps_run >= self.max_steps:
            return "max_steps"
        if self.time_budget is not None and time.time() - self.start + self.last_step > self.time_budget:
            return "time_budget"
        if self.cpu_budget is not None and self.cpu_used + self.last_step_cpu > self.cpu_budget:
            return "cpu_budget"
        if self.stop_requested():
            return f"stopped by {self.stop_requested()}"
        return None


def run_training(cfg: TrainConfig, run: Path, time_budget: float | None = None,
                 device: str = "cpu", progress: bool = True, max_steps: int | None = None,
                 init: WarmStart | None = None, fused_lif: bool = False, cpu_budget: float | None = None) -> dict:
    """Train (or resume) in ``run``; returns ``{"status", "epoch", "step", "steps_run"}``. Stops
    cleanly at a step boundary when ``time_budget`` wall seconds are used, ``cpu_budget`` CPU
    seconds of training steps (this process, all threads; evaluations and saves not counted: equal
    compute for recipes compared side by side) or ``max_steps`` is reached (status "time_budget" /
    "cpu_budget" / "max_steps"), or on SIGTERM or a first Ctrl-C. ``init`` starts a new run from another
    run's weights (see :func:`warm_start`). ``fused_lif``: the LIF neurons on torch.compile'd
    kernels (:func:`fsvae_sj.neurons.use_fused_kernels`: the same spikes, gradients to rounding;
    compiles once per process). Raises FloatingPointError on a non-finite loss."""
    with contextlib.ExitStack() as claim:   # the run folder is this process's until it returns
        s = _setup(cfg, run, device, init, fused_lif, claim)
        with _stop_on_signals() as stop_requested:
            limits = _Limits(time_budget, max_steps, stop_requested, cpu_budget)
            status = "finished"
            while status == "finished" and s.rs.epoch < cfg.epochs:
                status = _train_epoch(s, limits, progress)
                if status == "finished":
                    _end_epoch(s)
        s.save()
        if s.rank == 0:
            _write_csv(run / "log.csv", s.rs.history)
            s.tb.close()
            print(f"{status}: epoch {s.rs.epoch}, step {s.rs.step}; state in {run / STATE}")
        if s.world > 1:
            _check_replicas(s.model, run, s.rank, s.world)
        return {"status": status, "epoch": s.rs.epoch, "step": s.rs.step, "steps_run": limits.steps_run}


def _setup(cfg: TrainConfig, run: Path, device: str, init: WarmStart | None, fused_lif: bool,
           claim: contextlib.ExitStack) -> _Session:
    """Data, model, optimiser, EMA and run state: resumed from ``run/state.pt``, else new. Rank 0
    claims the run folder in ``claim`` (a second process training into it is refused)."""
    rank, world, device = _dist_info(device)
    # data first: a missing dataset must not leave an empty run folder behind
    train_set = make_dataset(cfg.dataset, "train", cfg.data_root, cfg.download, cfg.limit_train)
    test_set = make_dataset(cfg.dataset, "test", cfg.data_root, cfg.download, cfg.limit_test)
    n_batches = batches_per_epoch(len(train_set) // world, cfg.batch_size)
    run.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        claim.enter_context(claim_folder(run, "a training run"))
        stale = remove_stale_temporaries(run)   # left by a save that was killed (kill -9, power loss)
        if stale:
            print(f"removed {len(stale)} temporary file(s) left by an interrupted save in {run}: "
                  f"{', '.join(p.name for p in stale)}", file=sys.stderr)
    model = use_fused_kernels(build(cfg).to(device), fused_lif)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.base_lr(world), betas=(0.9, 0.999),
                            weight_decay=cfg.weight_decay)
    ema = make_ema(model, cfg.ema_decay) if cfg.ema_decay else None
    gen = torch.Generator().manual_seed(cfg.seed + 1 + rank)
    if (run / STATE).is_file():
        rs = _load_state(run, cfg, model, opt, ema, gen, rank, world)
        if rank == 0:
            print(f"resuming {run} at epoch {rs.epoch}, step {rs.step}")
    else:
        rs = RunState()
        if init is not None:
            rs = init.apply(model)
        if ema is not None:
            ema.update_parameters(model)
        if rank == 0:
            cfg.save(run / "train_config.json")
    net = _Objective(model)
    if world > 1:
        ids = [torch.device(device).index] if device.startswith("cuda") else None
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)
    tb = tblog.RunLog(run, rs.epoch * n_batches + rs.step) if rank == 0 else None
    return _Session(cfg, run, rank, world, device, train_set, test_set, n_batches, model, net, opt, ema, gen,
                    rs, _Clock(rs), tb)


def _train_epoch(s: _Session, limits: _Limits, progress: bool) -> str:
    """The steps left in the current epoch; returns "finished" or why it stopped early."""
    cfg, rs = s.cfg, s.rs
    order = epoch_order(len(s.train_set), cfg.seed, rs.epoch, s.rank, s.world)
    settings = cfg.loss_settings(rs.epoch, s.n_batches)
    total = cfg.epochs * s.n_batches
    bar = None
    if progress and s.rank == 0:
        from tqdm import tqdm
        bar = tqdm(total=s.n_batches, initial=rs.step, desc=f"epoch {rs.epoch}", dynamic_ncols=True)
    s.net.train()
    limits.last_step = limits.last_step_cpu = 0.0
    status = "finished"
    while rs.step < s.n_batches:
        reason = limits.reason()
        if _agree(reason is not None, s.world, s.device):   # every rank stops at the same step
            status = reason or "stopped by another rank"
            break
        t0, c0 = time.time(), time.process_time()
        gstep = rs.epoch * s.n_batches + rs.step
        for group in s.opt.param_groups:
            group["lr"] = learning_rate(cfg, gstep, rs.first_step, total, s.world)
        x = batch_of(s.train_set, order[rs.step * cfg.batch_size:(rs.step + 1) * cfg.batch_size]).to(s.device)
        losses = s.net(x, settings, s.gen)
        if not torch.isfinite(losses["loss"]):
            if bar:
                bar.close()
            raise FloatingPointError(f"loss is {float(losses['loss'].detach())} at epoch {rs.epoch} "
                                     f"step {rs.step}; stopped; the last good checkpoint in {s.run} is kept")
        s.opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        s.opt.step()
        if s.ema is not None:
            s.ema.update_parameters(s.model)
        rs.step += 1
        limits.steps_run += 1
        for k, v in losses.items():
            rs.meters[k] = rs.meters.get(k, 0.0) + float(v.detach())
        rs.meters["n"] = rs.meters.get("n", 0) + 1
        limits.last_step = time.time() - t0
        limits.last_step_cpu = time.process_time() - c0
        limits.cpu_used += limits.last_step_cpu
        if bar:
            bar.set_postfix({k: f"{float(v.detach()):.4f}" for k, v in losses.items()})
            bar.update(1)
        mid_epoch = rs.step < s.n_batches
        if mid_epoch and cfg.eval_every and (gstep + 1) % cfg.eval_every == 0 and s.rank == 0:
            s.clock.update()
            s.tb.evaluation(_evaluate(s.run, s.model, s.ema, cfg, s.test_set, rs, gstep + 1))
        if mid_epoch and cfg.save_every and rs.step % cfg.save_every == 0:
            s.save()
    if bar:
        bar.close()
    return status


def _end_epoch(s: _Session) -> None:
    """Evaluate (rank 0), log the epoch's row and image grids, move to the next epoch, save."""
    rs = s.rs
    if s.rank == 0:
        s.clock.update()
        n = max(rs.meters.get("n", 1), 1)
        ev = _evaluate(s.run, s.model, s.ema, s.cfg, s.test_set, rs, (rs.epoch + 1) * s.n_batches)
        s.tb.evaluation(ev)
        row = {"epoch": rs.epoch, "scheduled_p": round(scheduled_p(s.cfg, rs.epoch), 4),
               **{f"train_{k}": round(v / n, 6) for k, v in rs.meters.items() if k != "n"},
               "train_steps_averaged": n,
               **{k: v for k, v in ev.items() if k not in ("epoch", "step", "best")}}
        rs.history.append(row)
        was = s.model.training
        shown = s.ema.module if s.ema is not None else s.model  # the EMA is what gets published
        shown.eval()
        grids = _save_grids(s.run, shown, batch_of(s.test_set, torch.arange(min(32, len(s.test_set)))), rs.epoch)
        s.tb.epoch(row, grids)
        s.model.train(was)
    rs.epoch, rs.step, rs.meters = rs.epoch + 1, 0, {}
    s.save()
    if s.rank == 0:
        _write_csv(s.run / "log.csv", rs.history)


@dataclass
class WarmStart:
    """A new run's starting point taken from saved weights (the optimiser restarts)."""

    source: str
    sha256: str
    state: dict
    run_state: RunState

    def apply(self, model) -> RunState:
        load_state_strict(model, self.state, source=self.source)
        return self.run_state


def warm_start(name_or_path: str, cfg_overrides: dict) -> tuple[TrainConfig, WarmStart]:
    """The training config and starting point of ``--init-from NAME|PATH``.

    The weights (tdBN statistics included) are loaded exactly; the epoch, step, learning
    curve and CPU time are carried over from the checkpoint's metadata (or the zoo entry's
    recipe); the optimiser restarts, and the run records that. The recipe comes from the
    source unless ``cfg_overrides`` changes it; the architecture must match; a change of dataset
    is recorded in the provenance (and said on stderr).
    """
    p = Path(name_or_path)
    recipe = {}
    if zoo.looks_like_path(name_or_path):   # the zoo's one rule for names and paths
        if not p.is_file():
            raise CheckpointError(f"--init-from: no file at {p}")
        path = p
    else:
        try:
            w = zoo.get_weights(str(name_or_path))
            path = zoo.fetch(w)
        except zoo.ZooError as e:
            raise CheckpointError(f"--init-from: {e}") from e
        if w.source_format != "fsvae-sj":
            raise CheckpointError(f"--init-from {name_or_path}: the authors' weights carry no training state of "
                             f"ours; convert them (python -m fsvae_sj.convert) and pass the file")
        recipe = dict(w.recipe)
    model_cfg, state, extra = read_checkpoint(path)
    tc = extra.get("train_config") or recipe.get("train_config")
    if not tc:
        raise CheckpointError(f"--init-from {name_or_path}: no training config in its metadata")
    cfg = TrainConfig.from_dict({**TrainConfig().to_dict(), **tc, **cfg_overrides})
    want = cfg.model_config().to_dict()
    diff = [k for k in sorted(set(want) | set(model_cfg)) if want.get(k) != model_cfg.get(k)]
    if diff:
        raise CheckpointError(f"--init-from {name_or_path}: its architecture differs from the recipe's in "
                         f"{', '.join(f'{k} ({model_cfg.get(k)!r} vs {want.get(k)!r})' for k in diff)}")
    epoch = int(extra.get("epoch", recipe.get("epochs completed", 0)))
    step = int(extra.get("step", recipe.get("steps into the current epoch", 0)))
    history = extra.get("history") or list(recipe.get("per-epoch log") or [])
    cpu_seconds = float(extra.get("cpu_seconds", 3600 * float(recipe.get("cpu_hours", 0) or 0)))
    n_batches = batches_per_epoch(len(make_dataset(cfg.dataset, "train", cfg.data_root, cfg.download,
                                                   cfg.limit_train)), cfg.batch_size)
    if step >= n_batches:   # weights saved by an epoch-end evaluation: the next epoch starts
        epoch, step = epoch + 1, 0
    provenance = list(extra.get("provenance") or recipe.get("provenance") or [])
    sha = sha256_file(path)
    provenance.append({"event": "warm start, optimiser restarted", "from": str(name_or_path), "sha256": sha,
                       "weights": extra.get("weights", "raw"), "epoch": epoch, "step": step,
                       "cpu_hours": round(cpu_seconds / 3600, 4)})
    source_data = canonical(tc.get("dataset", TrainConfig.dataset))
    if source_data != canonical(cfg.dataset):   # fine-tuning elsewhere: the carried curve is the source's
        provenance[-1]["dataset"] = f"{source_data} -> {canonical(cfg.dataset)}"
        print(f"note: --init-from {name_or_path} was trained on {source_data}; this run trains on "
              f"{canonical(cfg.dataset)} (recorded in its provenance; epochs and learning curve carried over are "
              f"{source_data}'s)", file=sys.stderr)
    rs = RunState(epoch=epoch, step=step, history=history, evals=list(extra.get("evals") or []),
                  elapsed=float(extra.get("elapsed", 0.0)), cpu_seconds=cpu_seconds,
                  first_step=epoch * n_batches + step, provenance=provenance)
    return cfg, WarmStart(str(path), sha, state, rs)


@contextlib.contextmanager
def _stop_on_signals():
    """While training, SIGTERM and a first Ctrl-C (SIGINT) make the loop finish its step, save and
    return; a second Ctrl-C raises KeyboardInterrupt at once (main thread only). The previous
    handlers are restored afterwards. (The handler only records: printing from it could land
    inside a progress bar's own write to stderr.)"""
    got = []

    def stop(signum, frame):
        got.append(signal.Signals(signum).name)
        if signum == signal.SIGINT:   # the next one aborts
            signal.signal(signal.SIGINT, signal.default_int_handler)
    main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)} if main else {}
    try:
        yield lambda: got[0] if got else None
    finally:
        for sig, handler in previous.items():   # None: installed outside Python, cannot be put back from here
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _check_replicas(model, run: Path, rank: int, world: int) -> None:
    """All ranks must end with the same parameters; rank 0 records every rank's digest."""
    import hashlib
    flat = torch.cat([p.detach().reshape(-1).cpu() for p in model.parameters()])
    digest = hashlib.sha256(flat.numpy().tobytes()).hexdigest()
    digests = [None] * world
    dist.all_gather_object(digests, digest)
    if rank == 0:
        digest_json = json.dumps({"world_size": world, "param_sha256": digests}) + "\n"
        atomic_write_bytes(run / "replicas.json", digest_json.encode())
    if len(set(digests)) != 1:
        raise RuntimeError(f"replicas diverged: {digests}")


def branch_run(source: Path, run: Path, asked: dict) -> None:
    """Start run folder ``run`` from run folder ``source``'s whole state (weights, optimiser moments,
    EMA, tdBN statistics, data order and RNG), with the learning-rate schedule changed as ``asked``
    (only :data:`BRANCH_CHANGES` and :data:`RESUMABLE_CHANGES` may differ): recipes compared from one
    saved state, without the optimiser restart of ``--init-from``. The branch's schedule (and any
    warm-up) starts at the branch point; its best.safetensors is chosen among its own evaluations.
    The branch is recorded in the run's provenance. Writes ``run/state.pt`` and ``run/train_config.json``;
    the caller then resumes ``run``. Raises ConfigError when ``run`` already holds a state or a refused
    field changes, CheckpointError when ``source`` has no readable state."""
    source, run = Path(source), Path(run)
    if (run / STATE).exists():
        raise ConfigError(f"--branch-from: {run / STATE} exists; resume {run} without --branch-from, or "
                          f"branch into a new --out")
    if not (source / STATE).is_file():
        raise CheckpointError(f"--branch-from {source}: no {STATE} there (a run folder of fsvae_sj.train)")
    st = read_state(source / STATE)
    saved = st["train_config"]
    wanted = {**saved, **asked}
    refused = [k for k in config_differences(saved, wanted) if k not in RESUMABLE_CHANGES + BRANCH_CHANGES]
    if refused:
        raise ConfigError(f"--branch-from {source}: a branch may change only "
                          f"{', '.join(BRANCH_CHANGES + RESUMABLE_CHANGES)}, not "
                          + ", ".join(f"{k} ({saved.get(k)!r} -> {wanted.get(k)!r})" for k in refused))
    if "run_state" not in st:
        raise CheckpointError(f"--branch-from {source}: its {STATE} is of an older format; resume {source} "
                              f"for one step first")
    cfg = TrainConfig.from_dict({**TrainConfig().to_dict(), **wanted})
    rs = RunState(**json.loads(st["run_state"]))
    world = len(st["gen"]) if isinstance(st["gen"], list) else 1
    n = len(make_dataset(cfg.dataset, "train", cfg.data_root, cfg.download, cfg.limit_train)) // world
    rs.first_step = rs.epoch * batches_per_epoch(n, cfg.batch_size) + rs.step
    rs.best_afd = rs.best_val_afd = None
    rs.provenance.append({"event": "branched, optimiser kept", "from": str(source), "epoch": rs.epoch,
                          "step": rs.step, "cpu_hours": round(rs.cpu_seconds / 3600, 4),
                          "changed": {k: wanted[k] for k in config_differences(saved, wanted)}})
    st = {**st, "train_config": cfg.to_dict(), "run_state": json.dumps(rs.meta())}
    run.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(st, buf)
    atomic_write_bytes(run / STATE, buf.getvalue())
    cfg.save(run / "train_config.json")


def resolve_config(run: Path, asked: dict, init_from: str | None = None) -> tuple[TrainConfig, WarmStart | None]:
    """The TrainConfig of run folder ``run`` given the settings ``asked`` for (recipe, config
    file and flags, merged by the caller): on resume the saved config, changed only where a
    resume may change it; with ``init_from`` (a zoo name or .safetensors) the source's; else the
    defaults. Raises ValueError (ConfigError among them) naming the refused field."""
    state = Path(run) / STATE
    init = None
    if state.is_file():
        saved = read_state(state)["train_config"]
        wanted = {**saved, **asked}
        changed = [k for k in config_differences(saved, wanted) if k not in RESUMABLE_CHANGES]
        # A weight average may join a run that had none: it changes nothing the run learns.
        if "ema_decay" in changed and saved.get("ema_decay") is None:
            changed.remove("ema_decay")
        if changed:
            raise CheckpointError(f"{state} was written with another training config: "
                             + ", ".join(f"{k} ({saved.get(k)!r} -> {wanted.get(k)!r})" for k in changed)
                             + f". A resume may change only {', '.join(RESUMABLE_CHANGES)}; use a new --out "
                               f"(with --init-from {Path(run) / 'model.safetensors'} to keep the weights)")
        if init_from:
            print(f"note: {state} exists; resuming it and ignoring --init-from", file=sys.stderr)
        if (saved.get("lr_schedule", "constant") == "cosine" and not saved.get("lr_decay_steps")
                and saved.get("epochs") != wanted.get("epochs")):
            raise ConfigError("--epochs sets the end of this run's cosine learning-rate schedule; "
                             "it cannot change on resume")
        cfg = TrainConfig.from_dict({**TrainConfig().to_dict(), **wanted})
    elif init_from:
        cfg, init = warm_start(init_from, asked)
    else:
        cfg = TrainConfig.from_dict({**TrainConfig().to_dict(), **asked})
    if cfg.model not in ARCHITECTURES:
        raise ConfigError(f"--model must be one of {sorted(ARCHITECTURES)}, got {cfg.model!r}")
    return dataclasses.replace(cfg, dataset=canonical(cfg.dataset)), init
