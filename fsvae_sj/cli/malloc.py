"""Run the command-line tools under tcmalloc when the machine has it.

FSVAE's CPU step allocates and frees tensors of 100+ MB many times per call;
glibc's malloc serves each from fresh mmap'd pages, so a large share of the time
goes to page faults (measured here: 40% system time). tcmalloc keeps the memory:
a training step at batch 64 took 1.5 s instead of 2.6 s and generating 64 images
0.31 s instead of 0.66 s (benchmarks/RESULTS.md). The CLIs re-execute
themselves once with ``LD_PRELOAD`` set; ``FSVAE_SJ_TCMALLOC=0`` turns this off.
(Debian/Ubuntu: ``apt-get install libtcmalloc-minimal4``.)
"""
from __future__ import annotations

import ctypes.util
import os
import sys
from pathlib import Path

_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")
_NAMES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")


def find_tcmalloc() -> str | None:
    for d in _DIRS:
        for n in _NAMES:
            if (Path(d) / n).is_file():
                return str(Path(d) / n)
    return ctypes.util.find_library("tcmalloc_minimal")


def reexec_with_tcmalloc() -> None:
    """Replace this process by the same command under tcmalloc (Linux, once, opt-out)."""
    if sys.platform != "linux" or os.environ.get("FSVAE_SJ_TCMALLOC", "1") == "0":
        return
    if "tcmalloc" in os.environ.get("LD_PRELOAD", ""):
        return
    lib = find_tcmalloc()
    if lib is None:
        return
    env = dict(os.environ, LD_PRELOAD=f"{lib} {os.environ.get('LD_PRELOAD', '')}".strip())
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)

