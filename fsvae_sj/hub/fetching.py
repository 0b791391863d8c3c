"""Files of zoo entries: found in ``zoo/`` (a clone) or the cache, else downloaded from the entry's
URLs into the cache (temporary file, size + hash check, atomic rename, under a file lock), and
verified against the entry's size and hashes. ``FSVAE_SJ_OFFLINE=1`` (read at call time) never
touches the network.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from ..files import naming, sha256_file
from . import entries
from .entries import Weights, ZooError, cache_dir

def is_offline(offline: bool | None) -> bool:
    return offline if offline is not None else os.environ.get("FSVAE_SJ_OFFLINE", "") not in ("", "0")


def git_blob_id(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def verify(w: Weights, path: Path) -> str | None:
    """None if ``path`` is the entry's file, else what is wrong."""
    size = path.stat().st_size
    if w.size is not None and size != w.size:
        return f"size {size} bytes, expected {w.size}"
    if w.git_blob is not None:
        got = git_blob_id(path)
        if got != w.git_blob:
            return f"git blob {got}, expected {w.git_blob}"
    if w.sha256 is not None:
        got = sha256_file(path)
        if got != w.sha256:
            return f"SHA-256 {got}, expected {w.sha256}"
    return None


def _placement_help(w: Weights, target: Path) -> str:
    url = w.urls[0] if w.urls else "(no download address: it ships in the repository's zoo/)"
    return (f"Download {url} by hand and place it at {target} (it is checked against "
            f"{'git blob ' + w.git_blob if w.git_blob else 'SHA-256 ' + str(w.sha256)} before use).")


def fetch(w: Weights, cache: str | os.PathLike | None = None, offline: bool | None = None) -> Path:
    """A verified local copy of the entry's file."""
    local = entries.ZOO_DIR / w.file_name
    if local.is_file():
        problem = verify(w, local)
        if problem:
            raise ZooError(f"{local} is corrupt ({problem}); restore it with `git checkout -- zoo/{w.file_name}`")
        return local
    target = cache_dir(cache) / w.file_name
    if target.is_file():
        problem = verify(w, target)
        if problem is None:
            return target
        again = "Delete it to download again. " if w.urls else ""
        raise ZooError(f"cached file {target} is corrupt or truncated ({problem}); it was not loaded. "
                       + again + _placement_help(w, target))
    if not w.urls:
        raise ZooError(f"{w.name}: not in the zoo folder {entries.ZOO_DIR} nor in the cache {target}, and it has no "
                       f"download address. " + _placement_help(w, target))
    if is_offline(offline):
        raise ZooError(f"{w.name}: not in the repository's zoo/ nor in the cache {target}, and offline mode is on "
                       f"(FSVAE_SJ_OFFLINE=1 or offline=True). " + _placement_help(w, target))
    return _download(w, target)


def _download(w: Weights, target: Path) -> Path:
    from filelock import FileLock
    lock = Path(str(target) + ".lock")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(lock)):
            return _download_locked(w, target)
    except OSError as e:   # the cache folder cannot be made or written (read-only, full)
        raise ZooError(f"{w.name}: cannot write the cache {target.parent} ({e}); set FSVAE_SJ_HOME to a writable "
                       f"folder (or pass cache_dir=). " + _placement_help(w, target)) from None
    finally:
        with contextlib.suppress(OSError):   # (none made when the folder could not be)
            lock.unlink(missing_ok=True)   # nothing left behind in the cache


def _download_locked(w: Weights, target: Path) -> Path:
    from tqdm import tqdm
    if target.is_file() and verify(w, target) is None:  # another process finished it
        return target
    for stale in target.parent.glob(f".{target.name}.*.part"):   # a download killed midway (we hold the lock)
        stale.unlink(missing_ok=True)
    errors = []
    for url in w.urls:
        tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
        try:
            with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
                total = int(r.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=w.file_name) as bar:
                    for block in iter(lambda: r.read(1 << 20), b""):
                        f.write(block)
                        bar.update(len(block))
            problem = verify(w, tmp)
            if problem:
                errors.append(f"{url}: {problem}")
                continue
            os.replace(tmp, target)
            return target
        except OSError as e:   # the network's errors, or writing the part (named: ENOSPC names no file)
            errors.append(f"{url}: {e if e.filename or isinstance(e, urllib.error.URLError) else naming(e, tmp)}")
        finally:
            tmp.unlink(missing_ok=True)
    raise ZooError(f"could not fetch {w.name}: " + "; ".join(errors) + ". " + _placement_help(w, target))
