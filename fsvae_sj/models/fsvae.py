"""FSVAE (and :func:`fsvae_large`, the authors' CelebA architecture) on the spiking wing, time-first
``[T, N, ...]``."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function

from .. import seeding
from ..spiking.sj import reset_net
from .bernoulli import LOOPS, Posterior, Prior
from .config import ConfigError, FSVAEConfig, check_image_batch, resolve
from ..errors import InputError, StateError, warn
from ..spiking.layers import conv_block, conv_input, deconv_block, empty_for_conv, linear_block
from ..locks import serialised
from .losses import (PRIOR_FREE_FEATURES, LossSettings, fsvae_loss, latent_set_mmd, prior_free_features, prior_loss,
                     recon_error, set_mmd)
from .pretrained import PretrainedMixin


class FSVAEOutput(NamedTuple):
    x_recon: torch.Tensor   # [N, C, H, W] in [-1, 1]
    q_out: torch.Tensor     # [T, N, latent, k] posterior spikes
    p_out: torch.Tensor     # [T, N, latent, k] prior spikes
    z: torch.Tensor         # [T, N, latent] sampled latent spike train


class _TimeWeightedSum(torch.autograd.Function):
    """``sum_t coef[t] * spikes[t]`` of ``spikes [T, N, C, H, W]``, accumulated step by step in
    place into a buffer in the convolutions' memory format; backward writes ``coef[t] * grad``
    once into a gradient laid out in memory like ``spikes``. Left to autograd, the in-place
    sum's backward zero-fills a whole
    ``[T, N, ...]`` gradient per step and adds them up: in a batch-64 training step 17 fills and
    15 additions of the step's largest tensor, ~130 ms, against ~22 ms for the one write.
    Keeps no tensor but ``coef`` for backward."""

    @staticmethod
    def forward(ctx, spikes, coef):
        ctx.save_for_backward(coef)
        # memory order of spikes' dims, outermost first: the gradient gets the same layout,
        # so the LIF's backward reads it without a copy
        ctx.order = sorted(range(spikes.dim()), key=lambda d: -spikes.stride(d))
        ctx.shape = spikes.shape
        # The buffer in the layout the spikes arrive in (the convolutions'): every addition is
        # one vectorised pass (into NCHW it was a strided one, 4x slower), and the read-out
        # convolution reads it without a copy.
        weighted = empty_for_conv(spikes.shape[1:], spikes)
        torch.mul(spikes[0], coef[0], out=weighted)
        for t in range(1, spikes.shape[0]):
            weighted.add_(spikes[t], alpha=float(coef[t]))
        return weighted

    @staticmethod
    def backward(ctx, grad):
        (coef,) = ctx.saved_tensors
        order = ctx.order
        dense = grad.new_empty([ctx.shape[d] for d in order])
        grad_spikes = dense.permute([order.index(d) for d in range(len(order))])
        torch.mul(grad.unsqueeze(0), coef.view(-1, *(1,) * grad.dim()), out=grad_spikes)
        return grad_spikes, None


class FSVAE(PretrainedMixin, nn.Module):
    """Fully Spiking VAE (Kamata et al., AAAI 2022).

    ``FSVAE(FSVAEConfig(...))``; ``fsvae_large()`` gives the authors' 64x64 model;
    ``FSVAE.from_pretrained("fashion-mnist")`` a zoo model (:class:`PretrainedMixin`).
    Images are ``[N, C, H, W]`` in [-1, 1]; the analog image is fed at every one
    of the T steps (direct encoding).

    ``loop`` chooses how eval-mode autoregressive sampling runs:
    ``"incremental"`` (O(T), default) or ``"prefix"`` (the authors' O(T^2) reference).

    Threads: the neurons keep their membrane potentials in the modules during a call, so
    ``encode``, ``decode``, ``forward`` (and ``loss``), ``sample`` and ``reconstruct`` take the
    model's lock (:mod:`fsvae_sj.locks`): calls from several threads on one model run one at a
    time, each with the result it gets alone; separate models run in parallel.
    """

    config_class = FSVAEConfig

    def __init__(self, config: FSVAEConfig | None = None, **overrides):
        super().__init__()
        self.config = cfg = resolve(FSVAEConfig, config, overrides)
        self.loop = "incremental"
        dims = list(cfg.hidden_dims)
        c_last = dims[-1]

        enc, c_in = [], cfg.in_channels
        for h in dims:
            enc.append(conv_block(c_in, h, cfg))
            c_in = h
        self.encoder = nn.Sequential(*enc)
        self.before_latent_layer = linear_block(4 * c_last, cfg.latent_dim, cfg)

        self.posterior = Posterior(cfg)
        self.prior = Prior(cfg)

        self.decoder_input = linear_block(cfg.latent_dim, 4 * c_last, cfg)
        rev = dims[::-1]
        self.decoder = nn.Sequential(*[deconv_block(rev[i], rev[i + 1], cfg) for i in range(len(rev) - 1)])
        self.final_layer = nn.Sequential(
            deconv_block(rev[-1], rev[-1], cfg),
            nn.ConvTranspose2d(rev[-1], cfg.in_channels, 3, stride=1, padding=1),
        )

    # -- shapes and input checks -------------------------------------------------
    def check_latents(self, z: torch.Tensor) -> None:
        cfg = self.config
        if z.dim() != 3 or z.shape[0] != cfg.n_steps or z.shape[2] != cfg.latent_dim:
            raise InputError(f"expected latent spikes of shape [T={cfg.n_steps}, N, {cfg.latent_dim}], "
                             f"got {tuple(z.shape)}")
        if not bool(((z == 0) | (z == 1)).all()):
            raise InputError("latent input to the decoder must be spikes (only 0 and 1)")

    # -- the three parts -----------------------------------------------------------
    @serialised
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder spike train ``[T, N, latent]`` of images ``[N, C, H, W]``."""
        check_image_batch(x, self.config, self.encoder[0].layer.weight.dtype)
        reset_net(self.encoder)
        reset_net(self.before_latent_layer)
        T = self.config.n_steps
        first, rest = self.encoder[0], self.encoder[1:]
        # Direct encoding feeds the same image at every step: convolve it once.
        # conv_input twice: with one input channel the layout of the convolution's output is
        # oneDNN's choice (NCHW here); the blocks' fused kernels want the convolutions' format.
        cur = conv_input(first.layer(conv_input(x)))
        cur = first.fire(cur.unsqueeze(0).expand(T, *cur.shape))  # not owned: every step is one tensor
        cur = rest(cur)
        return self.before_latent_layer(cur.flatten(2))

    @serialised
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``[N, C, H, W]`` (tanh of the membrane read-out) from spikes ``[T, N, latent]``."""
        self.check_latents(z)
        for part in (self.decoder_input, self.decoder, self.final_layer):
            reset_net(part)
        c_last = self.config.hidden_dims[-1]
        with record_function("fsvae.decoder"):
            h = self.decoder_input(z)
            h = h.view(h.shape[0], h.shape[1], c_last, 2, 2)
            spikes = self.final_layer[0](self.decoder(h))
        with record_function("fsvae.readout"):
            return torch.tanh(self.readout(spikes))

    def readout_coefficients(self, T: int, device=None) -> torch.Tensor:
        """``decay^(T-1-t)``: the non-firing integrator's weight of step t."""
        return torch.pow(self.config.readout_decay, torch.arange(T - 1, -1, -1, device=device))

    def readout(self, spikes: torch.Tensor) -> torch.Tensor:
        """The last transposed conv integrated over time: ``sum_t c_t * conv(s_t)``.

        The conv is affine and the integrator linear, so it runs once on the
        time-weighted spikes: ``conv_W(sum_t c_t s_t) + b * sum_t c_t`` (T times
        fewer operations; equal up to float rounding, after the last spike).
        """
        conv = self.final_layer[1]
        coef = self.readout_coefficients(spikes.shape[0], spikes.device).to(spikes.dtype)
        # sum_t c_t s_t accumulated step by step in place: a tenth of the time of a broadcast
        # multiply and a sum over t on the CPU, and every image's sum in the same order whatever
        # the batch (a [T] x [T, M] matrix product is as fast but rounds by batch size).
        weighted = _TimeWeightedSum.apply(spikes, coef)
        out = F.conv_transpose2d(weighted, conv.weight, None, conv.stride, conv.padding,
                                 conv.output_padding, conv.groups, conv.dilation)
        return out + conv.bias.view(1, -1, 1, 1) * coef.sum()

    # -- training forward, sampling, reconstruction -----------------------------------
    @serialised
    def forward(self, x: torch.Tensor, scheduled_p: float = 0.0,
                generator: torch.Generator | None = None) -> FSVAEOutput:
        """Encode, sample z from q, run p on z (scheduled sampling in training), decode."""
        enc = self.encode(x)
        z, q_out = self.posterior.sample(enc, generator, loop=self.loop)
        p_out = self.prior.teacher_forced(z, scheduled_p, generator)
        x_recon = self.decode(z)
        L, k = self.config.latent_dim, self.config.k
        return FSVAEOutput(x_recon, q_out.view(*q_out.shape[:2], L, k), p_out.view(*p_out.shape[:2], L, k), z)

    @serialised
    def prior_forward(self, x: torch.Tensor, scheduled_p: float = 0.0,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The prior stage's forward: ``(q_out, p_out)``, posterior and prior spikes ``[T, N, latent, k]``
        of images ``x``. Encoder and posterior run without gradient (in the prior stages they are
        frozen in eval mode, so z is drawn as :meth:`reconstruct` draws it); the prior runs on z
        as in :meth:`forward`, with the same draws from ``generator``; the decoder does not run."""
        z, q_out = self._posterior_z(x, generator)
        p_out = self.prior.teacher_forced(z, scheduled_p, generator)
        L, k = self.config.latent_dim, self.config.k
        return q_out.view(*q_out.shape[:2], L, k), p_out.view(*p_out.shape[:2], L, k)

    @serialised
    def free_prior_forward(self, x: torch.Tensor, generator: torch.Generator | None = None,
                           on: str = "spikes") -> tuple[torch.Tensor, torch.Tensor]:
        """The free-running prior stage's forward: ``(q, p)``, the posterior's for images ``x`` (without
        gradient, as in :meth:`prior_forward`) and as many drawn by the prior on its own spikes in
        training mode, with gradient (:meth:`Prior.free_running`). ``on`` ``"spikes"``: the latent
        spike trains ``[T, N, latent]``; ``"probabilities"``: the firing probabilities they were drawn
        from (each latent's mean over its k spikes), ``[T, N, latent]``; ``"images"``: the decoder's
        images of the trains ``[N, C, H, W]`` (decoder frozen; the prior's gradient passes the drawn
        spikes straight through to their probabilities: Bengio et al. 2013, "Estimating or
        Propagating Gradients Through Stochastic Neurons"). Raises ConfigError for another ``on``
        (several features of one draw: :meth:`free_prior_features`)."""
        if on not in PRIOR_FREE_FEATURES:
            raise ConfigError(f"on must be one of {PRIOR_FREE_FEATURES}, got {on!r}")
        return self.free_prior_features(x, generator, on)[on]

    @serialised
    def free_prior_features(self, x: torch.Tensor, generator: torch.Generator | None = None,
                            on: str = "spikes") -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{feature: (q, p)}`` for each feature ``on`` names (:func:`~fsvae_sj.models.losses.prior_free_features`,
        e.g. ``"images+probabilities"``), in that order, all of one posterior draw and one free-running
        prior draw: each ``(q, p)`` as :meth:`free_prior_forward` gives it for that feature alone with
        the same ``generator``. Raises ConfigError for an unknown or repeated feature."""
        names = prior_free_features(on)
        z_q, out_q = self._posterior_z(x, generator)
        z_p, out_p = self.prior.free_running(z_q.shape[1], z_q.shape[0], generator, device=z_q.device)
        features = {"spikes": (z_q, z_p)}
        if "probabilities" in names or "images" in names:
            pi_p = self.prior.probs(out_p)
            features["probabilities"] = (self.posterior.probs(out_q), pi_p)
        if "images" in names:
            with torch.no_grad():
                x_q = self.decode(z_q)
            features["images"] = (x_q, self.decode(z_p.detach() + (pi_p - pi_p.detach())))
        return {name: features[name] for name in names}

    def _mix_prior_draws(self, z: torch.Tensor, mix: float, generator) -> torch.Tensor:
        """``z [T, N, L]`` with each latent of each step replaced, with probability ``mix``, by the
        prior's own draw given the posterior's history (:meth:`Prior.teacher_forced_draw`): the
        decoder stage's inputs then carry the errors the prior makes when it generates, and the
        decoder learns to map them to the image (the ``decoder_prior_mix`` of the decoder stage)."""
        z_p = self.prior.teacher_forced_draw(z, generator)
        T, n, L = z.shape
        replace = seeding.rand(generator, T, (n, L), z.device, z.dtype) < mix
        return torch.where(replace, z_p, z)

    def _posterior_z(self, x: torch.Tensor, generator) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return self.posterior.sample(self.encode(x), generator, loop=self.loop)

    def loss(self, x: torch.Tensor, settings: LossSettings = LossSettings(),
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """A training step's losses for images ``x [N, C, H, W]``: ``{"loss", "recon", "distance",
        "mean_q", "mean_p"}`` (scalars; ``loss`` is what to back-propagate), as the authors'
        ``loss_function_mmd`` / ``_kld`` with the scheduled sampling of ``settings``. In the prior
        stages (``settings.stage``) ``loss`` is a distance alone and there is no ``recon``; in the
        ``"decoder"`` stage ``loss`` is ``recon`` alone, of z drawn as :meth:`reconstruct` draws it
        (encoder and posterior frozen in eval mode), each latent replaced with probability
        ``settings.decoder_prior_mix`` by the prior's teacher-forced draw (the prior runs only then);
        in the prior stages: ``"prior"`` the teacher-forced distance (:meth:`prior_forward`), ``"prior-free"`` the kernel
        MMD between the prior's own trains (or firing probabilities, or their images, or the sum of
        several of these MMDs: ``settings.prior_free_on``) and the posterior's (:meth:`free_prior_features`,
        :func:`~fsvae_sj.models.losses.latent_set_mmd`, for images :func:`~fsvae_sj.models.losses.set_mmd`
        of the flattened images; ``mean_q``/``mean_p`` are then the two sets' means of the first feature
        named: firing rates, or pixel values)."""
        if settings.stage == "prior-free":
            features = self.free_prior_features(x, generator, settings.prior_free_on)
            dist = sum(set_mmd(p.flatten(1), q.flatten(1)) if name == "images" else latent_set_mmd(p, q)
                       for name, (q, p) in features.items())
            q, p = next(iter(features.values()))
            return {"loss": dist, "distance": dist, "mean_q": q.mean(), "mean_p": p.detach().mean()}
        if settings.stage == "decoder":
            z, q_out = self._posterior_z(x, generator)
            if settings.decoder_prior_mix > 0:
                z = self._mix_prior_draws(z, settings.decoder_prior_mix, generator)
            recon = recon_error(self.decode(z), x, settings.recon_loss)
            return {"loss": recon, "recon": recon, "mean_q": q_out.mean()}
        if settings.stage == "prior":
            q_out, p_out = self.prior_forward(x, settings.scheduled_p, generator)
            losses = prior_loss(q_out, p_out, settings.distance, mmd_reduction=settings.mmd_reduction)
        else:
            out = self(x, settings.scheduled_p, generator)
            q_out, p_out = out.q_out, out.p_out
            losses = fsvae_loss(x, out.x_recon, q_out, p_out, settings.distance,
                                mmd_reduction=settings.mmd_reduction, recon_loss=settings.recon_loss)
        losses["mean_q"] = q_out.detach().mean()
        losses["mean_p"] = p_out.detach().mean()
        return losses

    @torch.no_grad()
    @serialised
    def sample(self, n: int, *, generator: seeding.Generators = None, seed: int | None = None,
               return_latents: bool = False):
        """``n`` images ``[n, C, H, W]`` in [-1, 1] from the prior (eval mode); with
        ``return_latents`` also their spike trains ``[T, n, latent]``.

        ``seed``: image i depends only on (seed, i), whatever the batch size or device
        (per-sample CPU generators, :mod:`fsvae_sj.seeding`); ``generator``: a list of
        one generator per image (the same guarantee), or one generator for the batch.
        Raises ValueError for n < 1, RuntimeError in training mode. In a ``torch.profiler``
        trace the phases show as ``fsvae.seeding``, ``fsvae.prior``, ``fsvae.decoder`` and
        ``fsvae.readout`` (benchmarks/sample_phases.py)."""
        if int(n) < 1:
            raise InputError(f"n must be >= 1, got {n}")
        if self.training:
            raise StateError("sample() needs eval mode; call model.eval() first")
        device = next(self.parameters()).device
        with record_function("fsvae.seeding"):
            g = seeding.resolve(seed, generator, int(n))
        with record_function("fsvae.prior"):
            z, _ = self.prior.generate(int(n), self.config.n_steps, g, loop=self.loop, device=device)
        images = self.decode(z)
        return (images, z) if return_latents else images

    @torch.no_grad()
    @serialised
    def reconstruct(self, x: torch.Tensor, *, generator: seeding.Generators = None,
                    seed: int | None = None) -> torch.Tensor:
        """Eval-mode reconstructions ``[N, C, H, W]`` of images ``[N, C, H, W]`` in [-1, 1];
        ``seed`` and ``generator`` as in :meth:`sample` (image i's posterior draws depend
        only on (seed, i))."""
        if self.training:
            raise StateError("reconstruct() needs eval mode (training mode updates tdBN statistics); "
                               "call model.eval() first")
        g = seeding.resolve(seed, generator, x.shape[0])
        return self(x, generator=g).x_recon

    def set_loop(self, loop: str) -> "FSVAE":
        if loop not in LOOPS:
            raise ConfigError(f"unknown loop {loop!r}; expected one of {LOOPS}")
        self.loop = loop
        return self


def fsvae_large(config: FSVAEConfig | None = None, **overrides) -> FSVAE:
    """An :class:`FSVAE` of the authors' ``FSVAELarge`` architecture (64x64 input, channels
    32..512, as for CelebA: :meth:`FSVAEConfig.large`) unless ``config`` says otherwise;
    ``overrides`` as for :class:`FSVAE`."""
    return FSVAE(config if config is not None else FSVAEConfig.large(), **overrides)


def FSVAELarge(config: FSVAEConfig | None = None, **overrides) -> FSVAE:  # noqa: N802 (the old class-like name)
    """Deprecated spelling of :func:`fsvae_large` (it builds an :class:`FSVAE`; there is no such class)."""
    warn("FSVAELarge is a function building an FSVAE; call fsvae_large instead", DeprecationWarning)
    return fsvae_large(config, **overrides)
