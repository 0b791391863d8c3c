"""Where a training step's time goes: variants side by side in one process.

    python benchmarks/step_study.py --batch 64 --repeats 5 [--threads 2] [--json OUT]

Variants, interleaved (A B A B ...) so that drift in the machine's load hits them alike:
* ``eager``: the exact LIF on eager PyTorch kernels;
* ``fused``: the compiled kernels (LIF; tdBN + LIF of each convolution block in one pass),
  compiled before timing;
and, measured inside the ``fused`` step, the posterior's training-mode prefix loop (its
T - 1 runs without gradient) and the counted matmul/convolution FLOPs, against the
sgemm rate this CPU sustains at the same thread count (the step's compute floor); and the
fused step taken apart as ``model.forward`` runs it (encoder, posterior, prior, decoder, loss,
backward, optimiser): each part's wall time (median of the repeats) and its dense FLOPs at that
sgemm rate, the part's floor.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from fsvae_sj import FSVAE, FSVAEConfig
from fsvae_sj.models.losses import fsvae_loss
from fsvae_sj.neurons import use_fused_kernels


def sgemm_rate(n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an n x n x n float32 matmul (the best of ``repeats``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


PARTS = ("encoder", "posterior", "prior", "decoder", "loss", "backward", "optimiser")


def step_parts(model, x, opt, state, repeats: int) -> tuple[dict, dict, float]:
    """``({part: [seconds per repeat]}, {part: dense FLOPs}, loss)`` of the training step taken apart
    in ``model.forward``'s order, from the weights ``state`` each time (the FLOPs from one more
    step under ``FlopCounterMode``, which slows every op down and so is not timed)."""
    L, k = model.config.latent_dim, model.config.k
    times, flops, loss_value = {p: [] for p in PARTS}, {}, None

    def one(count: bool):
        nonlocal loss_value
        model.load_state_dict(state)
        g = torch.Generator().manual_seed(0)

        def part(name, fn):
            with (FlopCounterMode(display=False) if count else contextlib.nullcontext()) as counter:
                t = time.perf_counter()
                out = fn()
                seconds = time.perf_counter() - t
            if count:
                flops[name] = counter.get_total_flops()
            else:
                times[name].append(seconds)
            return out

        enc = part("encoder", lambda: model.encode(x))
        z, q = part("posterior", lambda: model.posterior.sample(enc, g, loop=model.loop))
        p = part("prior", lambda: model.prior.teacher_forced(z, 0.1, g))
        recon = part("decoder", lambda: model.decode(z))
        loss = part("loss", lambda: fsvae_loss(x, recon, q.view(*q.shape[:2], L, k), p.view(*p.shape[:2], L, k))["loss"])
        opt.zero_grad()
        part("backward", loss.backward)
        part("optimiser", opt.step)
        loss_value = float(loss.detach())

    for _ in range(repeats):
        one(count=False)
    one(count=True)
    return times, flops, loss_value


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--json", help="write the numbers here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = FSVAE(FSVAEConfig()).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(args.batch, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def step():
        model.load_state_dict(state)
        out = model(x, 0.1, torch.Generator().manual_seed(0))
        loss = fsvae_loss(x, out.x_recon, out.q_out, out.p_out)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach())

    use_fused_kernels(model, True)
    compile_s = _timed(step)
    times = {"eager": [], "fused": []}
    for _ in range(args.repeats):
        for variant in times:
            use_fused_kernels(model, variant == "fused")
            times[variant].append(_timed(step))
    use_fused_kernels(model, True)
    posterior, prefix = model.posterior, []
    original = posterior._loop

    def timed_loop(*a, **k):
        t = time.perf_counter()
        out = original(*a, **k)
        prefix.append(time.perf_counter() - t)
        return out

    posterior._loop = timed_loop
    step()  # timed alone: under FlopCounterMode every op runs slower
    del posterior._loop
    with FlopCounterMode(display=False) as flops:
        whole_loss = step()
    gflop = flops.get_total_flops() / 1e9
    part_times, part_flops, parts_loss = step_parts(model, x, opt, state, args.repeats)
    if parts_loss != whole_loss:
        raise SystemExit(f"the step taken apart computes another loss ({parts_loss} vs {whole_loss})")
    rate = sgemm_rate()
    med = {k: statistics.median(v) for k, v in times.items()}
    parts = {p: {"seconds": statistics.median(part_times[p]), "all_seconds": part_times[p],
                 "dense_gflop": part_flops[p] / 1e9, "floor_s": part_flops[p] / 1e9 / rate} for p in PARTS}
    result = {"batch": args.batch, "threads": args.threads, "repeats": args.repeats,
              "seconds": med, "all_seconds": times, "fused_speedup": med["eager"] / med["fused"],
              "first_fused_step_s (compiles)": compile_s, "prefix_loop_s": prefix[0],
              "matmul_conv_gflop": gflop, "sgemm_gflops": rate, "compute_floor_s": gflop / rate, "parts": parts}
    print(f"batch {args.batch}, {args.threads} threads, median of {args.repeats}: eager {med['eager']:.2f} s, "
          f"fused {med['fused']:.2f} s ({result['fused_speedup']:.2f}x); first fused step {compile_s:.1f} s; "
          f"prefix loop {prefix[0]:.2f} s; {gflop:.0f} GFLOP of matmul/convolution at the {rate:.0f} GFLOP/s "
          f"this CPU's sgemm sustains: floor {gflop / rate:.2f} s")
    total = sum(v["seconds"] for v in parts.values())
    print(f"\nthe fused step taken apart (median of {args.repeats}; sum {total:.3f} s)\n"
          "| part | seconds | share | dense GFLOP | floor s | over the floor |\n|---|---|---|---|---|---|")
    for name, v in parts.items():
        over = f"{v['seconds'] / v['floor_s']:.1f}x" if v["floor_s"] > 0 else "-"
        print(f"| {name} | {v['seconds']:.3f} | {v['seconds'] / total:.0%} | {v['dense_gflop']:.1f} | "
              f"{v['floor_s']:.3f} | {over} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
