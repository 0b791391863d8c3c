"""Train FSVAE (or the ANN VAE baseline): resumable, time-boxed, single or multi-process.

    python -m fsvae_sj.train --dataset fashion-mnist --out runs/fmnist
    python -m fsvae_sj.train --out runs/fmnist            # resumes where it stopped
    torchrun --nproc_per_node 2 -m fsvae_sj.train --dataset mnist --out runs/mnist

The run directory holds ``state.pt`` (model, optimiser, epoch, step, every RNG;
written atomically, loaded with ``weights_only=True``), ``model.safetensors``
(the weights in our format), ``log.csv`` (one row per epoch) and image grids.
Resuming from ``state.pt`` gives the same weights as a run that never stopped.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from .ann import ANNVAE
from .config import ANNVAEConfig, FSVAEConfig, _Serialisable
from .data import IMAGE_SHAPE, canonical, make_dataset
from .io import atomic_write_bytes, save_model
from .losses import fsvae_loss, gaussian_vae_loss
from .model import FSVAE

STATE = "state.pt"


@dataclass(frozen=True)
class TrainConfig(_Serialisable):
    """The paper's recipe by default (T 16, batch 250, AdamW 1e-3 x batch/250, wd 1e-3,
    150 epochs, scheduled sampling 0.1 -> 0.3)."""

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

    def model_config(self):
        c, size = IMAGE_SHAPE[canonical(self.dataset)]
        if self.model == "ann-vae":
            return ANNVAEConfig(in_channels=c, image_size=size)
        if size == 64:
            return FSVAEConfig.large(in_channels=c, n_steps=self.n_steps, surrogate=self.surrogate,
                                     surrogate_a=self.surrogate_a)
        return FSVAEConfig(in_channels=c, image_size=size, n_steps=self.n_steps,
                           surrogate=self.surrogate, surrogate_a=self.surrogate_a)


def scheduled_p(cfg: TrainConfig, epoch: int) -> float:
    if not cfg.scheduled:
        return 0.0
    return cfg.scheduled_start + (cfg.scheduled_end - cfg.scheduled_start) * epoch / cfg.epochs


def epoch_order(n: int, seed: int, epoch: int, rank: int, world: int) -> torch.Tensor:
    """This rank's sample order for an epoch: a permutation fixed by (seed, epoch), sharded."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g)
    per_rank = n // world
    return perm[rank * per_rank:(rank + 1) * per_rank] if world > 1 else perm


def _dist_info() -> tuple[int, int]:
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _batches_of(dataset, idx: torch.Tensor) -> torch.Tensor:
    if hasattr(dataset, "batch"):
        return dataset.batch(idx)
    return torch.stack([dataset[int(i)][0] for i in idx])


def build(cfg: TrainConfig):
    torch.manual_seed(cfg.seed)
    mcfg = cfg.model_config()
    return FSVAE(mcfg) if cfg.model == "fsvae" else ANNVAE(mcfg)


def train_step(model, x, cfg: TrainConfig, epoch: int, gen: torch.Generator, steps_per_epoch: int):
    if cfg.model == "fsvae":
        out = model(x, scheduled_p(cfg, epoch), gen)
        losses = fsvae_loss(x, out.x_recon, out.q_out, out.p_out, cfg.distance, mmd_reduction=cfg.mmd_reduction)
        losses["mean_q"] = out.q_out.detach().mean()
        losses["mean_p"] = out.p_out.detach().mean()
        return losses
    recon, mu, log_var = model(x, gen)
    return gaussian_vae_loss(x, recon, mu, log_var, kld_weight=1.0 / steps_per_epoch)


@torch.no_grad()
def test_recon_mse(model, test_set, batch_size: int = 250, seed: int = 0) -> float:
    """Eval-mode reconstruction MSE over a test set (mean over all pixels)."""
    core = model.module if hasattr(model, "module") else model
    was = core.training
    core.eval()
    g = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    device = next(core.parameters()).device
    for i in range(0, len(test_set), batch_size):
        x = _batches_of(test_set, torch.arange(i, min(i + batch_size, len(test_set)))).to(device)
        total += float(((core.reconstruct(x, generator=g) - x) ** 2).sum())
        count += x.numel()
    core.train(was)
    return total / count


def _agree(flag: bool, world: int, device) -> bool:
    """True on every rank if it is true on any (so that all ranks stop at the same step)."""
    if world == 1:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _save_state(run: Path, model, opt, cfg, epoch, step, gen, history, elapsed, rank: int, world: int):
    """Every rank calls this (its sampling generator is gathered); rank 0 writes."""
    gens = [gen.get_state()]
    if world > 1:
        gens = [None] * world
        dist.all_gather_object(gens, gen.get_state())
    if rank != 0:
        return
    core = model.module if hasattr(model, "module") else model
    state = {"train_config": cfg.to_dict(), "model_config": core.config.to_dict(),
             "model": core.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "step": step,
             "torch_rng": torch.get_rng_state(), "gen": gens, "history": json.dumps(history),
             "elapsed": elapsed}
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(run / STATE, buf.getvalue())
    save_model(core, run / "model.safetensors", extra={"epoch": epoch, "step": step, "train_config": cfg.to_dict()})


def _write_log(run: Path, history: list[dict]) -> None:
    if not history:
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(history[-1].keys()))
    w.writeheader()
    w.writerows(history)
    atomic_write_bytes(run / "log.csv", buf.getvalue().encode())


def _save_grids(run: Path, model, x: torch.Tensor, epoch: int) -> None:
    from torchvision.utils import save_image
    core = model.module if hasattr(model, "module") else model
    was = core.training
    core.eval()
    with torch.no_grad():
        samples = core.sample(64, seed=0)
        recon = core.reconstruct(x[:32], seed=0)
    core.train(was)
    save_image((samples + 1) / 2, run / f"sample_epoch{epoch:03d}.png", nrow=8)
    save_image((torch.cat([x[:32], recon]) + 1) / 2, run / f"recon_epoch{epoch:03d}.png", nrow=8)


def run_training(cfg: TrainConfig, run: Path, time_budget: float | None = None,
                 device: str = "cpu", progress: bool = True, max_steps: int | None = None) -> dict:
    """Train (or resume) in ``run``; returns a summary. Stops cleanly at a step boundary
    when ``time_budget`` seconds are used or ``max_steps`` is reached."""
    rank, world = _dist_info()
    start = time.time()
    run.mkdir(parents=True, exist_ok=True)
    model = build(cfg).to(device)
    lr = cfg.lr if cfg.lr is not None else 1e-3 * cfg.batch_size * world / 250
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed + 1 + rank)
    epoch, step, history, elapsed0 = 0, 0, [], 0.0
    if (run / STATE).is_file():
        st = torch.load(run / STATE, map_location="cpu", weights_only=True)
        if st["train_config"] != cfg.to_dict():
            raise SystemExit(f"{run / STATE} was written with another training config; "
                             f"use a new --out or the same settings")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        epoch, step = st["epoch"], st["step"]
        torch.set_rng_state(st["torch_rng"])
        gens = st["gen"]  # one state per rank (a single tensor in the first format)
        gen.set_state(gens[rank] if isinstance(gens, list) else gens)
        history, elapsed0 = json.loads(st["history"]), st["elapsed"]
        if rank == 0:
            print(f"resuming {run} at epoch {epoch}, step {step}")
    elif rank == 0:
        cfg.save(run / "train_config.json")
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model

    train_set = make_dataset(cfg.dataset, "train", cfg.data_root, cfg.download, cfg.limit_train)
    test_set = make_dataset(cfg.dataset, "test", cfg.data_root, cfg.download, cfg.limit_test)
    total_steps = 0
    status = "finished"
    stop_requested = _stop_on_sigterm()
    while epoch < cfg.epochs:
        order = epoch_order(len(train_set), cfg.seed, epoch, rank, world)
        n_batches = math.ceil(len(order) / cfg.batch_size)
        meters = {}
        bar = None
        if progress and rank == 0:
            from tqdm import tqdm
            bar = tqdm(total=n_batches, initial=step, desc=f"epoch {epoch}", dynamic_ncols=True)
        net.train()
        t_step = 0.0
        while step < n_batches:
            if max_steps is not None and total_steps >= max_steps:
                status = "max_steps"
            elif time_budget is not None and time.time() - start + t_step > time_budget:
                status = "time_budget"
            elif stop_requested():
                status = "stopped by SIGTERM"
            if _agree(status != "finished", world, device):
                status = "stopped by another rank" if status == "finished" else status
                break
            t0 = time.time()
            x = _batches_of(train_set, order[step * cfg.batch_size:(step + 1) * cfg.batch_size]).to(device)
            losses = train_step(net, x, cfg, epoch, gen, n_batches)
            if not torch.isfinite(losses["loss"]):
                if bar:
                    bar.close()
                raise FloatingPointError(f"loss is {float(losses['loss'].detach())} at epoch {epoch} step {step}; "
                                         f"stopped; the last good checkpoint in {run} is kept")
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            opt.step()
            step += 1
            total_steps += 1
            for k, v in losses.items():
                meters[k] = meters.get(k, 0.0) + float(v.detach())
            meters["n"] = meters.get("n", 0) + 1
            t_step = time.time() - t0
            if bar:
                bar.set_postfix({k: f"{float(v.detach()):.4f}" for k, v in losses.items()})
                bar.update(1)
            if cfg.save_every and step % cfg.save_every == 0 and step < n_batches:
                _save_state(run, net, opt, cfg, epoch, step, gen, history, elapsed0 + time.time() - start,
                            rank, world)
        if bar:
            bar.close()
        if status != "finished":
            break
        if rank == 0:
            n = max(meters.pop("n", 1), 1)
            row = {"epoch": epoch, "scheduled_p": round(scheduled_p(cfg, epoch), 4),
                   **{f"train_{k}": round(v / n, 6) for k, v in meters.items()},
                   "test_recon_mse": round(test_recon_mse(net, test_set), 6),
                   "cpu_hours": round((elapsed0 + time.time() - start) * torch.get_num_threads() / 3600, 4),
                   "wall_seconds": round(elapsed0 + time.time() - start, 1)}
            history.append(row)
            print(json.dumps(row))
            _save_grids(run, net, _batches_of(test_set, torch.arange(min(32, len(test_set)))), epoch)
        epoch, step = epoch + 1, 0
        _save_state(run, net, opt, cfg, epoch, step, gen, history, elapsed0 + time.time() - start, rank, world)
        if rank == 0:
            _write_log(run, history)
    _save_state(run, net, opt, cfg, epoch, step, gen, history, elapsed0 + time.time() - start, rank, world)
    if rank == 0:
        _write_log(run, history)
        print(f"{status}: epoch {epoch}, step {step}; state in {run / STATE}")
    if world > 1:
        _check_replicas(model, run, rank, world)
    return {"status": status, "epoch": epoch, "step": step, "steps_run": total_steps}


def _stop_on_sigterm():
    """After SIGTERM the loop finishes its step, saves and returns (the main thread only)."""
    import signal
    import threading
    flag = []
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: flag.append(signum))
    return lambda: bool(flag)


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
        description="Train FSVAE or the ANN VAE baseline with the paper's recipe. Re-running with the same "
                    "--out resumes exactly (model, optimiser, epoch, step, data order, RNG). Under torchrun "
                    "it trains with DistributedDataParallel (Gloo on CPU, NCCL on GPU).")
    d = TrainConfig()
    p.add_argument("--out", required=True, help="run directory (state.pt, model.safetensors, log.csv, grids)")
    p.add_argument("--config", help="a TrainConfig JSON/YAML; command-line flags override it")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(d, f.name)
        if isinstance(default, bool):
            p.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=None,
                           metavar="BOOL", help=f"(default {default})")
        else:
            typ = {"lr": float, "surrogate_a": float, "limit_train": int, "limit_test": int,
                   "data_root": str}.get(f.name, type(default))
            p.add_argument(flag, type=typ, default=None, help=f"(default {default})")
    p.add_argument("--time-budget", type=float, help="seconds; stop at a step boundary and save")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps in this invocation")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    base = TrainConfig.load(args.config).to_dict() if args.config else TrainConfig().to_dict()
    state = Path(args.out) / STATE
    if state.is_file() and not args.config and all(
            getattr(args, f.name) is None for f in dataclasses.fields(TrainConfig)):
        base = torch.load(state, map_location="cpu", weights_only=True)["train_config"]
    for f in dataclasses.fields(TrainConfig):
        v = getattr(args, f.name)
        if v is not None:
            base[f.name] = v
    cfg = TrainConfig.from_dict(base)
    canonical(cfg.dataset)
    if cfg.model not in ("fsvae", "ann-vae"):
        raise SystemExit(f"--model must be fsvae or ann-vae, got {cfg.model!r}")
    try:
        run_training(cfg, Path(args.out), args.time_budget, args.device, progress=not args.no_progress,
                     max_steps=args.max_steps)
    except FloatingPointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    from ._malloc import run_cli
    run_cli(main)
