"""Pretrained models: ``zoo.load("fashion-mnist")``, ``zoo.list_models()``, model cards.

Entries are immutable :class:`Weights` records (torchvision-style) read from the
JSON files in the repository's ``zoo/`` folder, plus the authors' CelebA model.
A model's architecture is stored once: in its safetensors file's metadata (the JSON
describes the entry, not the model), or, for the authors' .pth, as the config the
converter builds (:meth:`FSVAEConfig.large`).
Files are found, in order, in ``zoo/`` beside the package (a clone), in the
cache (argument > ``$FSVAE_SJ_HOME`` > ``$TORCH_HOME/fsvae_sj`` >
``~/.cache/torch/fsvae_sj``), or downloaded from the entry's URLs into the cache
(temporary file, size + hash check, atomic rename, under a file lock).
``FSVAE_SJ_OFFLINE=1`` (read at call time) never touches the network.
Command line: ``python -m fsvae_sj.zoo list | info NAME | download NAME | verify | publish``
(:mod:`fsvae_sj.cli.zoo`); putting a training run into the zoo is :mod:`fsvae_sj.zoo.publish`.
"""
from .checkpoint import CheckpointError, read_checkpoint, read_config, read_metadata, save_model
from .entries import (DEFAULT, FSVAE_CITATION, SJ_CITATION, ZOO_DIR, Weights, ZooError, cache_dir, check_entry_name,
                      check_file_name, get_weights, list_models, looks_like_path, read_entry, trained_on)
from .fetching import fetch, git_blob_id, is_offline, verify
from .loading import WeightsSource, load, load_model

__all__ = ["CheckpointError", "DEFAULT", "FSVAE_CITATION", "SJ_CITATION", "Weights", "WeightsSource", "ZOO_DIR",
           "ZooError", "cache_dir", "check_entry_name", "check_file_name", "fetch", "get_weights", "git_blob_id",
           "is_offline", "list_models", "load", "load_model", "looks_like_path", "read_checkpoint", "read_config",
           "read_entry", "read_metadata", "save_model", "trained_on", "verify"]
