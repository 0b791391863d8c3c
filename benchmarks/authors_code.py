"""The FSVAE authors' code (github.com/kamata1729/FullySpikingVAE), run from a checkout.

Their code never enters this repository: benchmarks and fixture makers take the path
of a checkout (``fetch`` it, or ``git clone``) and import ``fsvae_models/`` and
``global_v.py`` from there. This module only sets up their global configuration,
builds their model, and translates between their time-last tensors and ours.

Their layout: images ``(N, C, H, W, T)`` (the image repeated over a last time
axis), latent spikes ``(N, latent, T)``, sampler outputs ``(N, latent, k, T)``.
"""
from __future__ import annotations

import contextlib
import importlib
import sys
from pathlib import Path

import torch


def load(path: str | Path, latent_dim: int = 128, k: int = 20, n_steps: int = 16, in_channels: int = 1,
         batch_size: int = 64):
    """Import their modules from ``path`` and return ``(fsvae_module, global_v)``,
    with their global configuration set for a 32x32 FSVAE of these sizes.

    Raises FileNotFoundError when ``path`` holds no ``fsvae_models/fsvae.py``."""
    root = Path(path).resolve()
    if not (root / "fsvae_models" / "fsvae.py").is_file():
        raise FileNotFoundError(f"{root} is not a checkout of kamata1729/FullySpikingVAE "
                                f"(no fsvae_models/fsvae.py)")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    glv = importlib.import_module("global_v")
    glv.init({"batch_size": batch_size, "lr": 1e-3, "n_steps": n_steps, "in_channels": in_channels,
              "latent_dim": latent_dim, "k": k}, [0])
    fsvae = importlib.import_module("fsvae_models.fsvae")
    _spikes_follow_input_dtype(importlib.import_module("fsvae_models.snn_layers"))
    return fsvae, glv


def _spikes_follow_input_dtype(snn_layers) -> None:
    """Their spike function returns float32 whatever the membrane's dtype, which
    stops a float64 network at the next layer. Spikes are 0 or 1, exact in any
    float type, so casting them to the membrane's dtype changes no value; the
    surrogate gradient (their backward) is untouched."""
    act = snn_layers.SpikeAct
    if getattr(act, "_fsvae_sj_cast", False):
        return
    original = act.forward

    def forward(ctx, input):
        return original(ctx, input).to(input.dtype)

    act.forward = staticmethod(forward)
    act._fsvae_sj_cast = True


@contextlib.contextmanager
def scripted_randint(draws: list[torch.Tensor]):
    """Make ``torch.randint`` return ``draws`` in order (their posterior's choices),
    so their code and ours pick the same one of the k spikes. Each draw is the
    flat ``(N * latent,)`` vector their posterior asks for."""
    queue = list(draws)
    real = torch.randint

    def randint(low, high, size, *args, **kwargs):
        d = queue.pop(0)
        if tuple(d.shape) != tuple(size) or int(d.min()) < low or int(d.max()) >= high:
            raise AssertionError(f"scripted draw of shape {tuple(d.shape)} does not fit randint({low}, {high}, {size})")
        return d.clone()

    torch.randint = randint
    try:
        yield queue
    finally:
        torch.randint = real


def time_last_images(x: torch.Tensor, n_steps: int) -> torch.Tensor:
    """Our images ``[N, C, H, W]`` as their input ``(N, C, H, W, T)``."""
    return x.unsqueeze(-1).repeat(1, 1, 1, 1, n_steps)


def time_first(t: torch.Tensor) -> torch.Tensor:
    """Their time-last ``(N, ..., T)`` as our ``[T, N, ...]``."""
    return t.movedim(-1, 0)
