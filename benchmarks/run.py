"""Reference path against fast path, side by side in one run.

    python benchmarks/run.py                 # the full table (batch 64 and 250, 5,000 samples)
    python benchmarks/run.py --quick --json out.json

Reference path: SpikingJelly's own multi-step LIF loop (``lif_impl="spikingjelly"``),
the authors' O(T^2) prefix loop for eval-mode sampling, NCHW convolutions.
Fast path: the exact whole-sequence LIF (on torch.compile'd kernels, with tdBN and LIF of
each convolution block in one pass, for training and the 5,000-sample rows, as the tools
run it; ``ROW+fused`` rows for any row), the O(T) incremental loop, channels-last
convolutions, and tcmalloc as the allocator when installed (the CLIs use it the same
way; the "fast s (glibc)" column is the fast path under the default allocator). Every measurement runs in a fresh process (so peak memory is that
row's own), with one warm-up call and the median of several repeats. The
"identical" column says whether the two paths produced bit-identical outputs
from the same seed (eval rows) or the same loss (training rows).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

ROWS_QUICK = [("generate", 64), ("reconstruct", 64), ("train_step", 64)]
ROWS_FULL = [("generate", 64), ("generate", 5000), ("reconstruct", 64), ("reconstruct", 250),
             ("train_step", 64), ("train_step", 250)]


def authors_worker(row: str, batch: int, checkout: str, repeats: int, device: str) -> dict:
    """The same row on the authors' code (their FSVAE for 1x32x32, T = 16, k = 20, latent 128)."""
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import authors_code

    row = row.partition("+")[0]  # their code has one path
    fsvae, _ = authors_code.load(checkout, batch_size=batch)
    torch.manual_seed(0)
    model = fsvae.FSVAE().to(device)
    model.p = 0.1  # their scheduled-sampling probability at the first epoch, as ours gets 0.1
    x = (torch.rand(batch, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(device)
    x_seq = authors_code.time_last_images(x, 16)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def call():
        if row == "generate":
            model.eval()
            with torch.no_grad():
                return torch.cat([model.sample(min(500, batch - i))[0] for i in range(0, batch, 500)])
        if row == "reconstruct":
            model.eval()
            with torch.no_grad():
                return model(x_seq, scheduled=False)[0]
        model.train()
        x_recon, q_z, p_z, _ = model(x_seq, scheduled=True)
        loss = model.loss_function_mmd(x, x_recon, q_z, p_z)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.detach()

    return timed(call, model, repeats, device)


def timed(call, model, repeats: int, device: str) -> dict:
    """One warm-up call, then the median of ``repeats`` calls, each from the same weights."""
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    state = {k: v.clone() for k, v in model.state_dict().items()}
    result = call()  # warm-up
    for _ in range(repeats):
        model.load_state_dict(state)  # training rows: every repeat from the same weights
        sync()
        t = time.perf_counter()
        result = call()
        sync()
        times.append(time.perf_counter() - t)
    digest = hashlib.sha256(result.float().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]
    peak = (torch.cuda.max_memory_allocated() / 1e9 if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)
    return {"seconds": statistics.median(times), "peak_gb": peak, "digest": digest,
            "threads": torch.get_num_threads()}


def worker(row: str, batch: int, path: str, repeats: int, device: str = "cpu") -> dict:
    import torch

    from fsvae_sj import FSVAE, FSVAEConfig
    from fsvae_sj.layers import conv_memory_format
    from fsvae_sj.neurons import use_fused_kernels
    from fsvae_sj.losses import fsvae_loss
    from fsvae_sj.metrics import generate

    fast = path == "fast"
    row, _, variant = row.partition("+")
    torch.manual_seed(0)
    model = FSVAE(FSVAEConfig(lif_impl="exact" if fast else "spikingjelly")).to(device)
    model.set_loop("incremental" if fast else "prefix")
    # As the tools run: training and the 5,000-sample evaluation on the compiled kernels
    # (their compile time is paid in the warm-up call), a quick sample on the eager ones;
    # "ROW+fused" puts any row on the compiled kernels (a library user's use_fused_kernels).
    use_fused_kernels(model, fast and (row == "train_step" or batch >= 1000 or variant == "fused"))
    x = (torch.rand(batch, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    fmt = torch.channels_last if fast else torch.contiguous_format

    def call():
        if row == "generate":  # in chunks of 500, as the CLI and the evaluation do
            model.eval()
            return generate(model, batch, seed=0)
        if row == "reconstruct":
            model.eval()
            return model.reconstruct(x, seed=0)
        model.train()
        out = model(x, 0.1, torch.Generator(device=device).manual_seed(0))
        loss = fsvae_loss(x, out.x_recon, out.q_out, out.p_out)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.detach()

    with conv_memory_format(fmt):
        return timed(call, model, repeats, device)


def measure(row, batch, path, repeats, device, tcmalloc: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--worker", row, str(batch), path, str(repeats), device]
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if tcmalloc:
        env["LD_PRELOAD"] = tcmalloc
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cell(value, fmt: str, suffix: str = "") -> str:
    """A table cell: ``-`` where the column was skipped."""
    return "-" if value is None else f"{value:{fmt}}{suffix}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="batch 64 rows only, 2 repeats (a few minutes)")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--json", help="write the numbers keyed by row")
    p.add_argument("--device", default="cpu", help="cpu or cuda (peak memory: RSS on CPU, allocator peak on CUDA)")
    p.add_argument("--rows", help="comma-separated ROW@BATCH to run instead of the preset table; ROW is "
                                  "generate, reconstruct or train_step, and ROW+fused runs our fast path on "
                                  "the compiled kernels (as after use_fused_kernels)")
    p.add_argument("--authors", metavar="PATH",
                   help="a checkout of kamata1729/FullySpikingVAE: adds their code's column (their code "
                        "never enters this repository; without it the column is skipped)")
    p.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        row, batch, path, repeats, device = args.worker
        if path.startswith("authors:"):
            print(json.dumps(authors_worker(row, int(batch), path[len("authors:"):], int(repeats), device)))
        else:
            print(json.dumps(worker(row, int(batch), path, int(repeats), device)))
        return 0
    rows = ROWS_QUICK if args.quick else ROWS_FULL
    if args.rows:
        rows = [(r.split("@")[0], int(r.split("@")[1])) for r in args.rows.split(",")]
    repeats = args.repeats or (2 if args.quick else 3)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    if args.device.startswith("cuda"):
        import torch
        machine += f", {torch.cuda.get_device_name()}"
    print(f"machine: {machine}")
    from fsvae_sj._malloc import find_tcmalloc
    tcmalloc = find_tcmalloc() if args.device == "cpu" else None
    print(f"allocator for the fast path: {tcmalloc or 'the default (tcmalloc not found)'}")
    if args.authors:
        print(f"authors' code: {os.path.abspath(args.authors)} (default allocator)")
    header = (f"| {'row':22s} | authors s | ref s | fast s (glibc) | fast s | vs authors | vs ref | fast img/s "
              f"| authors GB | ref GB | fast GB | identical |")
    print(header + "\n|" + "---|" * 12)
    table = {"machine": machine, "device": args.device, "repeats": repeats, "fast_allocator": tcmalloc,
             "authors": os.path.abspath(args.authors) if args.authors else None, "rows": {}}
    for row, batch in rows:
        a = measure(row, batch, f"authors:{args.authors}", repeats, args.device) if args.authors else None
        r = measure(row, batch, "reference", repeats, args.device)
        fg = measure(row, batch, "fast", repeats, args.device) if tcmalloc else None
        f = measure(row, batch, "fast", repeats, args.device, tcmalloc)
        fg = fg or f
        key = f"{row}@{batch}"
        entry = {"authors_s": a and a["seconds"], "reference_s": r["seconds"], "fast_glibc_s": fg["seconds"],
                 "fast_s": f["seconds"], "speedup_vs_authors": a and a["seconds"] / f["seconds"],
                 "speedup": r["seconds"] / f["seconds"],
                 "fast_images_per_s": batch / f["seconds"], "authors_peak_gb": a and a["peak_gb"],
                 "reference_peak_gb": r["peak_gb"],
                 "fast_peak_gb": f["peak_gb"], "identical": r["digest"] == f["digest"], "threads": f["threads"]}
        table["rows"][key] = entry
        print(f"| {key:22s} | {cell(a and a['seconds'], '.2f'):>9s} | {r['seconds']:5.2f} "
              f"| {fg['seconds']:14.2f} | {f['seconds']:6.2f} "
              f"| {cell(entry['speedup_vs_authors'], '.2f', 'x'):>10s} | {entry['speedup']:5.2f}x "
              f"| {entry['fast_images_per_s']:10.1f} | {cell(a and a['peak_gb'], '.2f'):>10s} "
              f"| {r['peak_gb']:6.2f} | {f['peak_gb']:7.2f} | {'yes' if entry['identical'] else 'no'} |", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(table, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
