"""The FSVAE authors' checkpoints as a model, and the parity check against their code: what
``python -m fsvae_sj.convert`` runs. Their layout itself is :mod:`fsvae_sj.models.authors` (the
only place that knows it); this module builds the :class:`~fsvae_sj.models.fsvae.FSVAE` from it.
"""
from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..models.authors import authors_state, convert_state_dict, infer_config, source_name
from ..models.config import FSVAEConfig
from ..models.fsvae import FSVAE
from ..models.pretrained import build_strict


def load_authors_checkpoint(src, config: FSVAEConfig | None = None,
                            device: str | torch.device = "cpu") -> FSVAE:
    """An eval-mode FSVAE holding the authors' weights from a path, bytes or state_dict; raises
    :class:`CheckpointError` naming the file (a path) for anything else, before building the model."""
    config, state = authors_state(src, config)
    return build_strict(FSVAE, config, state, source=f"{source_name(src)} (converted)").to(device).eval()


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


__all__ = ["check_fixture", "convert_state_dict", "infer_config", "load_authors_checkpoint"]
