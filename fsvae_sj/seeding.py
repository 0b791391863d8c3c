"""Per-sample random streams: image i of a seeded call depends only on ``(seed, i)``.

As in diffusers, every sample gets its own CPU generator, so the images do not change
with the batch size, the batch split or the device. The i-th generator of ``seed`` is
seeded by NumPy's ``SeedSequence((seed, i))``: streams of different (seed, i) pairs are
independent, and seed 1 is not seed 0 shifted by one image.
"""
from __future__ import annotations

import numpy as np
import torch

from .errors import InputError

Generators = torch.Generator | list[torch.Generator] | None


def sample_generators(seed: int, n: int, start: int = 0) -> list[torch.Generator]:
    """CPU generators for samples ``start .. start + n - 1`` of ``seed``."""
    if int(seed) < 0:
        raise InputError(f"seed must be >= 0, got {seed}")
    gens = []
    for i in range(start, start + n):
        state = np.random.SeedSequence((int(seed), i)).generate_state(1, np.uint64)[0]
        gens.append(torch.Generator().manual_seed(int(state)))
    return gens


def resolve(seed: int | None, generator: Generators, n: int) -> Generators:
    """The random source of a call given ``seed`` or ``generator`` (not both).

    A seed gives per-sample generators; a list must hold one generator per sample;
    a single generator is one stream for the whole batch (draws then depend on the
    batch size); None uses PyTorch's global generator."""
    if seed is not None and generator is not None:
        raise InputError("pass either generator or seed, not both")
    if seed is not None:
        return sample_generators(seed, n)
    if isinstance(generator, (list, tuple)):
        if len(generator) != n:
            raise InputError(f"got {len(generator)} generators for {n} samples; pass one per sample")
        return list(generator)
    return generator


def randint(gens: Generators, high: int, shape: tuple[int, ...], device) -> torch.Tensor:
    """Uniform integers in [0, high): ``[n, *shape]`` for per-sample generators, else ``shape``
    (which then includes the batch) drawn on the generator's device; moved to ``device``."""
    if isinstance(gens, list):
        return torch.stack([torch.randint(0, high, shape, generator=g) for g in gens]).to(device)
    gen_device = gens.device if gens is not None else torch.device("cpu")
    return torch.randint(0, high, shape, generator=gens, device=gen_device).to(device)


def randn(gens: Generators, shape: tuple[int, ...], device, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise, with the same conventions as :func:`randint`."""
    if isinstance(gens, list):
        return torch.stack([torch.randn(shape, generator=g) for g in gens]).to(device, dtype)
    gen_device = gens.device if gens is not None else torch.device("cpu")
    return torch.randn(shape, generator=gens, device=gen_device).to(device, dtype)
