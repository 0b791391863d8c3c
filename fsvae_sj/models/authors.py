"""The FSVAE authors' checkpoints (github.com/kamata1729/FullySpikingVAE) as our config + state.

Their state_dicts are time-LAST: Conv3d/ConvTranspose3d kernels of depth 1
(``[..., 3, 3, 1]``), and each weight layer owns its tdBN as ``<layer>.bn``.
This module is the only place that knows that layout: it maps every key onto
our time-first model's names and refuses anything it cannot map; the model is
built from what it returns, strictly, by whoever loads (every key checked:
:func:`fsvae_sj.models.pretrained.build_strict`). It needs no model class, so
``from_pretrained`` (below the model modules) converts the authors' zoo entry
through it. The model and the parity check: :mod:`fsvae_sj.zoo.authors`; the
command line: ``python -m fsvae_sj.convert``.
"""
from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import torch

from ..errors import CheckpointError
from .config import FSVAEConfig

# Buffers of the authors' model that hold constants, not weights.
_CONSTANT_KEYS = ("prior.initial_input", "posterior.initial_input", "membrane_output_layer.coef")


def read_state_dict(src) -> dict[str, torch.Tensor]:
    """The authors' state_dict from a path (``.pth``, gzipped or not), bytes, or a state_dict
    itself; raises :class:`CheckpointError` naming the file for anything else (and the loader
    for a ``.safetensors`` of ours)."""
    if isinstance(src, dict):
        return src
    if not isinstance(src, bytes) and str(src).endswith(".safetensors"):
        raise CheckpointError(f"{src} is a .safetensors file, already in a loadable format: load it with "
                              f"fsvae_sj.zoo.load(path) or --model {src}; convert takes the authors' .pth")
    try:
        raw = src if isinstance(src, bytes) else Path(src).read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read {src}: {e.strerror or e}") from None
    try:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        sd = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot read {src if not isinstance(src, bytes) else 'checkpoint bytes'} "
                              f"as a torch state_dict: {e}") from e
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError("expected a state_dict (a mapping of names to tensors) in the authors' format")
    return sd


def infer_config(sd: dict[str, torch.Tensor]) -> FSVAEConfig:
    """The architecture an authors' state_dict describes (channels, widths, latent, k, T)."""
    try:
        widths, i = [], 0
        while f"encoder.{i}.weight" in sd:
            widths.append(int(sd[f"encoder.{i}.weight"].shape[0]))
            i += 1
        in_channels = int(sd["encoder.0.weight"].shape[1])
        latent = int(sd["before_latent_layer.weight"].shape[0])
        k = int(sd["prior.layers.2.weight"].shape[0]) // latent
        n_steps = int(sd["membrane_output_layer.coef"].shape[-1])
        return FSVAEConfig(in_channels=in_channels, image_size=2 * 2 ** len(widths), hidden_dims=tuple(widths),
                           latent_dim=latent, k=k, n_steps=n_steps)
    except KeyError as e:
        raise CheckpointError(f"not an FSVAE checkpoint in the authors' format: no key {e}") from e
    except (IndexError, ZeroDivisionError, ValueError) as e:   # tensors of impossible shapes
        raise CheckpointError(f"not an FSVAE checkpoint in the authors' format: its shapes describe no FSVAE "
                              f"({type(e).__name__}: {e})") from e


def convert_state_dict(sd: dict[str, torch.Tensor], config: FSVAEConfig | None = None
                       ) -> tuple[FSVAEConfig, dict[str, torch.Tensor]]:
    """Map the authors' keys onto ours: ``(config, state)``. ``config``, if given, must be the
    architecture the weights describe; otherwise it is inferred from them. A weight layer that
    owns a tdBN (``<layer>.bn.*``) is our block's ``<layer>.layer``; every other key keeps its name
    (a key that fits no layer of ours is left for the strict loading to refuse, named)."""
    inferred = infer_config(sd)
    if config is None:
        config = inferred
    else:
        arch = ("in_channels", "image_size", "hidden_dims", "latent_dim", "k", "n_steps")
        diff = {a: (getattr(config, a), getattr(inferred, a)) for a in arch
                if getattr(config, a) != getattr(inferred, a)}
        if diff:
            raise CheckpointError("checkpoint is of another architecture: "
                                  + ", ".join(f"{a}: expected {e}, checkpoint has {g}" for a, (e, g) in diff.items()))
    _check_constants(sd, config)
    blocks = {key.rpartition(".bn.")[0] for key in sd if ".bn." in key}
    out = {}
    for key, value in sd.items():
        if key in _CONSTANT_KEYS:
            continue
        prefix, _, leaf = key.rpartition(".")
        ours = f"{prefix}.layer.{leaf}" if ".bn." not in key and prefix in blocks else key
        if value.dim() == 5:  # a time-last kernel of depth 1
            if value.shape[-1] != 1:
                raise CheckpointError(f"{key}: expected a kernel of time depth 1, got shape {tuple(value.shape)}")
            value = value[..., 0]
        out[ours] = value.contiguous()
    return config, out


def _check_constants(sd, config: FSVAEConfig) -> None:
    T = config.n_steps
    coef = sd.get("membrane_output_layer.coef")
    expected = torch.pow(config.readout_decay, torch.arange(T - 1, -1, -1))
    if coef is None or coef.numel() != T or not torch.allclose(coef.flatten().float(), expected):
        raise CheckpointError(f"membrane_output_layer.coef is not {config.readout_decay}^(T-1-t)")
    for key in ("prior.initial_input", "posterior.initial_input"):
        if key not in sd or bool(sd[key].any()):
            raise CheckpointError(f"{key} must be present and zero (z_0 = 0)")


def authors_state(src, config: FSVAEConfig | None = None) -> tuple[FSVAEConfig, dict[str, torch.Tensor]]:
    """``(config, state)`` of the authors' checkpoint ``src`` (a path, bytes or a state_dict; see
    :func:`read_state_dict` and :func:`convert_state_dict`), ready for a strict load; raises
    :class:`CheckpointError` naming the file (a path) for anything else."""
    source = source_name(src)
    try:
        return convert_state_dict(read_state_dict(src), config)
    except CheckpointError as e:
        raise CheckpointError(str(e) if source in str(e) else f"{source}: {e}") from None


def source_name(src) -> str:
    """How messages name the authors' checkpoint ``src``: its path, else a description."""
    return str(src) if isinstance(src, (str, os.PathLike)) else "the authors' checkpoint"
