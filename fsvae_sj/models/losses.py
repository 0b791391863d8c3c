"""FSVAE losses: reconstruction MSE plus the MMD with a PSP kernel (or the Bernoulli KL).

Tensors are time-first: ``q_out``/``p_out`` are ``[T, N, latent, k]`` spikes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError

DISTANCES = ("mmd", "kld")
MMD_REDUCTIONS = ("mean", "sum")


@dataclass(frozen=True)
class LossSettings:
    """What a training step's ``model.loss(x, settings, generator)`` needs besides the batch.

    Each architecture reads its own fields: FSVAE ``scheduled_p`` (probability that the prior
    is fed its own guess), ``distance``, ``mmd_reduction`` and ``prior_only`` (the prior stage: the
    loss is the distance alone, and only the prior gets gradients); the Gaussian ANN VAE
    ``batch_fraction``, the weight of its KL term (the authors' M/N: 1 / batches per epoch).
    """

    scheduled_p: float = 0.0
    distance: str = "mmd"
    mmd_reduction: str = "mean"
    batch_fraction: float = 1.0
    prior_only: bool = False


def psp(v: torch.Tensor, tau_syn: float = 2.0) -> torch.Tensor:
    """Post-synaptic potential over time (dim 0): ``s_t = s_{t-1} + (v_t - s_{t-1}) / tau_syn``."""
    out, s = [], torch.zeros_like(v[0])
    for v_t in v:
        s = s + (v_t - s) / tau_syn
        out.append(s)
    return torch.stack(out)


def mmd_loss(q_bar: torch.Tensor, p_bar: torch.Tensor, tau_syn: float = 2.0,
             reduction: str = "mean") -> torch.Tensor:
    """Squared PSP distance between firing probabilities ``[T, N, latent]``.

    ``"mean"`` over (t, n, c) is what the authors' code trains with; ``"sum"``
    sums over t as the paper writes it (T times larger), mean over (n, c).
    """
    if reduction not in MMD_REDUCTIONS:
        raise ConfigError(f"unknown MMD reduction {reduction!r}; expected one of {MMD_REDUCTIONS}")
    d = (psp(q_bar, tau_syn) - psp(p_bar, tau_syn)) ** 2
    return d.mean() if reduction == "mean" else d.sum(0).mean()


def bernoulli_kld(q_bar: torch.Tensor, p_bar: torch.Tensor, smooth: float = 1e-2) -> torch.Tensor:
    """KL(q || p) of Bernoulli probabilities ``[T, N, latent]`` with ``smooth`` inside
    the logs, summed over (t, c), mean over n."""
    kl = q_bar * torch.log((q_bar + smooth) / (p_bar + smooth)) \
        + (1 - q_bar) * torch.log((1 - q_bar + smooth) / (1 - p_bar + smooth))
    return kl.sum(dim=(0, 2)).mean()


def fsvae_loss(x: torch.Tensor, x_recon: torch.Tensor, q_out: torch.Tensor, p_out: torch.Tensor,
               distance: str = "mmd", tau_syn: float = 2.0, mmd_reduction: str = "mean",
               kld_weight: float = 1e-4) -> dict[str, torch.Tensor]:
    """``{"loss", "recon", "distance"}`` as the authors' ``loss_function_mmd``/``_kld``."""
    recon = F.mse_loss(x_recon, x)
    losses = prior_loss(q_out, p_out, distance, tau_syn, mmd_reduction, kld_weight)
    return {"loss": recon + losses["loss"], "recon": recon, "distance": losses["distance"]}


def prior_loss(q_out: torch.Tensor, p_out: torch.Tensor, distance: str = "mmd", tau_syn: float = 2.0,
               mmd_reduction: str = "mean", kld_weight: float = 1e-4) -> dict[str, torch.Tensor]:
    """``{"loss", "distance"}``: the prior-posterior term of :func:`fsvae_loss` for spikes
    ``[T, N, latent, k]`` (``loss`` is the distance as weighted in the FSVAE loss: the MMD as it is,
    the KL divergence times ``kld_weight``)."""
    q_bar, p_bar = q_out.mean(-1), p_out.mean(-1)
    if distance == "mmd":
        dist = mmd_loss(q_bar, p_bar, tau_syn, mmd_reduction)
        return {"loss": dist, "distance": dist}
    if distance == "kld":
        dist = bernoulli_kld(q_bar, p_bar)
        return {"loss": kld_weight * dist, "distance": dist}
    raise ConfigError(f"unknown distance {distance!r}; expected one of {DISTANCES}")


def gaussian_vae_loss(x: torch.Tensor, x_recon: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor,
                      kld_weight: float) -> dict[str, torch.Tensor]:
    """The ANN baseline: MSE + w * KL(N(mu, sigma) || N(0, 1)), KL summed over dims, mean over batch."""
    recon = F.mse_loss(x_recon, x)
    kld = torch.mean(-0.5 * torch.sum(1 + log_var - mu ** 2 - log_var.exp(), dim=1))
    return {"loss": recon + kld_weight * kld, "recon": recon, "distance": kld}
