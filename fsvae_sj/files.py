"""Files written whole or not at all, and their hashes (only ``errors`` below it: every layer uses it).

A write that fails (a full disk, a read-only folder) leaves nothing behind and raises a
:class:`~fsvae_sj.errors.WriteError` (an OSError)
that names the file it was writing (``[Errno 28] No space left on device: 'run/state.pt'``): the
operating system's own error names the temporary file or none.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path

from .errors import WriteError


def _new_file_mode(path: Path) -> int:
    """The mode a plain ``open(path, "w")`` would leave: an existing file's own mode,
    else 0o666 less the process's umask (mkstemp alone would give 0o600)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (os.umask can only be
    read by setting it, which would race with other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside ``path`` and rename it into place (a reader sees the
    old file or the new one, never a part); the file gets the mode ``open()`` would give.
    Raises OSError naming ``path`` (see the module's docstring)."""
    with atomic_writer(path) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike):
    """A binary file to write ``path`` piece by piece (memory flat in its size): it is a temporary
    beside ``path``, renamed into place when the block ends without error, else removed; as
    :func:`atomic_write_bytes` otherwise."""
    path = Path(path)
    with _staging(path) as (f, tmp):
        yield f
    try:
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise naming(e, path) from None


@contextlib.contextmanager
def _staging(path: Path):
    """``(file, its path)``: a temporary beside ``path`` (``.NAME.*.tmp``, with the mode ``open()``
    would give), synced to disk when the block ends; removed, with an OSError naming ``path``, if
    anything fails."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = _new_file_mode(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:   # the system names the folder or the temporary: name the target
        raise naming(e, path) from None
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            yield f, Path(tmp)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        # a failed write names no file (ENOSPC, EIO, ...); errors that name theirs, or are not the
        # system's (a caller's own, raised inside the block), pass as they are
        if isinstance(e, OSError) and e.filename is None and e.errno is not None:
            raise naming(e, path) from None
        raise


def _staged(path: Path, data: bytes) -> Path:
    """``data`` in a complete, synced temporary file beside ``path``, not yet renamed."""
    with _staging(path) as (f, tmp):
        f.write(data)
    return tmp


def naming(e: OSError, path: str | os.PathLike) -> WriteError:
    """``e`` as a :class:`~fsvae_sj.errors.WriteError` (same errno) with ``path`` as the file it was
    about, for messages."""
    if e.errno is None:
        return WriteError(f"cannot write {path}: {e}")
    return WriteError(e.errno, e.strerror or str(e), str(path))


@contextlib.contextmanager
def written_together():
    """Several files written as one: ``put(path, data)`` in the block stages each complete beside
    its target; when the block ends without error they are renamed into place in the order put (put
    last the file that makes the others visible), else every staged file is removed and no target
    has changed. A failure can then only fall between two renames of one directory."""
    staged: list[tuple[Path, Path]] = []

    def put(path: str | os.PathLike, data: bytes) -> None:
        staged.append((Path(path), _staged(Path(path), data)))
    try:
        yield put
        while staged:
            path, tmp = staged[0]
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise naming(e, path) from None
            staged.pop(0)
    finally:
        for _, tmp in staged:
            tmp.unlink(missing_ok=True)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporaries :func:`atomic_write_bytes` left in ``folder`` when its process was
    killed mid-write (``.NAME.*.tmp``); returns them. Only for a folder whose writer is this
    process (a claimed run folder): another writer's temporary would be taken from under it."""
    removed = []
    for p in Path(folder).glob(".*.tmp"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return sorted(removed)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
