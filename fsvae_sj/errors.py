"""The one base exception: everything fsvae-sj refuses on purpose is an :class:`FsvaeError`.

Each concrete error also derives from the built-in it stands for (``ValueError``,
``FileNotFoundError``, ...), so callers that caught those keep working. The
command-line tools print an ``FsvaeError`` as one line on stderr and exit with 2; anything else is
a bug and keeps its traceback.
What the package only warns about goes through :func:`warn`, which points at the user's line.
"""
from __future__ import annotations

import os
import sys
import warnings

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside fsvae_sj: the warning names the
    user's line that led here, not the package's (a fixed ``stacklevel`` cannot, since the depth
    differs by entry point). The command-line tools print it as one ``warning: ...`` line."""
    depth = 1
    frame = sys._getframe(depth)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        depth += 1
        frame = frame.f_back
    warnings.warn(message, category, stacklevel=depth + 1)


class FsvaeError(Exception):
    """A refused input, a missing or corrupt file, a setting that cannot work: never a bug."""


class CheckpointError(FsvaeError, ValueError):
    """A file that is not a loadable checkpoint of ours, or weights that do not fit the architecture.
    (Here, not in ``checkpoint``: the registry that loads state strictly sits below that module.)"""


class ConfigError(FsvaeError, ValueError):
    """A configuration that cannot describe a model, or a setting a module cannot take (an unknown
    LIF route, a surrogate width <= 0). (Here, not in ``config``: the spiking modules below it refuse
    their settings with it too.)"""


class InputError(FsvaeError, ValueError):
    """An argument a call cannot take: a tensor of the wrong shape or range, a membrane kept from
    another sequence, a negative seed, a count below 1."""


class StateError(FsvaeError, RuntimeError):
    """A call the module's present state cannot serve: sampling in training mode (tdBN would update
    its statistics), a route this installation lacks."""


class WriteError(FsvaeError, OSError):
    """A file that cannot be written (a full disk, a read-only folder): the message names the file
    (the system's own error names the temporary or none), ``errno`` is the system's."""


__all__ = ["CheckpointError", "ConfigError", "FsvaeError", "InputError", "StateError", "WriteError", "warn"]
