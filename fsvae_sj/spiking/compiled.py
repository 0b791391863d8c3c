"""``torch.compile`` for the package's fused kernels (LIF, tdBN + LIF): one compiled function
per Python function, dynamic shapes, the recompile limit raised for the per-length versions,
and whether this machine can compile at all."""
from __future__ import annotations

import functools
import logging
import os
import shutil

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
    # dynamic=True: one kernel for every layer width M; each sequence length T compiles once
    # (the loop over T is unrolled). Inductor keeps compiled kernels in its on-disk cache,
    # so later processes load them in seconds.
    return torch.compile(fn, dynamic=True)


def run_compiled(fn, *args):
    """``fn(*args)`` through its one compiled version (compiled on first use)."""
    # A training step meets every length T = 1..n_steps (the posterior's prefix runs), more
    # than dynamo's default of 8 compiled versions per function; past the limit it would
    # silently run eager.
    limit = max(torch._dynamo.config.recompile_limit, 64)
    with torch._dynamo.config.patch(recompile_limit=limit):
        return _compiled(fn)(*args)


def can_compile(device: torch.device) -> bool:
    """Whether ``torch.compile`` can build kernels for ``device`` (Triton on CUDA, a C++ compiler on the CPU)."""
    if device.type == "cuda":
        return True  # Triton ships with CUDA builds of torch
    return any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "clang++", "c++"))
