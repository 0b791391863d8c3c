"""Old address of :mod:`fsvae_sj.hub.checkpoint`, kept for users (``load_model``: :func:`fsvae_sj.zoo.load`)."""
from .hub.checkpoint import FORMAT, CheckpointError, read_checkpoint, read_config, read_metadata, save_model
from .zoo import load_model

__all__ = ["CheckpointError", "FORMAT", "load_model", "read_checkpoint", "read_config", "read_metadata", "save_model"]
