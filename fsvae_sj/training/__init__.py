"""Train FSVAE (or the ANN VAE baseline): resumable, time-boxed, single or multi-process.

The library behind ``python -m fsvae_sj.train`` (:mod:`fsvae_sj.cli.train` is its command line):
:func:`resolve_config` decides a run's :class:`TrainConfig`, :func:`run_training` trains.

The run directory holds ``state.pt`` (model, optimiser, EMA, epoch, step, every RNG;
written atomically, loaded with ``weights_only=True``), ``model.safetensors`` (the
raw weights in our format), ``ema.safetensors`` (their exponential moving average,
when ``--ema-decay`` is set), ``best.safetensors`` (whichever of the two had the best
AE Frechet distance at any evaluation so far), ``log.csv`` (one row per epoch),
``evals.csv`` (every evaluation), image grids, and the same numbers and grids as
TensorBoard events (:mod:`fsvae_sj.tblog`). Resuming from ``state.pt`` gives the same
weights as a run that never stopped.

Modules: ``config`` (:class:`TrainConfig`, recipes, schedules), ``distributed`` (processes),
``state`` (``state.pt``, resume, warm start, branch), ``loop`` (:func:`run_training`).
"""
from .config import (BRANCH_CHANGES, EXIT_FINISHED, EXIT_NONFINITE, EXIT_STOPPED, PRIOR_STATISTICS, RECIPES,
                     RESUMABLE_CHANGES, STAGES, TrainConfig, batches_per_epoch, config_differences, epoch_order,
                     frozen_parts, frozen_statistics, learning_rate, scheduled_p)
from .distributed import process_placement
from .loop import build, make_ema, run_training
from .state import STATE, RunState, WarmStart, branch_run, read_state, resolve_config, warm_start

__all__ = ["BRANCH_CHANGES", "EXIT_FINISHED", "EXIT_NONFINITE", "EXIT_STOPPED", "PRIOR_STATISTICS", "RECIPES",
           "RESUMABLE_CHANGES", "STAGES", "STATE", "RunState", "TrainConfig", "WarmStart", "batches_per_epoch", "branch_run",
           "build", "config_differences", "epoch_order", "frozen_parts", "frozen_statistics", "learning_rate", "make_ema", "process_placement", "read_state", "resolve_config",
           "run_training", "scheduled_p", "warm_start"]
