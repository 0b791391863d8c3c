"""A run's settings: :class:`TrainConfig` (saved as JSON), the named recipes, what a resume or a
branch may change, and the schedules a config sets (learning rate, scheduled sampling, data order)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..calibration import decoder_parts
from ..models.config import ConfigError, _Serialisable
from ..datasets import DATASETS, canonical
from ..models.losses import DISTANCES, MMD_REDUCTIONS, RECON_LOSSES, STAGES, LossSettings, prior_free_features
from ..models.registry import architecture
from ..spiking.tdbn import TdBN



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


# How the prior-free stage's prior normalises (TrainConfig.prior_statistics).
PRIOR_STATISTICS = ("batch", "running")


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
    ``stage``: what the run trains (:data:`STAGES`): ``"full"``, the whole model on the FSVAE loss;
    ``"autoencoder"``, encoder, posterior and decoder on the same loss with the prior frozen in eval
    mode (so the prior-posterior term pulls only the posterior, towards the prior as it generates,
    and a prior a stage has trained is not pulled away again; measured: benchmarks/RESULTS.md, "The
    staged prior kept, the autoencoder trained under it");
    ``"decoder"``, the decoder alone on the reconstruction error of the posterior's z, everything
    else frozen in eval mode: the latent distribution the prior was fitted to stays as it is
    (measured from the entries: fashion-mnist's samples improved with the reconstructions, mnist's
    got worse; benchmarks/RESULTS.md, "The decoder alone, the latent distribution kept");
    ``"prior"``, the prior alone on ``distance``, teacher-forced on the posterior's z (scheduled
    sampling as set); ``"prior-free"``, the prior alone drawing its own z in training mode (so its
    tdBN statistics are those of its own samples, as when it generates), trained on the kernel MMD
    between its trains and the posterior's over the batch (:func:`fsvae_sj.models.losses.latent_set_mmd`).
    In both prior stages every other part is frozen in eval mode (:func:`frozen_parts`): a stage
    after the main run, to let the prior catch up with an autoencoder that no longer moves.
    Measured on mnist: benchmarks/RESULTS.md, "A prior stage after the main run".
    ``prior_free_on``: what the "prior-free" stage's MMD compares (:data:`PRIOR_FREE_FEATURES`): the
    latent spike trains, or the firing probabilities they are drawn from (less noise, so the MMD
    sees the difference at a batch where it does not see it in the trains), or the images the frozen
    decoder makes of the trains (the prior learns through the decoder what its trains carry over time),
    or several of these joined by ``+`` (e.g. ``"images+probabilities"``; the loss is the sum of their MMDs).
    ``decoder_prior_mix``: in the "decoder" stage, the probability with which each latent of each step
    of the posterior's z is replaced by the frozen prior's own draw given the posterior's history
    (teacher-forced, as it generates one step): the decoder learns to map the prior's errors to the
    image, not only the posterior's trains; 0: the posterior's z alone. Measured on fashion-mnist at 0.5:
    the samples got worse while the reconstructions sharpened (benchmarks/RESULTS.md, "Second passes, and
    the decoder on the prior's draws").
    ``prior_statistics``: how the "prior-free" stage's prior normalises (:data:`PRIOR_STATISTICS`):
    ``"batch"``, tdBN in training mode (the batch's statistics of its own trains, running statistics
    updated from them); ``"running"``, its tdBN layers kept in eval mode (the running statistics it
    generates with, never updated): the function trained is exactly the one that generates, and the
    raw weights are what samples. Measured: no better than "batch" on the same batches, and at the
    stage's rate mnist's raw weights ran away (benchmarks/RESULTS.md, "The prior stage on the statistics it
    samples with").
    ``recon_loss``: the reconstruction error the stages with one train on (:data:`RECON_LOSSES`):
    ``"mse"``, the paper's; ``"l1"``, the mean absolute error, whose optimum per pixel is the
    median of what the latent code leaves possible rather than its mean (sharper edges where MSE
    blends; benchmarks/RESULTS.md, "The decoder on the absolute error"). The prior stages have none.
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
    stage: str = "full"
    prior_free_on: str = "spikes"
    decoder_prior_mix: float = 0.0
    prior_statistics: str = "batch"
    recon_loss: str = "mse"

    def __post_init__(self):
        self._check_types()
        ranges = {"epochs": (self.epochs >= 1, ">= 1"), "n_steps": (self.n_steps >= 1, ">= 1"),
                  "seed": (self.seed >= 0, ">= 0"), "lr": (self.lr is None or self.lr > 0, "> 0 or null"),
                  "weight_decay": (self.weight_decay >= 0, ">= 0"),
                  "scheduled_start": (0 <= self.scheduled_start <= 1, "in [0, 1]"),
                  "scheduled_end": (0 <= self.scheduled_end <= 1, "in [0, 1]"),
                  "distance": (self.distance in DISTANCES, f"one of {DISTANCES}"),
                  "mmd_reduction": (self.mmd_reduction in MMD_REDUCTIONS, f"one of {MMD_REDUCTIONS}"),
                  "recon_loss": (self.recon_loss in RECON_LOSSES, f"one of {RECON_LOSSES}"),
                  "limit_test": (self.limit_test is None or self.limit_test >= 1, ">= 1 or null"),
                  "save_every": (self.save_every >= 0, ">= 0"), "eval_every": (self.eval_every >= 0, ">= 0"),
                  "lr_min_ratio": (0 <= self.lr_min_ratio <= 1, "in [0, 1]"),
                  "lr_decay_steps": (self.lr_decay_steps >= 0, ">= 0"),
                  "lr_warmup_steps": (self.lr_warmup_steps >= 0, ">= 0"),
                  "decoder_prior_mix": (0 <= self.decoder_prior_mix <= 1, "in [0, 1]"),
                  "calibrate_decoder": (self.calibrate_decoder == 0 or self.calibrate_decoder >= 2,
                                        "0 (off) or >= 2 samples")}
        for name, (ok, want) in ranges.items():
            if not ok:
                raise ConfigError(f"TrainConfig field {name} must be {want}, got {getattr(self, name)!r}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.eval_samples == 1 or self.eval_samples < 0:
            raise ConfigError(f"eval_samples must be 0 (no AE Frechet) or >= 2, got {self.eval_samples}")
        if self.stage not in STAGES:
            raise ConfigError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.stage != "full" and self.model != "fsvae":
            raise ConfigError(f"stage {self.stage!r} needs FSVAE's prior and posterior; model {self.model!r} has none")
        prior_free_features(self.prior_free_on)
        if self.prior_free_on != "spikes" and self.stage != "prior-free":
            raise ConfigError(f"prior_free_on applies to the prior-free stage only; stage is {self.stage!r}")
        if self.decoder_prior_mix and self.stage != "decoder":
            raise ConfigError(f"decoder_prior_mix applies to the decoder stage only; stage is {self.stage!r}")
        if self.prior_statistics not in PRIOR_STATISTICS:
            raise ConfigError(f"prior_statistics must be one of {PRIOR_STATISTICS}, got {self.prior_statistics!r}")
        if self.prior_statistics != "batch" and self.stage != "prior-free":
            raise ConfigError(f"prior_statistics applies to the prior-free stage only; stage is {self.stage!r}")
        if self.recon_loss != "mse" and self.stage in ("prior", "prior-free"):
            raise ConfigError(f"recon_loss applies to stages with a reconstruction error; stage is {self.stage!r}")
        if self.recon_loss != "mse" and self.model != "fsvae":
            raise ConfigError(f"recon_loss {self.recon_loss!r} is FSVAE's; model {self.model!r} trains on MSE")
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
        return LossSettings(scheduled_p(self, epoch), self.distance, self.mmd_reduction, 1.0 / batches,
                            stage=self.stage, prior_free_on=self.prior_free_on,
                            decoder_prior_mix=self.decoder_prior_mix, recon_loss=self.recon_loss)

    def base_lr(self, world: int = 1) -> float:
        return self.lr if self.lr is not None else 1e-3 * self.batch_size * world / 250


def frozen_parts(model: torch.nn.Module, stage: str) -> list[torch.nn.Module]:
    """The modules that ``stage`` keeps fixed (their weights get no gradient and they stay in eval
    mode, so their tdBN statistics do not move): none in ``"full"``; the prior in ``"autoencoder"``;
    all but the decoder (encoder, posterior, prior) in ``"decoder"``; in the prior stages every part
    of the FSVAE but its prior (encoder, posterior, decoder)."""
    if stage == "full":
        return []
    if stage == "autoencoder":
        return [model.prior]
    if stage == "decoder":
        decoder = decoder_parts(model)
        return [m for m in model.children() if all(m is not d for d in decoder)]
    return [m for m in model.children() if m is not model.prior]


def frozen_statistics(model: torch.nn.Module, cfg: TrainConfig) -> list[TdBN]:
    """The tdBN layers that normalise with their running statistics in training, without updating
    them (kept in eval mode while the rest of their part trains): the prior's with
    ``prior_statistics="running"``; none otherwise."""
    if cfg.prior_statistics != "running":
        return []
    return [m for m in model.prior.modules() if isinstance(m, TdBN)]


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
