"""The paper's ANN baseline: a Gaussian VAE with FSVAE's conv stack."""
from __future__ import annotations

import torch
from torch import nn

from .. import seeding
from .config import ANNVAEConfig, check_image_batch, resolve
from ..errors import InputError, StateError
from .losses import LossSettings, gaussian_vae_loss
from .pretrained import PretrainedMixin


def _act(c: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(c), nn.LeakyReLU(0.01)]


class ANNVAE(PretrainedMixin, nn.Module):
    """The paper's ANN baseline. Keeps no state between calls: in eval mode several threads may
    call ``sample`` and ``reconstruct`` on one model at once (training mode updates BatchNorm).
    ``ANNVAE.from_pretrained("mnist-ann")``: a zoo model (:class:`PretrainedMixin`)."""

    config_class = ANNVAEConfig

    def __init__(self, config: ANNVAEConfig | None = None, **overrides):
        super().__init__()
        self.config = cfg = resolve(ANNVAEConfig, config, overrides)
        dims = list(cfg.hidden_dims)
        enc, c_in = [], cfg.in_channels
        for h in dims:
            enc.append(nn.Sequential(nn.Conv2d(c_in, h, 3, stride=2, padding=1), *_act(h)))
            c_in = h
        self.encoder = nn.Sequential(*enc)
        self.fc_mu = nn.Linear(4 * dims[-1], cfg.latent_dim)
        self.fc_var = nn.Linear(4 * dims[-1], cfg.latent_dim)
        self.decoder_input = nn.Linear(cfg.latent_dim, 4 * dims[-1])
        rev = dims[::-1]
        self.decoder = nn.Sequential(*[
            nn.Sequential(nn.ConvTranspose2d(rev[i], rev[i + 1], 3, stride=2, padding=1, output_padding=1),
                          *_act(rev[i + 1]))
            for i in range(len(rev) - 1)])
        self.final_layer = nn.Sequential(
            nn.ConvTranspose2d(rev[-1], rev[-1], 3, stride=2, padding=1, output_padding=1), *_act(rev[-1]),
            nn.ConvTranspose2d(rev[-1], cfg.in_channels, 3, padding=1), nn.Tanh())

    def encode(self, x):
        check_image_batch(x, self.config, self.fc_mu.weight.dtype)
        h = self.encoder(x).flatten(1)
        return self.fc_mu(h), self.fc_var(h)

    def decode(self, z):
        h = self.decoder_input(z).view(z.shape[0], self.config.hidden_dims[-1], 2, 2)
        return self.final_layer(self.decoder(h))

    def forward(self, x, generator: seeding.Generators = None):
        mu, log_var = self.encode(x)
        eps = seeding.randn(generator, mu.shape[0], tuple(mu.shape[1:]), mu.device, mu.dtype)
        z = eps * torch.exp(0.5 * log_var) + mu
        return self.decode(z), mu, log_var

    def loss(self, x: torch.Tensor, settings: LossSettings = LossSettings(),
             generator: seeding.Generators = None) -> dict[str, torch.Tensor]:
        """A training step's losses ``{"loss", "recon", "distance"}`` for images ``x [N, C, H, W]``:
        MSE + ``settings.batch_fraction`` * KL(q || N(0, I))."""
        recon, mu, log_var = self(x, generator)
        return gaussian_vae_loss(x, recon, mu, log_var, kld_weight=settings.batch_fraction)

    def _check_eval(self, what: str) -> None:
        if self.training:
            raise StateError(f"{what}() needs eval mode (training mode updates BatchNorm statistics); "
                               f"call model.eval() first")

    @torch.no_grad()
    def sample(self, n: int, *, generator: seeding.Generators = None, seed: int | None = None,
               return_latents: bool = False):
        """``n`` images ``[n, C, H, W]`` in [-1, 1] from z ~ N(0, I) (eval mode); seeds and
        generators as in :meth:`fsvae_sj.FSVAE.sample` (image i depends only on (seed, i))."""
        if int(n) < 1:
            raise InputError(f"n must be >= 1, got {n}")
        self._check_eval("sample")
        p = next(self.parameters())
        g = seeding.resolve(seed, generator, int(n))
        z = seeding.randn(g, int(n), (self.config.latent_dim,), p.device, p.dtype)
        images = self.decode(z)
        return (images, z) if return_latents else images

    @torch.no_grad()
    def reconstruct(self, x, *, generator: seeding.Generators = None, seed: int | None = None):
        """Eval-mode reconstructions ``[N, C, H, W]`` (one posterior draw per image)."""
        self._check_eval("reconstruct")
        return self(x, generator=seeding.resolve(seed, generator, x.shape[0]))[0]
