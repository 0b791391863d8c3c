"""Old address of :mod:`fsvae_sj.models.losses`, kept for users."""
from .models.losses import (DISTANCES, MMD_REDUCTIONS, LossSettings, bernoulli_kld, fsvae_loss, gaussian_vae_loss,
                            mmd_loss, psp)

__all__ = ["DISTANCES", "LossSettings", "MMD_REDUCTIONS", "bernoulli_kld", "fsvae_loss", "gaussian_vae_loss",
           "mmd_loss", "psp"]
