"""Old address of :mod:`fsvae_sj.models.ann`, kept for users."""
from .models.ann import ANNVAE

__all__ = ["ANNVAE"]
