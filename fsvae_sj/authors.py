"""Old address of :mod:`fsvae_sj.zoo.authors`, kept for users."""
from .zoo.authors import check_fixture, convert_state_dict, infer_config, load_authors_checkpoint

__all__ = ["check_fixture", "convert_state_dict", "infer_config", "load_authors_checkpoint"]
