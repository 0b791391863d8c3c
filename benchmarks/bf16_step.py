"""Would bfloat16 autocast make a CPU training step cheaper? (issue 20's study)

    python benchmarks/bf16_step.py [--rounds 6] [--batch 64] [--threads 1]

One process, the zoo's ``fashion-mnist`` FSVAE in training mode, the loss, backward and an AdamW
step at lr 0 (the weights stay put, so every round computes the same step), float32 against
``torch.autocast("cpu", torch.bfloat16)`` around the loss, interleaved round by round after one
warm-up each; prints the process CPU time of each step and the loss of both. Under autocast only the
weight layers (convolutions, transposed convolutions, linear layers) run in bfloat16: each spiking
block casts their output back to float32 before tdBN and the LIF neuron, whose threshold
comparisons bfloat16's 8-bit mantissa would change. The library's transposed convolution (a custom
autograd function, see ``fsvae_sj.spiking.layers``) is not autocast-aware, so the bfloat16 side
runs ``nn.ConvTranspose2d``'s own forward instead; the float32 side is the library as it trains.
"""
import argparse
import contextlib
import statistics
import time

import torch
from torch import nn

from fsvae_sj import zoo
from fsvae_sj.models.losses import LossSettings
from fsvae_sj.spiking import layers


@contextlib.contextmanager
def bf16_weight_layers():
    """Autocast on; spiking blocks fire on float32 inputs; plain transposed convolutions."""
    def block_forward(self, x):
        return self.fire(layers.per_step(self.layer, x, spikes=True).float(), owned=True)
    saved = layers.SpikingBlock.forward, layers.ConvTranspose2d.forward
    layers.SpikingBlock.forward, layers.ConvTranspose2d.forward = block_forward, nn.ConvTranspose2d.forward
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield
    finally:
        layers.SpikingBlock.forward, layers.ConvTranspose2d.forward = saved


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = zoo.load("fashion-mnist").train()
    opt = torch.optim.AdamW(model.parameters(), lr=0.0)
    x = torch.rand(args.batch, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    settings = LossSettings(scheduled_p=0.107)   # the zoo runs' scheduled-sampling probability

    def step(bf16: bool) -> tuple[float, float]:
        c0 = time.process_time()
        with bf16_weight_layers() if bf16 else contextlib.nullcontext():
            losses = model.loss(x, settings, torch.Generator().manual_seed(0))
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        opt.step()
        return time.process_time() - c0, float(losses["loss"].detach())

    sides = {"float32": False, "bfloat16 autocast": True}
    for bf16 in sides.values():
        step(bf16)
    times = {name: [] for name in sides}
    losses = {}
    for _ in range(args.rounds):
        for name, bf16 in sides.items():
            t, losses[name] = step(bf16)
            times[name].append(t)
    print(f"batch {args.batch}, {args.threads} thread(s), {args.rounds} interleaved rounds (process CPU s per step)")
    for name in sides:
        print(f"{name:>18}: median {statistics.median(times[name]):.3f} s  all {[round(t, 3) for t in times[name]]}"
              f"  loss {losses[name]:.6f}")
    ratio = statistics.median(times["float32"]) / statistics.median(times["bfloat16 autocast"])
    print(f"float32 / bfloat16 median: {ratio:.2f}x")


if __name__ == "__main__":
    main()
