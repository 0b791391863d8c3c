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
# The reconstruction error a stage trains on: the paper's mean squared error, or the mean absolute
# error (whose optimum is each pixel's conditional median, not its mean: on images that the latent
# code leaves uncertain, an edge at one place or the other rather than a grey blend of both).
_RECON_ERRORS = {"mse": F.mse_loss, "l1": F.l1_loss}
RECON_LOSSES = tuple(_RECON_ERRORS)
# What a training step trains (fsvae_sj.training.config says more): the whole model ("full"); all
# but the prior, on the same loss ("autoencoder"); the decoder alone, on the reconstruction of the
# posterior's z ("decoder"); the prior alone, teacher-forced on the posterior's z ("prior"); the
# prior alone, drawing its own z, against the posterior's z as sets ("prior-free",
# :func:`latent_set_mmd`).
STAGES = ("full", "autoencoder", "decoder", "prior", "prior-free")
# What the "prior-free" stage's set MMD compares: the drawn spike trains, or the firing
# probabilities the trains are drawn from (the mean of each latent's k spikes: no Bernoulli noise,
# so on mnist at batch 256 the prior-posterior gap is 11.9 null sd against 4.6 for the trains, and
# 1.5 against 0.8 at 64; benchmarks/RESULTS.md, "What the set MMD sees"), or the images the frozen
# decoder makes of the trains (what the trains carry over time, as the decoder reads it: the
# prior's trains agree with the posterior's in rates and correlations yet decode worse;
# benchmarks/RESULTS.md, "What the samples lack now").
PRIOR_FREE_FEATURES = ("spikes", "probabilities", "images")


def prior_free_features(on: str) -> tuple[str, ...]:
    """The features a ``prior_free_on`` value names: one of :data:`PRIOR_FREE_FEATURES`, or several
    joined by ``+`` (e.g. ``"images+probabilities"``: the stage's loss is the sum of their MMDs, each
    with its own median bandwidth, so each term is on the same unitless scale). Raises ConfigError
    for an unknown or repeated feature."""
    names = tuple(str(on).split("+"))
    if any(n not in PRIOR_FREE_FEATURES for n in names) or len(set(names)) != len(names):
        raise ConfigError(f"prior_free_on must be one of {PRIOR_FREE_FEATURES} or several of them joined "
                          f"by '+', each once; got {on!r}")
    return names


@dataclass(frozen=True)
class LossSettings:
    """What a training step's ``model.loss(x, settings, generator)`` needs besides the batch.

    Each architecture reads its own fields: FSVAE ``scheduled_p`` (probability that the prior
    is fed its own guess), ``distance``, ``mmd_reduction``, ``stage`` (one of :data:`STAGES`; in
    the prior stages the loss is a prior-posterior distance alone, in "decoder" the reconstruction
    error alone, in "full" and "autoencoder" the FSVAE loss) and ``prior_free_on`` (one of
    :data:`PRIOR_FREE_FEATURES`: what the "prior-free" stage compares), ``decoder_prior_mix`` (the
    "decoder" stage's fraction of latents replaced by the prior's teacher-forced draws, in [0, 1]),
    ``recon_loss`` (the reconstruction error trained on, one of :data:`RECON_LOSSES`);
    the Gaussian ANN VAE ``batch_fraction``, the weight of its KL term (the authors' M/N: 1 / batches
    per epoch).
    """

    scheduled_p: float = 0.0
    distance: str = "mmd"
    mmd_reduction: str = "mean"
    batch_fraction: float = 1.0
    stage: str = "full"
    prior_free_on: str = "spikes"
    decoder_prior_mix: float = 0.0
    recon_loss: str = "mse"


def recon_error(x_recon: torch.Tensor, x: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """The reconstruction error of images ``[N, C, H, W]`` in [-1, 1], averaged over every pixel:
    ``"mse"`` (the paper's) or ``"l1"`` (:data:`RECON_LOSSES`). Raises ConfigError for another kind."""
    if kind not in _RECON_ERRORS:
        raise ConfigError(f"unknown reconstruction loss {kind!r}; expected one of {RECON_LOSSES}")
    return _RECON_ERRORS[kind](x_recon, x)


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
               kld_weight: float = 1e-4, recon_loss: str = "mse") -> dict[str, torch.Tensor]:
    """``{"loss", "recon", "distance"}`` as the authors' ``loss_function_mmd``/``_kld`` (with
    ``recon_loss="mse"``; :func:`recon_error` for the other)."""
    recon = recon_error(x_recon, x, recon_loss)
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


def set_mmd(a: torch.Tensor, b: torch.Tensor, scales: tuple[float, ...] = (0.5, 1.0, 2.0)) -> torch.Tensor:
    """Unbiased squared kernel MMD between two sets of vectors ``a [N, D]`` and ``b [M, D]`` (N, M >= 2).
    The kernel is a sum of Gaussians ``exp(-|u - v|^2 / (s * h))`` over ``scales`` s, with h the median
    squared distance between all the vectors (taken without gradient). Raises ConfigError for fewer
    than 2 vectors in a set. Gretton et al., "A Kernel Two-Sample Test", JMLR 2012 (the unbiased
    estimator, eq. 3)."""
    n, m = a.shape[0], b.shape[0]
    if n < 2 or m < 2:
        raise ConfigError(f"the set MMD needs at least 2 vectors per set, got {n} and {m}")
    x = torch.cat([a, b])
    sq = (x * x).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min(0)
    off = ~torch.eye(n + m, dtype=torch.bool, device=x.device)
    h = d2.detach()[off].median().clamp_min(1e-12)
    k = sum(torch.exp(-d2 / (s * h)) for s in scales)
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    return ((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
            + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)) - 2 * kxy.mean())


def latent_set_mmd(z_p: torch.Tensor, z_q: torch.Tensor, tau_syn: float = 2.0,
                   scales: tuple[float, ...] = (0.5, 1.0, 2.0)) -> torch.Tensor:
    """:func:`set_mmd` between two sets of latent spike trains (or firing probabilities in [0, 1])
    ``z_p [T, N, L]`` and ``z_q [T, M, L]`` (N, M >= 2), each train PSP-filtered over time and
    flattened to one vector per image. Unlike :func:`mmd_loss`, which compares each image's posterior
    with the prior run on that image's z, this compares what the two distributions draw, so it sees
    how much the trains vary across images."""
    return set_mmd(psp(z_p, tau_syn).transpose(0, 1).flatten(1), psp(z_q, tau_syn).transpose(0, 1).flatten(1),
                   scales)


def gaussian_vae_loss(x: torch.Tensor, x_recon: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor,
                      kld_weight: float) -> dict[str, torch.Tensor]:
    """The ANN baseline: MSE + w * KL(N(mu, sigma) || N(0, 1)), KL summed over dims, mean over batch."""
    recon = F.mse_loss(x_recon, x)
    kld = torch.mean(-0.5 * torch.sum(1 + log_var - mu ** 2 - log_var.exp(), dim=1))
    return {"loss": recon + kld_weight * kld, "recon": recon, "distance": kld}
