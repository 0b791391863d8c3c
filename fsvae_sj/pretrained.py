"""Old address of :mod:`fsvae_sj.models.pretrained`, kept for users."""
from .models.pretrained import PretrainedMixin, load_pretrained

__all__ = ["PretrainedMixin", "load_pretrained"]
