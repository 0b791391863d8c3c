"""The training loop: :func:`run_training` sets a run up (new or resumed), then trains epoch by epoch
(:func:`_train_epoch`: one step is batch, loss, backward, optimiser step, EMA), evaluating, logging
and saving between; it stops cleanly on a signal, a budget or a step count."""
from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import io
import json
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import tblog
from ..calibration import calibrate_decoder
from ..hub import save_model
from ..datasets import batch_of, canonical, make_dataset
from ..files import atomic_write_bytes, remove_stale_temporaries
from ..locks import claim_folder
from ..metrics import afd_scores, generate, recon_mse
from ..models.registry import build_model
from ..spiking.lif import use_fused_kernels
from .config import (TrainConfig, batches_per_epoch, epoch_order, frozen_parts, frozen_statistics, learning_rate,
                     scheduled_p)
from .distributed import Objective, agree, check_replicas, dist_info
from .state import (RunState, STATE, WarmStart, check_finite, hardware_label, load_state, record_hardware,
                    save_state)


def build(cfg: TrainConfig):
    """The run's freshly initialised model (initialisation drawn from ``cfg.seed``)."""
    torch.manual_seed(cfg.seed)
    return build_model(cfg.model_config())


def make_ema(model, decay: float):
    """EMA of the weights and of the tdBN / BatchNorm running statistics."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


class _Clock:
    """Wall and process-CPU time since the run (re)started, added to what earlier sessions used."""

    def __init__(self, rs: RunState):
        self.rs, self.wall0, self.cpu0 = rs, time.time(), time.process_time()
        self.elapsed0, self.cpu_seconds0 = rs.elapsed, rs.cpu_seconds

    def update(self) -> None:
        self.rs.elapsed = self.elapsed0 + time.time() - self.wall0
        self.rs.cpu_seconds = self.cpu_seconds0 + time.process_time() - self.cpu0


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
        check_finite(best[2], f"the {best[1]} weights")
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

    def train_mode(self) -> None:
        """Training mode for what the run's stage trains; the parts it freezes, and the tdBN layers
        whose statistics it keeps, stay in eval mode."""
        self.net.train()
        for part in frozen_parts(self.model, self.cfg.stage) + frozen_statistics(self.model, self.cfg):
            part.eval()

    def save(self) -> None:
        self.clock.update()
        save_state(self.run, self.model, self.opt, self.ema, self.cfg, self.rs, self.gen, self.rank, self.world)


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
    _t0: float = 0.0
    _c0: float = 0.0

    def step_started(self) -> None:
        self._t0, self._c0 = time.time(), time.process_time()

    def step_done(self) -> None:
        """Count the step and its wall and CPU seconds (the budgets' bookkeeping)."""
        self.steps_run += 1
        self.last_step = time.time() - self._t0
        self.last_step_cpu = time.process_time() - self._c0
        self.cpu_used += self.last_step_cpu

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
            s.save()   # still under the handlers: a SIGTERM now is noted, not a kill mid-save
        if s.rank == 0:
            _write_csv(run / "log.csv", s.rs.history)
            s.tb.close()
            print(f"{status}: epoch {s.rs.epoch}, step {s.rs.step}; state in {run / STATE}")
        if s.world > 1:
            check_replicas(s.model, run, s.rank, s.world)
        return {"status": status, "epoch": s.rs.epoch, "step": s.rs.step, "steps_run": limits.steps_run}


def _setup(cfg: TrainConfig, run: Path, device: str, init: WarmStart | None, fused_lif: bool,
           claim: contextlib.ExitStack) -> _Session:
    """Data, model, optimiser, EMA and run state: resumed from ``run/state.pt``, else new. Rank 0
    claims the run folder in ``claim`` (a second process training into it is refused)."""
    rank, world, device = dist_info(device)
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
    for part in frozen_parts(model, cfg.stage):
        part.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.base_lr(world),
                            betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    ema = make_ema(model, cfg.ema_decay) if cfg.ema_decay else None
    gen = torch.Generator().manual_seed(cfg.seed + 1 + rank)
    if (run / STATE).is_file():
        rs = load_state(run, cfg, model, opt, ema, gen, rank, world)
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
    record_hardware(rs, hardware_label(device, world))
    net = Objective(model)
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
    s.train_mode()
    limits.last_step = limits.last_step_cpu = 0.0
    status = "finished"
    while rs.step < s.n_batches:
        reason = limits.reason()
        if agree(reason is not None, s.world, s.device):   # every rank stops at the same step
            status = reason or "stopped by another rank"
            break
        limits.step_started()
        gstep = rs.epoch * s.n_batches + rs.step
        # the step: learning rate, batch, loss, backward, optimiser, weight average
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
        # bookkeeping: position, running means for the epoch's log row, budgets, progress
        rs.step += 1
        _accumulate(rs.meters, losses)
        limits.step_done()
        if bar:
            bar.set_postfix({k: f"{float(v.detach()):.4f}" for k, v in losses.items()})
            bar.update(1)
        mid_epoch = rs.step < s.n_batches
        if mid_epoch and cfg.eval_every and (gstep + 1) % cfg.eval_every == 0 and s.rank == 0:
            s.clock.update()
            s.tb.evaluation(_evaluate(s.run, s.model, s.ema, cfg, s.test_set, rs, gstep + 1))
            s.train_mode()
        if mid_epoch and cfg.save_every and rs.step % cfg.save_every == 0:
            s.save()
    if bar:
        bar.close()
    return status


def _accumulate(meters: dict, losses: dict[str, torch.Tensor]) -> None:
    """Add a step's losses to the epoch's sums (``meters["n"]`` counts the steps)."""
    for k, v in losses.items():
        meters[k] = meters.get(k, 0.0) + float(v.detach())
    meters["n"] = meters.get("n", 0) + 1


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
