"""Train FSVAE (or the ANN VAE baseline): resumable, time-boxed, single or multi-process.

    python -m fsvae_sj.train --dataset fashion-mnist --out runs/fmnist
    python -m fsvae_sj.train --out runs/fmnist            # resumes where it stopped
    python -m fsvae_sj.train --out runs/f2 --init-from fashion-mnist   # continue a zoo entry
    torchrun --nproc_per_node 2 -m fsvae_sj.train --dataset mnist --out runs/mnist

The run directory holds ``state.pt`` (model, optimiser, EMA, epoch, step, every RNG;
written atomically, loaded with ``weights_only=True``), ``model.safetensors`` (the
raw weights in our format), ``ema.safetensors`` (their exponential moving average,
when ``--ema-decay`` is set), ``best.safetensors`` (whichever of the two had the best
AE Frechet distance at any evaluation so far), ``log.csv`` (one row per epoch),
``evals.csv`` (every evaluation) and image grids. Resuming from ``state.pt`` gives
the same weights as a run that never stopped.
"""
from __future__ import annotations

import argparse
import contextlib
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

from .ann import ANNVAE
from .config import ANNVAEConfig, FSVAEConfig, _Serialisable
from .data import IMAGE_SHAPE, batch_of, canonical, make_dataset
from .evaluate import afd_score, generate, recon_mse
from .io import atomic_write_bytes, read_checkpoint, save_model
from .losses import fsvae_loss, gaussian_vae_loss
from .model import FSVAE

STATE = "state.pt"
# Exit statuses of the CLI: finished; stopped early (SIGTERM, --time-budget, --max-steps; run
# again to resume, as EX_TEMPFAIL says); a non-finite loss or weights (last good state kept).
EXIT_FINISHED, EXIT_STOPPED, EXIT_NONFINITE = 0, 75, 3

# Settings a resume may change: they decide how long to train and what is measured or
# saved, never what the finished steps learned. Any other difference is refused. (A new
# --epochs also stretches the scheduled-sampling ramp, p = start + (end - start) * epoch /
# epochs, for the epochs still to come.)
RESUMABLE_CHANGES = ("epochs", "save_every", "eval_every", "eval_samples", "limit_test")

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
    ``eval_every``: also evaluate every N optimiser steps (0: at epoch ends only);
    ``eval_samples``: samples for the AE Frechet distance of each evaluation (0: none).
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
    eval_every: int = 0
    eval_samples: int = 1000

    def __post_init__(self):
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.eval_samples == 1 or self.eval_samples < 0:
            raise ValueError(f"eval_samples must be 0 (no AE Frechet) or >= 2, got {self.eval_samples}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")

    def model_config(self):
        c, size = IMAGE_SHAPE[canonical(self.dataset)]
        if self.model == "ann-vae":
            return ANNVAEConfig(in_channels=c, image_size=size)
        if size == 64:
            return FSVAEConfig.large(in_channels=c, n_steps=self.n_steps, surrogate=self.surrogate,
                                     surrogate_a=self.surrogate_a)
        return FSVAEConfig(in_channels=c, image_size=size, n_steps=self.n_steps,
                           surrogate=self.surrogate, surrogate_a=self.surrogate_a)

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
    """The learning rate of optimiser step ``global_step`` (counted over the whole run)."""
    lr = cfg.base_lr(world)
    if cfg.lr_decay_steps:
        total_steps = first_step + cfg.lr_decay_steps
    if cfg.lr_schedule == "constant" or total_steps <= first_step:
        return lr
    t = min(max((global_step - first_step) / (total_steps - first_step), 0.0), 1.0)
    lo = lr * cfg.lr_min_ratio
    return lo + (lr - lo) * 0.5 * (1 + math.cos(math.pi * t))


def batches_per_epoch(n: int, batch_size: int) -> int:
    """Batches of one rank's ``n`` images; a last batch of one image is left out, since tdBN
    (and BatchNorm) in training mode cannot normalise a single value per channel."""
    if batch_size < 2:
        raise ValueError(f"batch size must be >= 2 (tdBN in training mode needs two images), got {batch_size}")
    if n < 2:
        raise ValueError(f"{n} training image(s) per process; at least 2 are needed")
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
    torch.manual_seed(cfg.seed)
    mcfg = cfg.model_config()
    return FSVAE(mcfg) if cfg.model == "fsvae" else ANNVAE(mcfg)


def make_ema(model, decay: float):
    """EMA of the weights and of the tdBN / BatchNorm running statistics."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def train_step(model, x, cfg: TrainConfig, epoch: int, gen: torch.Generator, steps_per_epoch: int):
    if cfg.model == "fsvae":
        out = model(x, scheduled_p(cfg, epoch), gen)
        losses = fsvae_loss(x, out.x_recon, out.q_out, out.p_out, cfg.distance, mmd_reduction=cfg.mmd_reduction)
        losses["mean_q"] = out.q_out.detach().mean()
        losses["mean_p"] = out.p_out.detach().mean()
        return losses
    recon, mu, log_var = model(x, gen)
    return gaussian_vae_loss(x, recon, mu, log_var, kld_weight=1.0 / steps_per_epoch)


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
    best_afd: float | None = None
    meters: dict = dataclasses.field(default_factory=dict)     # sums of this epoch's losses so far

    def meta(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "history": self.history, "evals": self.evals,
                "elapsed": self.elapsed, "cpu_seconds": self.cpu_seconds, "first_step": self.first_step,
                "provenance": self.provenance, "best_afd": self.best_afd, "meters": self.meters}


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
    core = model.module if hasattr(model, "module") else model
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


def _load_state(run: Path, cfg: TrainConfig, model, opt, ema, gen, rank: int, world: int) -> RunState:
    st = torch.load(run / STATE, map_location="cpu", weights_only=True)
    saved_world = len(st["gen"]) if isinstance(st["gen"], list) else 1
    if saved_world != world:
        raise ValueError(f"{run / STATE} was written by {saved_world} process(es), this is {world}: the batches, "
                         f"data shards and learning rate depend on it; resume with {saved_world} or use "
                         f"--init-from in a new run")
    model.load_state_dict(st["model"])
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
        if meta.get("afd_samples") == cfg.eval_samples and meta.get("afd_at_save") is not None:
            rs.best_afd = min(x for x in (rs.best_afd, meta["afd_at_save"]) if x is not None)
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


def _save_grids(run: Path, model, x: torch.Tensor, epoch: int) -> None:
    from torchvision.utils import save_image
    x = x[:32].to(next(model.parameters()).device)
    with torch.no_grad():
        samples = model.sample(64, seed=0).cpu()
        recon = model.reconstruct(x, seed=0).cpu()
    x = x.cpu()
    save_image((samples + 1) / 2, run / f"sample_epoch{epoch:03d}.png", nrow=8)
    save_image((torch.cat([x[:32], recon]) + 1) / 2, run / f"recon_epoch{epoch:03d}.png", nrow=8)


def _evaluate(run: Path, core, ema, cfg: TrainConfig, test_set, rs: RunState, global_step: int) -> dict:
    """Recon MSE on the test subset and AE Frechet of ``eval_samples`` samples (seed 0), for the
    raw weights and their EMA; keeps ``best.safetensors`` (lowest AE Frechet so far)."""
    row = {"epoch": rs.epoch, "step": rs.step, "global_step": global_step,
           "cpu_hours": round(rs.cpu_seconds / 3600, 4), "wall_seconds": round(rs.elapsed, 1)}
    candidates = [("raw", core)] + ([("ema", ema.module)] if ema is not None else [])
    was = core.training
    best = None
    for name, m in candidates:
        m.eval()
        prefix = "" if name == "raw" else "ema_"
        row[prefix + "test_recon_mse"] = round(recon_mse(m, test_set), 6)
        if cfg.eval_samples > 0 and canonical(cfg.dataset) in ("mnist", "fashion-mnist"):
            afd = afd_score(generate(m, cfg.eval_samples, seed=0), canonical(cfg.dataset))
            row[prefix + "afd"] = round(afd, 3)
            if best is None or afd < best[0]:
                best = (afd, name, m)
    core.train(was)
    rs.evals.append(row)
    if best is not None and (rs.best_afd is None or best[0] < rs.best_afd):
        rs.best_afd = best[0]
        row["best"] = best[1]
        _check_finite(best[2], f"the {best[1]} weights")
        save_model(best[2], run / "best.safetensors",
                   extra={"train_config": cfg.to_dict(), **rs.meta(), "weights": best[1],
                          "afd_at_save": round(best[0], 3), "afd_samples": cfg.eval_samples})
    _write_csv(run / "evals.csv", rs.evals)
    print(json.dumps(row), flush=True)
    return row


def run_training(cfg: TrainConfig, run: Path, time_budget: float | None = None,
                 device: str = "cpu", progress: bool = True, max_steps: int | None = None,
                 init: WarmStart | None = None) -> dict:
    """Train (or resume) in ``run``; returns a summary. Stops cleanly at a step boundary
    when ``time_budget`` seconds are used or ``max_steps`` is reached. ``init`` starts a new
    run from another run's weights (see :func:`warm_start`)."""
    rank, world, device = _dist_info(device)
    # data first: a missing dataset must not leave an empty run folder behind
    train_set = make_dataset(cfg.dataset, "train", cfg.data_root, cfg.download, cfg.limit_train)
    test_set = make_dataset(cfg.dataset, "test", cfg.data_root, cfg.download, cfg.limit_test)
    n_batches = batches_per_epoch(len(train_set) // world, cfg.batch_size)
    run.mkdir(parents=True, exist_ok=True)
    model = build(cfg).to(device)
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
    net = model
    if world > 1:
        ids = [torch.device(device).index] if device.startswith("cuda") else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    total = cfg.epochs * n_batches
    clock = _Clock(rs)
    with _stop_on_sigterm() as stop_requested:
        status, steps_run = _train_epochs(cfg, run, net, model, opt, ema, gen, rs, clock, train_set, test_set,
                                          n_batches, total, rank, world, device, progress, time_budget,
                                          max_steps, stop_requested)
    clock.update()
    _save_state(run, net, opt, ema, cfg, rs, gen, rank, world)
    if rank == 0:
        _write_csv(run / "log.csv", rs.history)
        print(f"{status}: epoch {rs.epoch}, step {rs.step}; state in {run / STATE}")
    if world > 1:
        _check_replicas(model, run, rank, world)
    return {"status": status, "epoch": rs.epoch, "step": rs.step, "steps_run": steps_run}


def _train_epochs(cfg, run, net, model, opt, ema, gen, rs, clock, train_set, test_set, n_batches, total,
                  rank, world, device, progress, time_budget, max_steps, stop_requested) -> tuple[str, int]:
    """The loop over epochs and steps; returns (why it stopped, steps run)."""
    start = time.time()
    steps_run = 0
    status = "finished"
    while rs.epoch < cfg.epochs:
        order = epoch_order(len(train_set), cfg.seed, rs.epoch, rank, world)
        meters = rs.meters
        bar = None
        if progress and rank == 0:
            from tqdm import tqdm
            bar = tqdm(total=n_batches, initial=rs.step, desc=f"epoch {rs.epoch}", dynamic_ncols=True)
        net.train()
        t_step = 0.0
        while rs.step < n_batches:
            if max_steps is not None and steps_run >= max_steps:
                status = "max_steps"
            elif time_budget is not None and time.time() - start + t_step > time_budget:
                status = "time_budget"
            elif stop_requested():
                status = "stopped by SIGTERM"
            if _agree(status != "finished", world, device):
                status = "stopped by another rank" if status == "finished" else status
                break
            t0 = time.time()
            gstep = rs.epoch * n_batches + rs.step
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, gstep, rs.first_step, total, world)
            x = batch_of(train_set, order[rs.step * cfg.batch_size:(rs.step + 1) * cfg.batch_size]).to(device)
            losses = train_step(net, x, cfg, rs.epoch, gen, n_batches)
            if not torch.isfinite(losses["loss"]):
                if bar:
                    bar.close()
                raise FloatingPointError(f"loss is {float(losses['loss'].detach())} at epoch {rs.epoch} "
                                         f"step {rs.step}; stopped; the last good checkpoint in {run} is kept")
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            rs.step += 1
            steps_run += 1
            for k, v in losses.items():
                meters[k] = meters.get(k, 0.0) + float(v.detach())
            meters["n"] = meters.get("n", 0) + 1
            t_step = time.time() - t0
            if bar:
                bar.set_postfix({k: f"{float(v.detach()):.4f}" for k, v in losses.items()})
                bar.update(1)
            mid_epoch = rs.step < n_batches
            if mid_epoch and cfg.eval_every and (gstep + 1) % cfg.eval_every == 0 and rank == 0:
                clock.update()
                _evaluate(run, model, ema, cfg, test_set, rs, gstep + 1)
            if mid_epoch and cfg.save_every and rs.step % cfg.save_every == 0:
                clock.update()
                _save_state(run, net, opt, ema, cfg, rs, gen, rank, world)
        if bar:
            bar.close()
        if status != "finished":
            break
        if rank == 0:
            clock.update()
            n = max(meters.get("n", 1), 1)
            ev = _evaluate(run, model, ema, cfg, test_set, rs, (rs.epoch + 1) * n_batches)
            row = {"epoch": rs.epoch, "scheduled_p": round(scheduled_p(cfg, rs.epoch), 4),
                   **{f"train_{k}": round(v / n, 6) for k, v in meters.items() if k != "n"},
                   "train_steps_averaged": n,
                   **{k: v for k, v in ev.items() if k not in ("epoch", "step", "best")}}
            rs.history.append(row)
            was = model.training
            shown = ema.module if ema is not None else model  # the EMA is what gets published
            shown.eval()
            _save_grids(run, shown, batch_of(test_set, torch.arange(min(32, len(test_set)))), rs.epoch)
            model.train(was)
        rs.epoch, rs.step, rs.meters = rs.epoch + 1, 0, {}
        clock.update()
        _save_state(run, net, opt, ema, cfg, rs, gen, rank, world)
        if rank == 0:
            _write_csv(run / "log.csv", rs.history)
    return status, steps_run


@dataclass
class WarmStart:
    """A new run's starting point taken from saved weights (the optimiser restarts)."""

    source: str
    sha256: str
    state: dict
    run_state: RunState

    def apply(self, model) -> RunState:
        from .io import load_state_strict
        load_state_strict(model, self.state, source=self.source)
        return self.run_state


def warm_start(name_or_path: str, cfg_overrides: dict) -> tuple[TrainConfig, WarmStart]:
    """The training config and starting point of ``--init-from NAME|PATH``.

    The weights (tdBN statistics included) are loaded exactly; the epoch, step, learning
    curve and CPU time are carried over from the checkpoint's metadata (or the zoo entry's
    recipe); the optimiser restarts, and the run records that. The recipe comes from the
    source unless ``cfg_overrides`` changes it; the architecture must match.
    """
    from .io import sha256_file
    from .zoo import fetch, get_weights
    p = Path(name_or_path)
    recipe = {}
    if p.suffix == ".safetensors" or p.is_file():
        if not p.is_file():
            raise ValueError(f"--init-from: no file at {p}")
        path = p
    else:
        from .zoo import ZooError
        try:
            w = get_weights(str(name_or_path))
            path = fetch(w)
        except ZooError as e:
            raise ValueError(f"--init-from: {e}") from e
        if w.source_format != "fsvae-sj":
            raise ValueError(f"--init-from {name_or_path}: the authors' weights carry no training state of "
                             f"ours; convert them (python -m fsvae_sj.convert) and pass the file")
        recipe = dict(w.recipe)
    model_cfg, state, extra = read_checkpoint(path)
    tc = extra.get("train_config") or recipe.get("train_config")
    if not tc:
        raise ValueError(f"--init-from {name_or_path}: no training config in its metadata")
    cfg = TrainConfig.from_dict({**TrainConfig().to_dict(), **tc, **cfg_overrides})
    want = cfg.model_config().to_dict()
    diff = [k for k in sorted(set(want) | set(model_cfg)) if want.get(k) != model_cfg.get(k)]
    if diff:
        raise ValueError(f"--init-from {name_or_path}: its architecture differs from the recipe's in "
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
                       "weights": extra.get("weights", "raw"), "epoch": epoch, "step": step})
    rs = RunState(epoch=epoch, step=step, history=history, evals=list(extra.get("evals") or []),
                  elapsed=float(extra.get("elapsed", 0.0)), cpu_seconds=cpu_seconds,
                  first_step=epoch * n_batches + step, provenance=provenance)
    return cfg, WarmStart(str(path), sha, state, rs)


@contextlib.contextmanager
def _stop_on_sigterm():
    """While training, SIGTERM makes the loop finish its step, save and return (main thread
    only); the previous handler is restored afterwards."""
    flag = []
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: flag.append(signum)) if main else None
    try:
        yield lambda: bool(flag)
    finally:
        if main:   # None: a handler installed outside Python, which cannot be put back from here
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _check_replicas(model, run: Path, rank: int, world: int) -> None:
    """All ranks must end with the same parameters; rank 0 records every rank's digest."""
    import hashlib
    flat = torch.cat([p.detach().reshape(-1).cpu() for p in model.parameters()])
    digest = hashlib.sha256(flat.numpy().tobytes()).hexdigest()
    digests = [None] * world
    dist.all_gather_object(digests, digest)
    if rank == 0:
        (run / "replicas.json").write_text(json.dumps({"world_size": world, "param_sha256": digests}) + "\n")
    if len(set(digests)) != 1:
        raise RuntimeError(f"replicas diverged: {digests}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m fsvae_sj.train",
        description="Train FSVAE or the ANN VAE baseline with the paper's recipe (or --recipe zoo-short). "
                    "Re-running with the same --out resumes exactly (model, optimiser, EMA, epoch, step, data "
                    "order, RNG); a resume may change only " + ", ".join(RESUMABLE_CHANGES) + ". "
                    "--init-from continues from a zoo entry or a .safetensors when the run state is gone. "
                    "Under torchrun it trains with DistributedDataParallel (Gloo on CPU, NCCL on GPU). "
                    "Exit status: 0 finished, 75 stopped early and resumable, 3 non-finite loss or weights "
                    "(the last good state is kept), 1 a refused setting or missing data, 2 unknown flags.")
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
            p.add_argument(flag, type=typ, default=None, help=f"(default {default})")
    p.add_argument("--time-budget", type=float, help="seconds; stop at a step boundary and save (exit status 75)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps in this invocation "
                                                 "(exit status 75; 0 when the run finishes)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def _config_file(path: str | None) -> dict:
    """The settings a --config file states (only those: the rest keep their other sources)."""
    if not path:
        return {}
    full = TrainConfig.load(path).to_dict()   # validates: unknown fields and bad values are refused
    raw = Path(path).read_text()
    import yaml   # YAML is a superset of JSON: one parser for both
    stated = yaml.safe_load(raw) or {}
    return {k: full[k] for k in stated}


def resolve_config(args) -> tuple[TrainConfig, WarmStart | None]:
    """The run's TrainConfig from (lowest first) defaults, --recipe, --config, flags; on resume the
    saved config, changed only where a resume may change it; with --init-from, the source's."""
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if getattr(args, f.name) is not None}
    asked = {**(RECIPES[args.recipe] if args.recipe else {}), **_config_file(args.config), **flags}
    state = Path(args.out) / STATE
    init = None
    if state.is_file():
        saved = torch.load(state, map_location="cpu", weights_only=True)["train_config"]
        wanted = {**saved, **asked}
        changed = [k for k in config_differences(saved, wanted) if k not in RESUMABLE_CHANGES]
        # A weight average may join a run that had none: it changes nothing the run learns.
        if "ema_decay" in changed and saved.get("ema_decay") is None:
            changed.remove("ema_decay")
        if changed:
            raise ValueError(f"{state} was written with another training config: "
                             + ", ".join(f"{k} ({saved.get(k)!r} -> {wanted.get(k)!r})" for k in changed)
                             + f". A resume may change only {', '.join(RESUMABLE_CHANGES)}; use a new --out "
                               f"(with --init-from {Path(args.out) / 'model.safetensors'} to keep the weights)")
        if args.init_from:
            print(f"note: {state} exists; resuming it and ignoring --init-from", file=sys.stderr)
        if (saved.get("lr_schedule", "constant") == "cosine" and not saved.get("lr_decay_steps")
                and saved.get("epochs") != wanted.get("epochs")):
            raise ValueError("--epochs sets the end of this run's cosine learning-rate schedule; "
                             "it cannot change on resume")
        cfg = TrainConfig.from_dict({**TrainConfig().to_dict(), **wanted})
    elif args.init_from:
        cfg, init = warm_start(args.init_from, asked)
    else:
        cfg = TrainConfig.from_dict({**TrainConfig().to_dict(), **asked})
    if cfg.model not in ("fsvae", "ann-vae"):
        raise ValueError(f"--model must be fsvae or ann-vae, got {cfg.model!r}")
    return dataclasses.replace(cfg, dataset=canonical(cfg.dataset)), init


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {args.device} but no CUDA device is available; use --device cpu")
    try:
        cfg, init = resolve_config(args)
        out = run_training(cfg, Path(args.out), args.time_budget, args.device, progress=not args.no_progress,
                           max_steps=args.max_steps, init=init)
        code = EXIT_FINISHED if out["status"] == "finished" else EXIT_STOPPED
    except FloatingPointError as e:
        print(f"error: {e}", file=sys.stderr)
        code = EXIT_NONFINITE
    except (ValueError, FileNotFoundError) as e:   # ConfigError, CheckpointError, DataNotFound among them
        raise SystemExit(f"error: {e}") from e
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


if __name__ == "__main__":
    from ._malloc import run_cli
    run_cli(main)
