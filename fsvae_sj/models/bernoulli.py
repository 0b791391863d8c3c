"""Autoregressive Bernoulli spike samplers: the posterior q (:class:`Posterior`) and the prior p
(:class:`Prior`), on one base that holds their layers and loop.

At step t the network emits ``latent * k`` spikes; for every latent channel c
one of its k outputs is chosen uniformly at random and becomes ``z_t[c]``
(output index ``c * k + j``). That samples Bernoulli(pi_t[c]) with pi the mean
of the k outputs.

Two ways to run an autoregressive loop:

* incremental, O(T): one step at a time with the LIF membranes kept. Valid
  whenever tdBN uses fixed statistics (eval mode), and used there.
* prefix, O(T^2): re-run the whole prefix from a fresh state at every step,
  like the authors' code. In training mode this is the algorithm itself (tdBN
  takes the prefix's batch statistics and updates its running stats each
  time); in eval mode it is the reference the incremental loop is tested against.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.profiler import record_function

from .. import seeding
from ..errors import ConfigError, InputError, StateError, warn
from ..spiking.layers import linear_block
from ..spiking.sj import reset_net

LOOPS = ("incremental", "prefix")


def draw_indices(shape: tuple[int, ...], k: int, generator: seeding.Generators,
                 device: torch.device) -> torch.Tensor:
    """Uniform choices in [0, k) of shape ``[N, ...]`` (:func:`fsvae_sj.seeding.randint`: one
    generator, or one per sample)."""
    with record_function("fsvae.seeding"):
        return seeding.randint(generator, k, shape[0], tuple(shape[1:]), device)


class _Sampler(nn.Module):
    """Three spiking linear layers (tdBN alpha = 2) emitting ``latent * k`` spikes per step, and
    the autoregressive loop both samplers run.

    ``cond_dim`` is the width of the conditioning input concatenated before
    ``z_{t-1}`` (the encoder spikes for q; 0 for p).
    """

    def __init__(self, cond_dim: int, cfg):
        super().__init__()
        L, k = cfg.latent_dim, cfg.k
        self.latent_dim, self.k, self.n_steps = L, k, cfg.n_steps
        self.cond_dim = cond_dim
        self.layers = nn.Sequential(
            linear_block(cond_dim + L, 2 * L, cfg, alpha=2.0),
            linear_block(2 * L, 4 * L, cfg, alpha=2.0),
            linear_block(4 * L, L * k, cfg, alpha=2.0),
        )

    def run(self, inputs: torch.Tensor) -> torch.Tensor:
        """The layers on a whole sequence from a fresh membrane state."""
        reset_net(self.layers)
        return self.layers(inputs)

    def pick(self, out: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """``out[..., c*k + idx[..., c]]``: the chosen spike of every channel."""
        grouped = out.view(*out.shape[:-1], self.latent_dim, self.k)
        return grouped.gather(-1, idx.unsqueeze(-1)).squeeze(-1)

    def probs(self, out: torch.Tensor) -> torch.Tensor:
        """Bernoulli probabilities pi = mean over the k outputs: ``[..., latent]``."""
        return out.view(*out.shape[:-1], self.latent_dim, self.k).mean(-1)

    def _inputs(self, cond: torch.Tensor | None, z_prev: torch.Tensor) -> torch.Tensor:
        return z_prev if cond is None else torch.cat([cond, z_prev], dim=-1)

    @torch.no_grad()
    def _loop(self, cond: torch.Tensor | None, n: int, steps: int, loop: str,
              generator: seeding.Generators, device) -> tuple[torch.Tensor, torch.Tensor, list]:
        """Autoregressive sampling of ``steps`` steps: returns (z [steps, N, L],
        out [steps, N, L*k], indices). ``cond`` is ``[>=steps, N, cond_dim]`` or None."""
        if loop not in LOOPS:
            raise ConfigError(f"unknown loop {loop!r}; expected one of {LOOPS}")
        dtype = self.layers[0].layer.weight.dtype
        # z_prev[t] is step t's input: zeros first, then each step's chosen spikes, written in
        # place (the loop reads a slice of it; no growing concatenation).
        z_prev = torch.zeros(steps + 1, n, self.latent_dim, device=device, dtype=dtype)
        outs, indices = [], []
        if loop == "incremental":
            reset_net(self.layers)
        for t in range(steps):
            if loop == "incremental":
                c = None if cond is None else cond[t:t + 1]
                out_t = self.layers(self._inputs(c, z_prev[t:t + 1]))[-1]
            else:
                c = None if cond is None else cond[:t + 1]
                out_t = self.run(self._inputs(c, z_prev[:t + 1]))[-1]
            # a sample's generator draws its steps' choices in order: the same values as all at once
            idx = draw_indices((n, self.latent_dim), self.k, generator, device)
            z_prev[t + 1] = self.pick(out_t, idx)
            outs.append(out_t)
            indices.append(idx)
        if not outs:  # T = 1: the training loop has no prefix steps
            return z_prev[1:], z_prev.new_zeros(0, n, self.latent_dim * self.k), indices
        return z_prev[1:], torch.stack(outs), indices


class Posterior(_Sampler):
    """q(z | x): the latent spike train given the encoder's spikes ``[T, N, latent]``."""

    def __init__(self, cfg):
        super().__init__(cfg.latent_dim, cfg)

    def sample(self, cond: torch.Tensor, generator: seeding.Generators = None,
               loop: str = "incremental") -> tuple[torch.Tensor, torch.Tensor]:
        """Sample z ~ q(z | x) given encoder spikes ``cond [T, N, cond_dim]``.

        Returns ``(z [T, N, L], out [T, N, L*k])``. In training mode this is the
        authors' procedure: choices from train-mode prefix runs without
        gradient, then one full pass with gradient whose spikes at the same
        choices become z, so the loss reaches encoder and posterior through them.
        Raises :class:`~fsvae_sj.errors.InputError` for per-sample generators in training mode.
        """
        T, n = cond.shape[0], cond.shape[1]
        if not self.training:
            return self._loop(cond, n, T, loop, generator, cond.device)[:2]
        if isinstance(generator, list):
            raise InputError("per-sample generators are for eval-mode sampling; training takes one generator")
        z_first, _, indices = self._loop(cond.detach(), n, T - 1, "prefix", generator, cond.device)
        z_prev = torch.cat([torch.zeros(1, n, self.latent_dim, device=cond.device), z_first], dim=0)
        out = self.run(self._inputs(cond, z_prev))
        indices.append(draw_indices((n, self.latent_dim), self.k, generator, cond.device))
        return self.pick(out, torch.stack(indices)), out


class Prior(_Sampler):
    """p(z): the latent spike train on its own, for generation, and its outputs for the posterior's
    z (teacher forcing) in training."""

    def __init__(self, cfg):
        super().__init__(0, cfg)

    def teacher_forced(self, z: torch.Tensor, scheduled_p: float = 0.0,
                       generator: torch.Generator | None = None, warmup: int = 5) -> torch.Tensor:
        """p's outputs ``[T, N, L*k]`` for the posterior's ``z [T, N, L]`` (teacher forcing).

        With ``scheduled_p > 0`` in training mode, from step ``warmup`` on each
        input ``z_t`` is replaced with probability ``scheduled_p`` by the prior's
        own guess (pi + 1e-3 noise > 0.5) from a prefix run.
        """
        z = z.detach()
        T, n = z.shape[0], z.shape[1]
        inputs = [torch.zeros(1, n, self.latent_dim, device=z.device, dtype=z.dtype)]
        if self.training and scheduled_p > 0:
            with torch.no_grad():
                for t in range(T - 1):
                    if t >= warmup and seeding.rand(generator, 1, (), z.device).item() < scheduled_p:
                        pi = self.probs(self.run(torch.cat(inputs, dim=0))[-1])
                        noise = seeding.randn(generator, n, (self.latent_dim,), pi.device)
                        inputs.append(((pi + 1e-3 * noise) > 0.5).to(z.dtype)[None])
                    else:
                        inputs.append(z[t:t + 1])
        else:
            inputs.append(z[:-1])
        return self.run(torch.cat(inputs, dim=0))

    @torch.no_grad()
    def teacher_forced_draw(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The prior's own draw at each step given the posterior's history: ``[T, N, L]`` spikes, step t
        one of the k outputs per latent (chosen as :meth:`generate` chooses) of the prior run on
        ``z[:t]`` (:meth:`teacher_forced`, without scheduled sampling), without gradient."""
        out = self.teacher_forced(z)
        return self.pick(out, draw_indices((z.shape[0], z.shape[1], self.latent_dim), self.k, generator, z.device))

    def free_running(self, n: int, steps: int, generator: torch.Generator | None = None,
                     device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` latent spike trains the prior draws on its own spikes, with gradient, for training:
        the trains are drawn as :meth:`generate` draws them (eval mode, running statistics, without
        gradient), then the layers run once over the whole sequence in the modes they were in on those
        inputs (zeros, then each step's drawn spikes), and the spikes at the same choices are returned.
        With tdBN in training mode its batch statistics, and so the running statistics it keeps, come
        from the prior's own trains over all steps; tdBN layers left in eval mode keep normalising with
        their running statistics (the training loop's ``prior_statistics="running"``: then the pass is
        the draw's own function). (Training-mode prefix runs, as the posterior draws, would feed tdBN a
        first step of zeros alone: no variance, and running statistics pulled towards it.)
        Returns ``(z [steps, n, L], out [steps, n, L*k])``; raises
        :class:`~fsvae_sj.errors.StateError` in eval mode (use :meth:`generate`)."""
        if not self.training:
            raise StateError("free_running() is training mode's draw; in eval mode call generate()")
        device = device if device is not None else next(self.parameters()).device
        modes = [(m, m.training) for m in self.modules()]
        self.eval()
        try:
            z, _, indices = self._loop(None, n, steps, "incremental", generator, device)
        finally:
            for m, training in modes:
                m.training = training
        out = self.run(torch.cat([torch.zeros_like(z[:1]), z[:-1]]))
        chosen = self.pick(out, torch.stack(indices))
        return chosen, out

    def generate(self, n: int, steps: int, generator: seeding.Generators = None,
                 loop: str = "incremental", device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``z ~ p(z)``: returns ``(z [steps, n, L], out [steps, n, L*k])``; raises
        :class:`~fsvae_sj.errors.StateError` in training mode."""
        if self.training:
            raise StateError("generate() needs eval mode (tdBN running statistics); call model.eval()")
        device = device if device is not None else next(self.parameters()).device
        return self._loop(None, n, steps, loop, generator, device)[:2]


class BernoulliSampler(_Sampler):
    """Deprecated: the one class that was both samplers; use :class:`Posterior` or :class:`Prior`."""

    def __init__(self, cond_dim: int, cfg):
        warn("BernoulliSampler is split into Posterior and Prior; build one of those", DeprecationWarning)
        super().__init__(cond_dim, cfg)

    posterior = Posterior.sample
    prior = Prior.teacher_forced
    generate = Prior.generate
