"""The paper's ANN baseline: a Gaussian VAE with FSVAE's conv stack."""
from __future__ import annotations

import torch
from torch import nn

from .config import ANNVAEConfig, check_image_batch, resolve
from .model import make_generator


def _act(c: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(c), nn.LeakyReLU(0.01)]


class ANNVAE(nn.Module):
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
        check_image_batch(x, self.config)
        h = self.encoder(x).flatten(1)
        return self.fc_mu(h), self.fc_var(h)

    def decode(self, z):
        h = self.decoder_input(z).view(z.shape[0], self.config.hidden_dims[-1], 2, 2)
        return self.final_layer(self.decoder(h))

    def forward(self, x, generator: torch.Generator | None = None):
        mu, log_var = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator,
                          device=generator.device if generator is not None else "cpu").to(mu.device)
        z = eps * torch.exp(0.5 * log_var) + mu
        return self.decode(z), mu, log_var

    @torch.no_grad()
    def sample(self, n: int, *, generator=None, seed=None, return_latents=False):
        if int(n) < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        device = next(self.parameters()).device
        g = make_generator(seed, generator, device)
        z = torch.randn(int(n), self.config.latent_dim, generator=g, device=device)
        images = self.decode(z)
        return (images, z) if return_latents else images

    @torch.no_grad()
    def reconstruct(self, x, *, generator=None, seed=None):
        g = make_generator(seed, generator, x.device)
        return self(x, generator=g)[0]
