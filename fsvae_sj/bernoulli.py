"""Old address of :mod:`fsvae_sj.models.bernoulli`, kept for users."""
from .models.bernoulli import LOOPS, BernoulliSampler, Posterior, Prior, draw_indices

__all__ = ["BernoulliSampler", "LOOPS", "Posterior", "Prior", "draw_indices"]
