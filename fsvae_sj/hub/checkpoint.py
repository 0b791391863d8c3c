"""Our checkpoint format: one safetensors file whose metadata holds the model config (JSON) and
``extra`` (training metadata). Writes are atomic.

This module reads and writes the format and knows no model class: the config comes back as the
plain dict stored (a JSON object naming its ``arch``); its fields are checked, and the model is
built from config + weights (never unpickled), where the model classes are
(:func:`fsvae_sj.models.pretrained.model_from_file`).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..files import atomic_write_bytes, sha256_file

FORMAT = "fsvae-sj/1"


def save_model(model: torch.nn.Module, path: str | os.PathLike, extra: dict | None = None) -> str:
    """Save ``model``'s weights + its config (``model.config.to_json()``) as safetensors, with
    ``extra`` (a JSON object) beside them; returns the file's SHA-256. Atomic: raises
    :class:`OSError` naming the file and leaves nothing half-written."""
    from safetensors.torch import save
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "config": model.config.to_json()}
    if extra:
        meta["extra"] = json.dumps(extra, sort_keys=True)
    atomic_write_bytes(path, save(state, metadata=meta))
    return sha256_file(path)


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor], dict]:
    """``(config dict, state_dict, extra)`` of a checkpoint in our format: the config as stored (a
    JSON object; its fields are checked when a model is built from it), the known fields of
    ``extra`` validated by type and range (the one reader of the format: every loader goes
    through it); raises :class:`CheckpointError` naming the file and the field for anything else
    (and the tool for the authors' .pth)."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    data = b""
    try:
        data = path.read_bytes()
        state = load(data)
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        if path.suffix in (".pth", ".pt") or data[:2] in (b"PK", b"\x1f\x8b"):   # zip or gzip: torch.save
            raise CheckpointError(f"{path} looks like a PyTorch .pth checkpoint, not one of ours: if it is the "
                                  f"authors' FSVAE, convert it first: python -m fsvae_sj.convert {path} "
                                  f"{path.with_suffix('.safetensors')}") from e
        raise CheckpointError(f"{path} is not a readable safetensors file (corrupt or truncated?): {e}") from e
    return _config_of(meta, path), state, _extra_of(meta, path)


def read_config(path: str | os.PathLike) -> dict:
    """The model config a checkpoint of ours carries, read from the safetensors header alone
    (the weights are not read): the architecture of a file without loading it."""
    return read_metadata(path)[0]


def read_metadata(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(config dict, extra)`` of a checkpoint of ours from its header alone, checked as
    :func:`read_checkpoint` does (the weights are not read)."""
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file (corrupt or truncated?): {e}") from e
    return _config_of(meta, Path(path)), _extra_of(meta, Path(path))


def _config_of(meta: dict, path: Path) -> dict:
    """The model config of a header's metadata as stored (a file of an older version may leave
    out fields that have defaults): a JSON object whose ``arch``, if given, is a string."""
    if meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(f"{path} is safetensors but not an fsvae-sj checkpoint "
                              f"(metadata format={meta.get('format')!r}, expected {FORMAT!r})")
    try:
        stored = json.loads(meta["config"])
    except ValueError as e:
        raise CheckpointError(f"{path}: the model config in its metadata is invalid: {e}") from None
    if not isinstance(stored, dict) or not isinstance(stored.get("arch", ""), str):
        raise CheckpointError(f"{path}: the model config in its metadata is invalid: expected a JSON object "
                              f"with a string 'arch', got {stored!r:.80}")
    return stored


# The metadata fields of ours that code reads back (training, warm starts, publishing), by type:
# anything else in ``extra`` is carried as it is and never interpreted.
_EXTRA_TYPES = {"epoch": int, "step": int, "first_step": int, "afd_samples": int, "elapsed": float,
                "cpu_seconds": float, "afd_at_save": float, "best_afd": float, "history": list, "evals": list,
                "provenance": list, "train_config": dict, "meters": dict, "weights": str, "source": str,
                "git_blob": str}


def _extra_of(meta: dict, path: Path) -> dict:
    """The ``extra`` metadata, its known fields checked by type (counts and times non-negative)."""
    try:
        extra = json.loads(meta.get("extra", "{}"))
    except ValueError as e:
        raise CheckpointError(f"{path}: its 'extra' metadata is not JSON: {e}") from None
    if not isinstance(extra, dict):
        raise CheckpointError(f"{path}: its 'extra' metadata must be a JSON object, got {type(extra).__name__}")
    for key, want in _EXTRA_TYPES.items():
        v = extra.get(key)
        if v is None:
            continue
        if want in (int, float):   # counts, seconds and distances: finite and >= 0
            ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                  and (want is float or isinstance(v, int)))
        else:
            ok = isinstance(v, want)
        if not ok:
            kind = {int: "a count >= 0", float: "a finite number >= 0"}.get(want, want.__name__)
            raise CheckpointError(f"{path}: metadata field extra.{key} must be {kind}, got {v!r}")
    return extra


__all__ = ["CheckpointError", "FORMAT", "read_checkpoint", "read_config", "read_metadata", "save_model"]
