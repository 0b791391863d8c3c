"""The hub wing: what loading weights needs before any model class is involved, below the models
(as diffusers' hub utilities sit below its models), so ``FSVAE.from_pretrained`` imports it
directly and no module registers anything at import time.

Modules, lowest first: ``checkpoint`` (our format: safetensors + a metadata header holding the
model config as a plain dict and ``extra``; read and written, never interpreted as a model),
``entries`` (the zoo's :class:`Weights` records, names, ``ZOO_DIR``, the cache folder),
``fetching`` (finding, downloading and verifying an entry's file), ``sources`` (:func:`resolve`:
a name or a path -> a verified local file and its :class:`WeightsSource`).

It imports only the base modules. Where a model class would be needed, it holds plain data
instead: a checkpoint's config and the authors' entry's architecture are dicts, as stored in
every header; checking their fields and building the model belong to the models wing
(:mod:`fsvae_sj.models.pretrained`), and the one public loader of any architecture is
:func:`fsvae_sj.zoo.load`.
"""
from .checkpoint import FORMAT, CheckpointError, read_checkpoint, read_config, read_metadata, save_model
from .entries import (DEFAULT, FSVAE_CITATION, SJ_CITATION, ZOO_DIR, Weights, ZooError, cache_dir, check_entry_name,
                      check_file_name, get_weights, list_models, looks_like_path, read_entry)
from .fetching import fetch, git_blob_id, is_offline, verify
from .sources import WeightsSource, resolve

__all__ = ["CheckpointError", "DEFAULT", "FORMAT", "FSVAE_CITATION", "SJ_CITATION", "Weights", "WeightsSource",
           "ZOO_DIR", "ZooError", "cache_dir", "check_entry_name", "check_file_name", "fetch", "get_weights",
           "git_blob_id", "is_offline", "list_models", "looks_like_path", "read_checkpoint", "read_config",
           "read_entry", "read_metadata", "resolve", "save_model", "verify"]
