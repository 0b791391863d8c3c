"""Old address of :mod:`fsvae_sj.zoo.checkpoint`, kept for users (``load_model``: :func:`fsvae_sj.zoo.load`)."""
from .zoo import load_model
from .zoo.checkpoint import FORMAT, CheckpointError, read_checkpoint, read_config, read_metadata, save_model

__all__ = ["CheckpointError", "FORMAT", "load_model", "read_checkpoint", "read_config", "read_metadata", "save_model"]
