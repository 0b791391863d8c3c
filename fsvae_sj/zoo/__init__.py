"""Pretrained models: ``zoo.load("fashion-mnist")``, ``zoo.list_models()``, model cards.

Entries are immutable :class:`Weights` records (torchvision-style) read from the
JSON files in the repository's ``zoo/`` folder, plus the authors' CelebA model.
A model's architecture is stored once: in its safetensors file's metadata (the JSON
describes the entry, not the model), or, for the authors' .pth, as the config dict
the converter builds (``FSVAEConfig.large()``'s).
Files are found, in order, in ``zoo/`` beside the package (a clone), in the
cache (argument > ``$FSVAE_SJ_HOME`` > ``$TORCH_HOME/fsvae_sj`` >
``~/.cache/torch/fsvae_sj``), or downloaded from the entry's URLs into the cache
(temporary file, size + hash check, atomic rename, under a file lock).
``FSVAE_SJ_OFFLINE=1`` (read at call time) never touches the network.

The zoo sits above the models: :func:`load` (``loading``) builds any architecture through the
registry, and publishing (``publish``) and the authors' model with its parity check
(``authors``) build models too. What needs no model class (entries, fetching, verifying, our
checkpoint format) lives below the models in :mod:`fsvae_sj.hub` and is re-exported here under
its old names; ``FSVAE.from_pretrained`` reaches it directly and takes the same code path as
:func:`load` (:func:`fsvae_sj.models.pretrained.load_pretrained`).
Command line: ``python -m fsvae_sj.zoo list | info NAME | download NAME | verify | publish``
(:mod:`fsvae_sj.cli.zoo`).
"""
from ..hub import (DEFAULT, FSVAE_CITATION, SJ_CITATION, ZOO_DIR, CheckpointError, Weights, WeightsSource, ZooError,
                   cache_dir, check_entry_name, check_file_name, fetch, get_weights, git_blob_id, is_offline,
                   list_models, looks_like_path, read_checkpoint, read_config, read_entry, read_metadata, save_model,
                   verify)
from .loading import load, load_model, trained_on

__all__ = ["CheckpointError", "DEFAULT", "FSVAE_CITATION", "SJ_CITATION", "Weights", "WeightsSource", "ZOO_DIR",
           "ZooError", "cache_dir", "check_entry_name", "check_file_name", "fetch", "get_weights", "git_blob_id",
           "is_offline", "list_models", "load", "load_model", "looks_like_path", "read_checkpoint", "read_config",
           "read_entry", "read_metadata", "save_model", "trained_on", "verify"]
