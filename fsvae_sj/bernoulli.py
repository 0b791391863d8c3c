"""Old address of :mod:`fsvae_sj.models.bernoulli`, kept for users."""
from .models.bernoulli import (BernoulliSampler, draw_indices, LOOPS)

__all__ = ["BernoulliSampler", "draw_indices", "LOOPS"]
