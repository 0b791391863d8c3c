"""Old address of :mod:`fsvae_sj.models.fsvae` and :mod:`fsvae_sj.models.registry`, kept for users."""
from .models.fsvae import FSVAE, FSVAELarge, FSVAEOutput, fsvae_large
from .models.registry import (ARCHITECTURES, Architecture, architecture, build_model, check_state, config_from_dict,
                              load_state_strict)

__all__ = ["ARCHITECTURES", "Architecture", "FSVAE", "FSVAELarge", "FSVAEOutput", "architecture", "build_model",
           "check_state", "config_from_dict", "fsvae_large", "load_state_strict"]
