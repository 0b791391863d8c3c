"""Old address of :mod:`fsvae_sj.models.pretrained`, kept for users."""
from .models.pretrained import load_as, register_weights_loader

__all__ = ["load_as", "register_weights_loader"]
