"""Old address of :mod:`fsvae_sj.models.config`, kept for users."""
from .models.config import ANNVAEConfig, ConfigError, FSVAEConfig, check_image_batch, parse_file, resolve

__all__ = ["ANNVAEConfig", "ConfigError", "FSVAEConfig", "check_image_batch", "parse_file", "resolve"]
