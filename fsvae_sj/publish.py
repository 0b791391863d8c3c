"""Old address of :mod:`fsvae_sj.zoo.publish`, kept for users."""
from .zoo.publish import (MIN_SAMPLE_STD, WEIGHTS_LABELS, PublishRefused, afd_projection, card_files,
                          learning_curve_of, publish, sample_spread, write_card)

__all__ = ["MIN_SAMPLE_STD", "PublishRefused", "WEIGHTS_LABELS", "afd_projection", "card_files", "learning_curve_of",
           "publish", "sample_spread", "write_card"]
