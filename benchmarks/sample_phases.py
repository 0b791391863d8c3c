"""Where the time of eval-mode sampling goes, and the dense compute floor.

    python benchmarks/sample_phases.py                       # the zoo's fashion-mnist, 64 images
    python benchmarks/sample_phases.py -n 64 --repeats 3 --json phases.json

Profiles ``model.sample(n, seed=0)`` (after one warm-up call) with ``torch.profiler``; the
library marks its phases as ``fsvae.seeding`` (the per-sample generators, and their draws inside
the prior loop), ``fsvae.prior`` (the autoregressive loop), ``fsvae.decoder`` (the spiking
decoder) and ``fsvae.readout`` (the time-weighted read-out convolution and tanh). Prints each
phase's share of the profiled calls' wall time (the prior's own share without its draws), the
time per call outside the profiler (wall and this process's CPU time), and the floor: the
multiply-adds of the matrix products and convolutions (``torch.utils.flop_counter``, checked
against a count from the layer shapes) at the sgemm rate measured here, with these threads.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import FlopCounterMode

PHASES = ("fsvae.seeding", "fsvae.prior", "fsvae.decoder", "fsvae.readout")


def flops_from_shapes(cfg, n: int) -> dict[str, int]:
    """Multiply-adds x 2 of sampling ``n`` images from the layer shapes of ``cfg`` (an FSVAEConfig)."""
    L, k, T = cfg.latent_dim, cfg.k, cfg.n_steps
    dims = list(cfg.hidden_dims)[::-1]
    prior = 2 * (L * 2 * L + 2 * L * 4 * L + 4 * L * L * k) * n * T
    decoder_input = 2 * L * 4 * dims[0] * n * T
    # transposed 3x3 convolutions, stride 2: every input pixel meets c_in x c_out x 9 weights
    convs, side = 0, 2
    for c_in, c_out in [*zip(dims, dims[1:]), (dims[-1], dims[-1])]:
        convs += 2 * c_in * c_out * 9 * side * side * n * T
        side *= 2
    readout = 2 * dims[-1] * cfg.in_channels * 9 * side * side * n   # once, on the time-weighted spikes
    return {"prior": prior, "decoder_input": decoder_input, "decoder_convs": convs, "readout": readout,
            "total": prior + decoder_input + convs + readout}


def sgemm_rate(size: int = 2048, repeats: int = 5) -> float:
    """Float32 matrix-product rate (FLOP/s) of this process, best of ``repeats``."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size ** 3 / best


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


DENSE_OPS = ("aten::addmm", "aten::mm", "aten::convolution")


def _phase_of(event) -> str | None:
    """The innermost phase range an event runs in."""
    e = event.cpu_parent
    while e is not None and e.name not in PHASES:
        e = e.cpu_parent
    return e.name if e is not None else None


def phase_shares(model, n: int, repeats: int) -> dict:
    """Profile ``repeats`` calls; return each phase's wall time (ms per call), its share, and the
    part of it spent in matrix products and convolutions."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            with record_function("sample"):
                model.sample(n, seed=0)
    events = prof.events()
    total = sum(e.cpu_time_total for e in events if e.name == "sample") / 1e3 / repeats
    ms = {p: sum(e.cpu_time_total for e in events if e.name == p) / 1e3 / repeats for p in PHASES}
    draws = sum(e.cpu_time_total for e in events if e.name == "fsvae.seeding" and _phase_of(e) == "fsvae.prior")
    ms["fsvae.prior"] -= draws / 1e3 / repeats   # the prior's own share, without its draws
    ms["other"] = total - sum(ms.values())   # checks, resets, glue
    dense = dict.fromkeys(ms, 0.0)
    for e in events:
        # outermost dense ops only (aten::linear -> addmm: count addmm; convolution's children not again)
        if e.name in DENSE_OPS and not _inside(e, DENSE_OPS):
            dense[_phase_of(e) or "other"] += e.cpu_time_total / 1e3 / repeats
    return {"ms_per_call": total, "phases_ms": ms, "shares": {p: v / total for p, v in ms.items()},
            "dense_ms": dense}


def _inside(event, names) -> bool:
    e = event.cpu_parent
    while e is not None:
        if e.name in names:
            return True
        e = e.cpu_parent
    return False


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fashion-mnist", help="a zoo name or a .safetensors path")
    p.add_argument("-n", type=int, default=64, help="images per call")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="write the numbers here")
    args = p.parse_args(argv)
    from fsvae_sj import FSVAE

    model = FSVAE.from_pretrained(args.model)
    model.sample(args.n, seed=0)   # warm-up
    wall, cpu = [], []
    for _ in range(args.repeats):
        c = time.process_time()
        wall.append(_timed(lambda: model.sample(args.n, seed=0)))
        cpu.append(time.process_time() - c)
    shares = phase_shares(model, args.n, args.repeats)
    with FlopCounterMode(display=False) as counter:
        model.sample(args.n, seed=0)
    counted = counter.get_total_flops()
    shapes = flops_from_shapes(model.config, args.n)
    rate = sgemm_rate()
    out = {"model": args.model, "n": args.n, "threads": torch.get_num_threads(), "repeats": args.repeats,
           "wall_s": statistics.median(wall), "cpu_s": statistics.median(cpu), **shares,
           "flops_counted": counted, "flops_from_shapes": shapes, "sgemm_flops_per_s": rate,
           "floor_s": counted / rate}
    print(f"{args.model}: sample({args.n}, seed=0), {out['threads']} threads, median of {args.repeats}: "
          f"{out['wall_s']:.3f} s wall, {out['cpu_s']:.3f} s CPU (this process)")
    print("| phase | ms per call (profiled) | share | of it in matrix products / convolutions |\n|---|---|---|---|")
    for name, v in shares["phases_ms"].items():
        print(f"| {name} | {v:.1f} | {shares['shares'][name]:.1%} | {shares['dense_ms'][name]:.1f} ms |")
    print(f"| all (profiled) | {shares['ms_per_call']:.1f} | 100% | {sum(shares['dense_ms'].values()):.1f} ms |")
    print(f"dense FLOP: {counted / 1e9:.2f} G counted (flop_counter); from the layer shapes "
          + ", ".join(f"{k} {v / 1e9:.2f} G" for k, v in shapes.items()))
    print(f"sgemm here: {rate / 1e9:.0f} GFLOP/s -> floor {out['floor_s']:.3f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
