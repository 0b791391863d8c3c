"""A run's state on disk: ``state.pt`` (written atomically, read with ``weights_only``), the weights
with their metadata, resuming, warm starts (``--init-from``), branches (``--branch-from``), and the
config a run folder takes (:func:`resolve_config`)."""
from __future__ import annotations

import dataclasses
import io
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from .. import zoo
from ..hub import read_checkpoint, save_model
from ..models.config import ConfigError
from ..datasets import canonical, make_dataset
from ..errors import CheckpointError
from ..files import atomic_write_bytes, sha256_file
from ..models.registry import ARCHITECTURES, load_state_strict
from .config import BRANCH_CHANGES, RESUMABLE_CHANGES, TrainConfig, batches_per_epoch, config_differences


STATE = "state.pt"


def check_finite(module, what: str) -> None:
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


def hardware_label(device: str, world: int = 1) -> str:
    """What a process's training steps run on, as provenance records it: ``"cpu (x86_64, 2 cores)"``,
    ``"cuda (NVIDIA H200)"``; ``"4 x ..."`` for ``world`` processes."""
    if device.startswith("cuda"):
        label = f"cuda ({torch.cuda.get_device_name(torch.device(device))})"
    else:
        label = f"{device} ({platform.machine()}, {os.cpu_count()} cores)"
    return f"{world} x {label}" if world > 1 else label


def record_hardware(rs: RunState, label: str) -> None:
    """Append a ``hardware`` event to the provenance when ``label`` differs from the last one recorded
    (a run's first invocation, or a resume or warm start elsewhere): a card can then say which steps
    ran on a GPU. Runs made before 2026-12-04 recorded none: theirs ran on this project's 2-core CPU."""
    last = next((p["hardware"] for p in reversed(rs.provenance) if p.get("event") == "hardware"), None)
    if label != last:
        rs.provenance.append({"event": "hardware", "hardware": label, "epoch": rs.epoch, "step": rs.step,
                              "cpu_hours": round(rs.cpu_seconds / 3600, 4)})


def save_state(run: Path, model, opt, ema, cfg, rs: RunState, gen, rank: int, world: int):
    """Every rank calls this (its sampling generator is gathered); rank 0 writes.
    Non-finite weights are never written: the last good checkpoint stays."""
    gens = [gen.get_state()]
    if world > 1:
        gens = [None] * world
        dist.all_gather_object(gens, gen.get_state())
    if rank != 0:
        return
    check_finite(model, "the model")
    state = {"train_config": cfg.to_dict(), "model_config": model.config.to_dict(),
             "model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": rs.epoch, "step": rs.step,
             "torch_rng": torch.get_rng_state(), "gen": gens, "run_state": json.dumps(rs.meta())}
    if ema is not None:
        state["ema"] = ema.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(run / STATE, buf.getvalue())
    extra = {"train_config": cfg.to_dict(), **rs.meta()}
    save_model(model, run / "model.safetensors", extra=extra)
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


def load_state(run: Path, cfg: TrainConfig, model, opt, ema, gen, rank: int, world: int) -> RunState:
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


# Settings of the source's run that a warm start does not take over: they say what that run trained.
PER_RUN_SETTINGS = ("stage", "prior_free_on", "decoder_prior_mix", "prior_statistics", "recon_loss")


def warm_start(name_or_path: str, cfg_overrides: dict) -> tuple[TrainConfig, WarmStart]:
    """The training config and starting point of ``--init-from NAME|PATH``.

    The weights (tdBN statistics included) are loaded exactly; the epoch, step, learning
    curve and CPU time are carried over from the checkpoint's metadata (or the zoo entry's
    recipe); the optimiser restarts, and the run records that. The recipe comes from the
    source unless ``cfg_overrides`` changes it, but for :data:`PER_RUN_SETTINGS` (the stage
    and its options, which take their defaults); the architecture must match; a change of dataset
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
    # What the source run did (a prior stage) is not what the new run does: a staged zoo entry
    # continued with --init-from trains the whole model unless --stage says otherwise.
    inherited = {k: v for k, v in tc.items() if k not in PER_RUN_SETTINGS}
    cfg = TrainConfig.from_dict({**TrainConfig().to_dict(), **inherited, **cfg_overrides})
    if "stage" not in cfg_overrides and tc.get("stage", "full") != cfg.stage:
        print(f"note: --init-from {name_or_path} was made by the {tc['stage']!r} stage; this run's stage is "
              f"{cfg.stage!r} (give --stage to choose)", file=sys.stderr)
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
