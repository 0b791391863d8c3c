"""What a name or a path given to a loader means: :func:`resolve` turns it into a verified local
file and its provenance, :class:`WeightsSource` (the first step of every load, before any model
class is involved).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import warn
from ..files import sha256_file
from .entries import Weights, ZooError, get_weights, looks_like_path
from .fetching import fetch


@dataclass(frozen=True)
class WeightsSource:
    """Where a loaded model's weights came from, for provenance lines: the name or path asked
    for and the verified file read (``model.weights_source`` after :func:`fsvae_sj.zoo.load` or
    ``from_pretrained``)."""

    name: str
    path: Path
    recorded_sha256: str | None = None   # the entry's, already checked by fetch()
    kind: str = "zoo entry"              # or "file": how the name was read (looks_like_path)

    @functools.cached_property
    def sha256(self) -> str:
        """The file's SHA-256: the entry's verified one, else hashed once, when first asked."""
        return self.recorded_sha256 or sha256_file(self.path)


def resolve(name_or_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
            offline: bool | None = None) -> tuple[WeightsSource, Weights | None]:
    """``(source, entry)``: the local file ``name_or_path`` names and, for a zoo name, its entry
    (None for a path). A path must look like one (:func:`looks_like_path`) and exist; a bare name
    is always a zoo entry, fetched and verified (:func:`fetch`, into ``cache_dir``, never over the
    network when ``offline``), and a file of that name in the working folder gets a warning saying
    it was not read. Raises :class:`ZooError` for a missing file, an unknown name (listing the
    valid ones) or a file that cannot be fetched or verified."""
    p = Path(name_or_path)
    if looks_like_path(name_or_path):
        if not p.is_file():
            raise ZooError(f"no file at {p}")
        return WeightsSource(str(name_or_path), p, kind="file"), None
    w = get_weights(str(name_or_path))
    if p.exists():
        warn(f"loading the zoo entry {name_or_path!r}; the file ./{p} in this folder was not read "
             f"(to load it, give it as a path: ./{p})")
    return WeightsSource(str(name_or_path), fetch(w, cache_dir, offline), w.sha256), w
