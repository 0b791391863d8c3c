"""Two CPU cores, two ways: one process with two threads, or two Gloo ranks with one thread each.

    python benchmarks/ranks_study.py --batch 64 --steps 6 [--json OUT]

Both train the same FSVAE on the compiled kernels (as ``fsvae_sj.train`` does) with a global
batch of ``--batch`` images per step: one process at ``--batch`` with two threads, and
``DistributedDataParallel`` over two Gloo ranks at ``--batch / 2`` each with one thread
(what ``torchrun --nproc_per_node 2 -m fsvae_sj.train`` runs). The median step time of
each, after a warm-up step that compiles. Not the same algorithm: under DDP each rank's
tdBN takes its batch statistics from its own half of the batch.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def steps(model, x, n: int, sync=lambda: None) -> list[float]:
    from fsvae_sj.models.losses import fsvae_loss

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for i in range(n + 1):  # the first step compiles
        sync()
        t = time.perf_counter()
        out = model(x, 0.1, torch.Generator().manual_seed(i))
        loss = fsvae_loss(x, out.x_recon, out.q_out, out.p_out)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync()
        times.append(time.perf_counter() - t)
    return times[1:]


def build(batch: int, seed: int):
    from fsvae_sj import FSVAE, FSVAEConfig
    from fsvae_sj.neurons import use_fused_kernels

    torch.manual_seed(0)
    model = use_fused_kernels(FSVAE(FSVAEConfig()).train())
    x = torch.rand(batch, 1, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return model, x


def rank_main(rank: int, world: int, batch: int, n: int, init: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    model, x = build(batch // world, 1 + rank)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    times = steps(ddp, x, n, sync=dist.barrier)
    if rank == 0:
        with open(out, "w") as fh:
            json.dump(times, fh)
    dist.destroy_process_group()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64, help="global batch per step")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--json", help="write the numbers here")
    args = p.parse_args(argv)
    if args.batch % 2:
        p.error("--batch must be even (two ranks)")
    torch.set_num_threads(2)
    model, x = build(args.batch, 1)
    one = steps(model, x, args.steps)
    del model, x
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "times.json")
        init = "file://" + os.path.join(tmp, "rendezvous")
        mp.spawn(rank_main, args=(2, args.batch, args.steps, init, out), nprocs=2, join=True)
        with open(out) as fh:
            two = json.load(fh)
    result = {"batch": args.batch, "steps": args.steps,
              "one_process_two_threads_s": statistics.median(one),
              "two_gloo_ranks_one_thread_s": statistics.median(two), "all": {"one": one, "two": two}}
    print(f"global batch {args.batch}, median of {args.steps} steps: one process x 2 threads "
          f"{result['one_process_two_threads_s']:.2f} s, two Gloo ranks x 1 thread "
          f"{result['two_gloo_ranks_one_thread_s']:.2f} s per step")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
