"""One user at a time: a per-object lock for threads, a per-folder lock for processes.

FSVAE's neurons keep their membrane potentials in the modules between the time steps of a
call, so two threads running one model at once would mix each other's state: its public
methods take the model's lock (:func:`serialised`), and calls from several threads run one
after another, each with the result it would get alone. A folder that one process writes as a
whole (a training run, the zoo while publishing) is claimed with :func:`claim_folder`; a second
process is refused instead of interleaving its files with the first one's.
"""
from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from pathlib import Path

from .errors import FsvaeError

# Kept beside the objects, not in them: a lock cannot be deep-copied or pickled (the EMA
# deep-copies the model), and the entry goes when the object does.
_locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_guard = threading.Lock()


class FolderBusy(FsvaeError, RuntimeError):
    """Another process holds the folder (a training run, the zoo being published)."""


def lock_of(obj) -> threading.RLock:
    """The reentrant lock of ``obj`` (made on first use): nested calls of one thread pass."""
    with _guard:
        lock = _locks.get(obj)
        if lock is None:
            lock = _locks[obj] = threading.RLock()
        return lock


def serialised(method):
    """Decorate a method so that calls on one object run one at a time (other objects in parallel)."""
    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        with lock_of(self):
            return method(self, *args, **kwargs)
    return wrapped


@contextlib.contextmanager
def claim_folder(folder: Path, what: str):
    """Hold ``folder/.lock`` (an OS file lock: released when the process ends, even by kill -9)
    while the block runs; raises :class:`FolderBusy` at once if another process holds it.
    ``what`` says what the folder is, for the message."""
    from filelock import FileLock, Timeout
    lock = FileLock(str(Path(folder) / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise FolderBusy(f"{folder} is in use by another process ({what}; lock {lock.lock_file}); wait for it "
                         f"to finish or choose another folder") from None
    try:
        yield
    finally:
        lock.release()
