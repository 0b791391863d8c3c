"""``torch.compile`` for the package's fused kernels (LIF, tdBN + LIF): one compiled function
per Python function, dynamic shapes, the recompile limit raised for the per-length versions,
and whether this machine can compile at all."""
from __future__ import annotations

import functools
import logging
import subprocess
import tempfile
from pathlib import Path

import torch


@functools.cache
def _compiled(fn):
    # Inductor imports torch.utils.cpp_extension, which warns "No CUDA runtime is found" at
    # import on every CPU-only machine: a line on stderr that says nothing about our work.
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        import torch.utils.cpp_extension  # noqa: F401
    finally:
        log.setLevel(level)
    # A training step meets every length T = 1..n_steps (the posterior's prefix runs), more
    # than dynamo's default of 8 compiled versions per function; past the limit it would
    # silently run eager. Raised once for the process, not patched around each call: the
    # config is global, and threads patching and restoring it would undo each other's limit.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    # dynamic=True: one kernel for every layer width M; each sequence length T compiles once
    # (the loop over T is unrolled). Inductor keeps compiled kernels in its on-disk cache,
    # so later processes load them in seconds.
    return torch.compile(fn, dynamic=True)


def run_compiled(fn, *args):
    """``fn(*args)`` through its one compiled version (compiled on first use; the process's dynamo
    recompile limit is then raised to at least 64, one version per sequence length)."""
    return _compiled(fn)(*args)


def can_compile(device: torch.device) -> bool:
    """Whether ``torch.compile`` can build kernels for ``device``: Triton on CUDA; on the CPU, the
    C++ compiler inductor would use (``$CXX`` when torch was imported, else g++) must build a
    shared library (:func:`cpu_compiler_problem`)."""
    if device.type == "cuda":
        return True  # Triton ships with CUDA builds of torch
    return cpu_compiler_problem() is None


@functools.cache
def cpu_compiler_problem() -> str | None:
    """None if inductor's C++ compiler builds a shared library from a one-line source, else what
    went wrong. Probed once per process (a compiler that exists but does not work, such as ``CXX``
    pointing nowhere or a broken ``g++``, is found here instead of failing the first compiled call)."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
        cxx = get_cpp_compiler()   # inductor's own choice; raises when none runs
    except Exception as e:   # InvalidCxxCompiler and whatever a broken toolchain raises on import
        return f"no working C++ compiler ({type(e).__name__}: {e})".replace(" ()", "")
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "probe.cpp", Path(tmp) / "probe.so"
        src.write_text("extern \"C\" int fsvae_sj_probe(int x) { return x + 1; }\n")
        try:
            r = subprocess.run([cxx, "-shared", "-fPIC", "-O0", str(src), "-o", str(out)],
                               capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as e:
            return f"the C++ compiler {cxx} did not run ({e})"
        if r.returncode != 0 or not out.is_file():
            last = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
            return f"the C++ compiler {cxx} failed on a one-line program (exit {r.returncode}: {last[0]})"
    return None
