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
        _check_count(list(generator), n)
        return list(generator)
    return generator


def randint(gens: Generators, high: int, n: int, shape: tuple[int, ...], device) -> torch.Tensor:
    """Uniform integers in [0, ``high``), ``[n, *shape]`` whatever the source, moved to ``device``:
    per-sample generators (a list of ``n``) each draw their sample's ``shape``; one generator (or
    None: PyTorch's global one) draws the whole ``[n, *shape]`` on its own device. Raises
    :class:`~fsvae_sj.errors.InputError` for a list of another length than ``n``."""
    if isinstance(gens, list):
        _check_count(gens, n)
        return torch.stack([torch.randint(0, high, shape, generator=g) for g in gens]).to(device)
    return torch.randint(0, high, (n, *shape), generator=gens, device=_device_of(gens)).to(device)


def randn(gens: Generators, n: int, shape: tuple[int, ...], device, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise ``[n, *shape]`` in ``dtype``, with the conventions of :func:`randint`."""
    if isinstance(gens, list):
        _check_count(gens, n)
        return torch.stack([torch.randn(shape, generator=g) for g in gens]).to(device, dtype)
    return torch.randn((n, *shape), generator=gens, device=_device_of(gens)).to(device, dtype)


def rand(gens: Generators, n: int, shape: tuple[int, ...], device, dtype=torch.float32) -> torch.Tensor:
    """Uniform noise in [0, 1) ``[n, *shape]`` in ``dtype``, with the conventions of :func:`randint`."""
    if isinstance(gens, list):
        _check_count(gens, n)
        return torch.stack([torch.rand(shape, generator=g) for g in gens]).to(device, dtype)
    return torch.rand((n, *shape), generator=gens, device=_device_of(gens)).to(device, dtype)


def _device_of(gen: torch.Generator | None) -> torch.device:
    return gen.device if gen is not None else torch.device("cpu")


def _check_count(gens: list, n: int) -> None:
    if len(gens) != n:
        raise InputError(f"got {len(gens)} generators for {n} samples; pass one per sample")
