"""Training over processes (torchrun): where a process runs, the process group, agreeing to stop, and
the check that every replica ends with the same weights."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.distributed as dist

from ..files import atomic_write_bytes
from ..models.losses import LossSettings



def process_placement(device: str, env=None) -> tuple[str | None, str]:
    """(process-group backend or None for one process, this process's device).

    Under torchrun (``WORLD_SIZE`` > 1) each rank takes its own GPU ``cuda:LOCAL_RANK``
    when ``device`` asks for CUDA, with NCCL; on the CPU, Gloo. The backend follows the
    requested device, not whether the machine happens to have a GPU."""
    env = os.environ if env is None else env
    if int(env.get("WORLD_SIZE", "1")) <= 1:
        return None, device
    if device.startswith("cuda"):
        return "nccl", f"cuda:{int(env.get('LOCAL_RANK', '0'))}"
    return "gloo", device


def dist_info(device: str) -> tuple[int, int, str]:
    """(rank, world size, this process's device), joining the process group if torchrun started us."""
    backend, device = process_placement(device)
    if backend is None:
        return 0, 1, device
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size(), device


class Objective(torch.nn.Module):
    """``model.loss`` as a module's forward: DistributedDataParallel synchronises gradients
    only through the forward of the module it wraps."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, settings: LossSettings, generator: torch.Generator):
        return self.model.loss(x, settings, generator)


def agree(flag: bool, world: int, device) -> bool:
    """True on every rank if it is true on any (so that all ranks stop at the same step)."""
    if world == 1:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def check_replicas(model, run: Path, rank: int, world: int) -> None:
    """All ranks must end with the same parameters; rank 0 records every rank's digest."""
    import hashlib
    flat = torch.cat([p.detach().reshape(-1).cpu() for p in model.parameters()])
    digest = hashlib.sha256(flat.numpy().tobytes()).hexdigest()
    digests = [None] * world
    dist.all_gather_object(digests, digest)
    if rank == 0:
        digest_json = json.dumps({"world_size": world, "param_sha256": digests}) + "\n"
        atomic_write_bytes(run / "replicas.json", digest_json.encode())
    if len(set(digests)) != 1:
        raise RuntimeError(f"replicas diverged: {digests}")
