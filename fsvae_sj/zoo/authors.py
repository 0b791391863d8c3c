"""Load the FSVAE authors' checkpoints (github.com/kamata1729/FullySpikingVAE).

Their state_dicts are time-LAST: Conv3d/ConvTranspose3d kernels of depth 1
(``[..., 3, 3, 1]``), and each weight layer owns its tdBN as ``<layer>.bn``.
This module is the only place that knows that layout: it maps every key onto
our time-first model and refuses anything it cannot map. Its command line is
``python -m fsvae_sj.convert`` (:mod:`fsvae_sj.convert`).
"""
from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import torch

from ..models.config import FSVAEConfig
from ..errors import CheckpointError
from ..models.fsvae import FSVAE
from ..models.registry import check_state, load_state_strict

# Buffers of the authors' model that hold constants, not weights.
_CONSTANT_KEYS = ("prior.initial_input", "posterior.initial_input", "membrane_output_layer.coef")


def _read_state_dict(src) -> dict[str, torch.Tensor]:
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
    """Map the authors' keys onto ours. ``config``, if given, must be the architecture
    the weights describe; otherwise it is inferred from them."""
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
    with torch.device("meta"):   # the names only: nothing allocated
        own = FSVAE(config).state_dict()
    out = {}
    for key, value in sd.items():
        if key in _CONSTANT_KEYS:
            continue
        prefix, _, leaf = key.rpartition(".")
        ours = key if ".bn." in key or key in own else f"{prefix}.layer.{leaf}"
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


def load_authors_checkpoint(src, config: FSVAEConfig | None = None,
                            device: str | torch.device = "cpu") -> FSVAE:
    """An eval-mode FSVAE holding the authors' weights from a path, bytes or state_dict; raises
    :class:`CheckpointError` naming the file (a path) for anything else, before building the model."""
    source = str(src) if isinstance(src, (str, os.PathLike)) else "the authors' checkpoint"
    try:
        config, state = convert_state_dict(_read_state_dict(src), config)
        check_state(config, state, source=f"{source} (converted)")
    except CheckpointError as e:
        raise CheckpointError(str(e) if source in str(e) else f"{source}: {e}") from None
    model = FSVAE(config)
    load_state_strict(model, state, source=f"{source} (converted)")
    return model.to(device).eval()


def _time_first(t: torch.Tensor) -> torch.Tensor:
    """(N, C, T) -> [T, N, C]."""
    return t.permute(2, 0, 1).contiguous()


@torch.no_grad()
def check_fixture(path: str | os.PathLike) -> tuple[bool, list[str]]:
    """Run our model on a parity fixture made with the authors' code; report each mismatch. Raises
    :class:`~fsvae_sj.errors.CheckpointError` when ``path`` cannot be read as a fixture."""
    try:
        raw = Path(path).read_bytes()
        fx = torch.load(io.BytesIO(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw), weights_only=True)
    except Exception as e:   # missing, or not a fixture: torch's readers raise many kinds
        raise CheckpointError(f"cannot read {path} as a parity fixture ({type(e).__name__}: {e})") from None
    model = load_authors_checkpoint(fx["checkpoint_bytes"])
    fmt = fx.get("format", "")
    lines = [f"fixture: {fmt}", f"model: {type(model).__name__}{model.config.hidden_dims}, "
                                f"{sum(p.numel() for p in model.parameters()):,} parameters"]
    wants_large = "FSVAELarge" in fmt
    ok = wants_large == (len(model.config.hidden_dims) == 5)
    if not ok:
        lines.append(f"format string names {'FSVAELarge' if wants_large else 'FSVAE'} but the weights do not")
    enc_in = _time_first(fx["encoder_spikes"])
    z_prev, z = _time_first(fx["z_prev"]), _time_first(fx["z"])
    outputs = {
        "encoder_spikes": (model.encode(fx["x"]), enc_in),
        "posterior_out": (model.posterior.run(torch.cat([enc_in, z_prev], dim=-1)), _time_first(fx["posterior_out"])),
        "prior_out": (model.prior.run(z_prev), _time_first(fx["prior_out"])),
    }
    for name, (ours, ref) in outputs.items():
        diff = int((ours != ref).sum())
        ok &= diff == 0
        lines.append(f"{name:15s} {tuple(ref.shape)}: {diff} of {ref.numel()} spikes differ "
                     f"(ours fire {int(ours.sum())}, reference {int(ref.sum())})")
    decoded = model.decode(z)
    err = float((decoded - fx["decoded"]).abs().max())
    ok &= err <= 1e-5
    lines.append(f"decoded         {tuple(decoded.shape)}: max abs error {err:.3g} (tolerance 1e-5)")
    lines.append("PASS" if ok else "FAIL")
    return ok, lines
