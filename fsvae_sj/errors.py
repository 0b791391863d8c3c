"""The one base exception: everything fsvae-sj refuses on purpose is an :class:`FsvaeError`.

Each concrete error also derives from the built-in it stands for (``ValueError``,
``FileNotFoundError``, ...), so callers that caught those keep working. The
command-line tools print an ``FsvaeError`` as one line on stderr and exit with 2.
"""
from __future__ import annotations


class FsvaeError(Exception):
    """A refused input, a missing or corrupt file, a setting that cannot work: never a bug."""


class CheckpointError(FsvaeError, ValueError):
    """A file that is not a loadable checkpoint of ours, or weights that do not fit the architecture.
    (Here, not in ``checkpoint``: the registry that loads state strictly sits below that module.)"""


__all__ = ["CheckpointError", "FsvaeError"]
