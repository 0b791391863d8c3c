"""Our checkpoint format: one safetensors file whose metadata holds the model config.

Models are rebuilt from config + weights, never unpickled. Writes are atomic.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path

import torch

FORMAT = "fsvae-sj/1"


def _new_file_mode(path: Path) -> int:
    """The mode a plain ``open(path, "w")`` would leave: an existing file's own mode,
    else 0o666 less the process's umask (mkstemp alone would give 0o600)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (os.umask can only be
    read by setting it, which would race with other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside ``path`` and rename it into place (a reader sees the
    old file or the new one, never a part); the file gets the mode ``open()`` would give."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class CheckpointError(ValueError):
    """A file that is not a loadable checkpoint of ours."""


def save_model(model: torch.nn.Module, path: str | os.PathLike, extra: dict | None = None) -> str:
    """Save weights + config as safetensors; returns the file's SHA-256."""
    from safetensors.torch import save
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "config": model.config.to_json()}
    if extra:
        meta["extra"] = json.dumps(extra, sort_keys=True)
    atomic_write_bytes(path, save(state, metadata=meta))
    return sha256_file(path)


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor], dict]:
    """``(config dict, state_dict, extra)`` of a checkpoint in our format."""
    from safetensors import SafetensorError
    from safetensors.torch import load
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    data = b""
    try:
        data = path.read_bytes()
        state = load(data)
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        if path.suffix in (".pth", ".pt") or data[:2] in (b"PK", b"\x1f\x8b"):   # zip or gzip: torch.save
            raise CheckpointError(f"{path} looks like a PyTorch .pth checkpoint, not one of ours: if it is the "
                                  f"authors' FSVAE, convert it first: python -m fsvae_sj.convert {path} "
                                  f"{path.with_suffix('.safetensors')}") from e
        raise CheckpointError(f"{path} is not a readable safetensors file (corrupt or truncated?): {e}") from e
    if meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(f"{path} is safetensors but not an fsvae-sj checkpoint "
                              f"(metadata format={meta.get('format')!r}, expected {FORMAT!r})")
    return json.loads(meta["config"]), state, json.loads(meta.get("extra", "{}"))


def build_model(config):
    from .ann import ANNVAE
    from .model import FSVAE
    return FSVAE(config) if config.arch == "fsvae" else ANNVAE(config)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild a model from one of our checkpoints, in eval mode. Strict: every key must match."""
    from .config import config_from_dict
    cfg_dict, state, _ = read_checkpoint(path)
    model = build_model(config_from_dict(cfg_dict))
    load_state_strict(model, state, source=str(path))
    return model.to(device).eval()


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or bad:
        details = []
        if missing:
            details.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
        if unexpected:
            details.append(f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
        for k in bad[:8]:
            details.append(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}")
        raise CheckpointError(f"{source} does not fit this architecture: " + "; ".join(details))
    model.load_state_dict(state, strict=True)
