"""Our code and the authors', side by side, every row under both allocators.

    python benchmarks/run.py --authors PATH                      # the default table
    python benchmarks/run.py --authors PATH --quick              # batch-64 rows, 2 repeats
    python benchmarks/run.py --authors PATH --tiny               # a smoke test: batch 4, 1 repeat
    python benchmarks/run.py --authors PATH --rows generate@64,library@64 --rounds 3 --json out.json

Sides. **ours**: the fast path as the tools run it (the exact whole-sequence LIF; without autograd,
tdBN and LIF step by step in place; the O(T) incremental sampling loop; channels-last
convolutions; training and rows of 1,000+ images on the compiled kernels, their compile paid in the
warm-up call; ``ROW+fused`` puts any row on them). **authors**: their ``fsvae_models`` imported
from PATH, a checkout of kamata1729/FullySpikingVAE (``fetch`` it; their code never enters this
repository), for the same 1x32x32 FSVAE (T = 16, k = 20, latent 128). **ref** (``--reference``):
SpikingJelly's own multi-step LIF loop, the authors' O(T^2) prefix loop for sampling, NCHW
convolutions: our code before its speed work; "identical" says whether its output equals ours bit
for bit (eval rows: the same spikes from the same seed) or its loss does (training rows).

Allocators. Every cell runs once under **glibc** (the default malloc: LD_PRELOAD cleared) and once
under **tcmalloc** (preloaded, as our CLIs re-execute themselves; skipped where it is not installed),
both sides alike. Each child process reports the allocator it actually got; a mismatch stops the run.

Rows. ``generate@N``: N images from the prior (eval mode, no autograd; both sides in chunks of
500). ``reconstruct@N``: N images through encoder, posterior and decoder. ``train_step@N``: one
AdamW step at batch N with scheduled sampling p = 0.1 (both sides' first-epoch setting).
``library@N``: ``FSVAE.from_pretrained("fashion-mnist").sample(N, seed=0)`` exactly as a user
types it in a plain interpreter: glibc only (the library never re-executes itself), against the
authors' ``sample(N)`` under glibc.

Every cell is a fresh process, so its peak RSS is its own: one warm-up call (kept as ``first_s``),
then the median of the repeats. With ``--rounds R`` each row's cells run R times, interleaved
(ours, theirs, theirs, ours, ...), and the table shows the median of the R medians.
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

ROWS_FULL = ["generate@64", "generate+fused@64", "reconstruct@64", "train_step@64", "train_step@250",
             "library@64", "generate@5000"]
ROWS_QUICK = ["generate@64", "reconstruct@64", "train_step@64", "library@64"]
ROWS_TINY = ["generate@4", "reconstruct@4", "train_step@4", "library@4"]
KINDS = ("generate", "reconstruct", "train_step", "library")


def allocator_in_use() -> str:
    """``tcmalloc`` when it is mapped into this process, else ``glibc`` (Linux) or ``default``."""
    try:
        with open("/proc/self/maps") as fh:
            return "tcmalloc" if "tcmalloc" in fh.read() else "glibc"
    except OSError:
        return "default"


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
        if row in ("generate", "library"):
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
    t = time.perf_counter()
    result = call()  # warm-up (and compile, on the compiled kernels)
    sync()
    first = time.perf_counter() - t
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
    return {"seconds": statistics.median(times), "first_s": first, "peak_gb": peak, "digest": digest,
            "threads": torch.get_num_threads(), "allocator": allocator_in_use()}


def library_worker(batch: int, repeats: int) -> dict:
    """``FSVAE.from_pretrained("fashion-mnist").sample(batch, seed=0)``, as a user writes it."""
    from fsvae_sj import FSVAE

    t = time.perf_counter()
    model = FSVAE.from_pretrained("fashion-mnist")
    load = time.perf_counter() - t
    return {**timed(lambda: model.sample(batch, seed=0), model, repeats, "cpu"), "load_s": load}


def worker(row: str, batch: int, path: str, repeats: int, device: str = "cpu") -> dict:
    import torch

    from fsvae_sj import FSVAE, FSVAEConfig
    from fsvae_sj.layers import conv_memory_format
    from fsvae_sj.neurons import use_fused_kernels
    from fsvae_sj.models.losses import fsvae_loss
    from fsvae_sj.metrics import generate

    ours = path == "ours"
    row, _, variant = row.partition("+")
    torch.manual_seed(0)
    model = FSVAE(FSVAEConfig(lif_impl="exact" if ours else "spikingjelly")).to(device)
    model.set_loop("incremental" if ours else "prefix")
    # As the tools run: training and the 5,000-sample evaluation on the compiled kernels
    # (their compile time is paid in the warm-up call), a quick sample on the eager ones;
    # "ROW+fused" puts any row on the compiled kernels (a library user's use_fused_kernels).
    use_fused_kernels(model, ours and (row == "train_step" or batch >= 1000 or variant == "fused"))
    x = (torch.rand(batch, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    fmt = torch.channels_last if ours else torch.contiguous_format

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


def run_worker(row: str, batch: int, side: str, repeats: int, device: str, threads: int) -> dict:
    """One cell, in this (child) process."""
    if threads:
        import torch
        torch.set_num_threads(threads)
    if side.startswith("authors:"):
        return authors_worker(row, batch, side[len("authors:"):], repeats, device)
    if row == "library":
        return library_worker(batch, repeats)
    return worker(row, batch, side, repeats, device)


def measure(row: str, batch: int, side: str, repeats: int, device: str, threads: int,
            allocator: str, tcmalloc: str | None) -> dict:
    """One cell in a fresh process under ``allocator`` (``tcmalloc``: preloaded from ``tcmalloc``)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", row, str(batch), side, str(repeats), device,
           str(threads)]
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if allocator == "tcmalloc":
        env["LD_PRELOAD"] = tcmalloc
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"error: {side} {row}@{batch} under {allocator} failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if device == "cpu" and res["allocator"] != allocator:
        raise SystemExit(f"error: the {allocator} cell of {side} {row}@{batch} ran under {res['allocator']}")
    return res


def cell(value, fmt: str, suffix: str = "") -> str:
    """A table cell: ``-`` where the column was skipped."""
    return "-" if value is None else f"{value:{fmt}}{suffix}"


def parse_rows(spec: list[str]) -> list[tuple[str, int]]:
    rows = []
    for r in spec:
        name, _, batch = r.partition("@")
        if name.partition("+")[0] not in KINDS or not batch.isdigit() or int(batch) < 1:
            raise SystemExit(f"error: --rows: {r!r} is not ROW@BATCH with ROW one of {KINDS} (ROW+fused allowed)")
        rows.append((name, int(batch)))
    return rows


def median_cell(results: list[dict]) -> dict:
    """The cell of the median time over rounds (its memory and digest with it)."""
    ordered = sorted(results, key=lambda r: r["seconds"])
    return {**ordered[(len(ordered) - 1) // 2], "seconds": statistics.median(r["seconds"] for r in results),
            "rounds": [r["seconds"] for r in results]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help=f"rows {','.join(ROWS_QUICK)}, 2 repeats")
    size.add_argument("--tiny", action="store_true", help=f"a smoke test: rows {','.join(ROWS_TINY)}, 1 repeat")
    size.add_argument("--rows", help="comma-separated ROW@BATCH (ROW: generate, reconstruct, train_step, library; "
                                     "ROW+fused: ours on the compiled kernels); default " + ",".join(ROWS_FULL))
    p.add_argument("--repeats", type=int, default=None, help="timed calls per cell after the warm-up (default 3)")
    p.add_argument("--rounds", type=int, default=1, help="run every cell this many times, interleaved")
    p.add_argument("--threads", type=int, default=0, help="torch threads in every cell (default: torch's choice)")
    p.add_argument("--json", help="write the numbers keyed by row")
    p.add_argument("--device", default="cpu", help="cpu or cuda (peak memory: RSS on CPU, allocator peak on CUDA)")
    p.add_argument("--authors", metavar="PATH",
                   help="a checkout of kamata1729/FullySpikingVAE: their code's columns (without it: skipped)")
    p.add_argument("--reference", action="store_true", help="add our pre-speed-work path and the 'identical' column")
    p.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        row, batch, side, repeats, device, threads = args.worker
        print(json.dumps(run_worker(row, int(batch), side, int(repeats), device, int(threads))))
        return 0
    if args.authors and not os.path.isfile(os.path.join(args.authors, "fsvae_models", "fsvae.py")):
        raise SystemExit(f"error: --authors {args.authors} is not a checkout of kamata1729/FullySpikingVAE "
                         f"(no fsvae_models/fsvae.py)")
    rows = parse_rows(ROWS_TINY if args.tiny else ROWS_QUICK if args.quick else
                      args.rows.split(",") if args.rows else ROWS_FULL)
    repeats = args.repeats or (1 if args.tiny else 2 if args.quick else 3)
    if args.device != "cpu" and any(r == "library" for r, _ in rows):
        raise SystemExit("error: --rows: the library row is the CPU call a user makes; leave it out on "
                         f"--device {args.device}")

    import torch
    from fsvae_sj.cli.malloc import find_tcmalloc

    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
               f"{platform.python_version()}, torch {torch.__version__}")
    if args.device.startswith("cuda"):
        machine += f", {torch.cuda.get_device_name()}"
    tcmalloc = find_tcmalloc() if args.device == "cpu" else None
    allocators = (["glibc"] + (["tcmalloc"] if tcmalloc else [])) if args.device == "cpu" else ["default"]
    sides = ["ours"] + ([f"authors:{os.path.abspath(args.authors)}"] if args.authors else []) + \
        (["reference"] if args.reference else [])
    print(f"machine: {machine}")
    print(f"allocators: {', '.join(allocators)}" + (f" ({tcmalloc})" if tcmalloc else
                                                     " (tcmalloc not found: its columns are skipped)"))
    print(f"authors' code: {os.path.abspath(args.authors) if args.authors else 'not given (--authors PATH)'}")
    print(f"{repeats} repeats after a warm-up call, {args.rounds} round(s); threads: "
          f"{args.threads or 'torch default'}")

    header = ["row"]
    for a in allocators:
        header += [f"ours {a} s", f"authors {a} s", f"vs authors ({a})"] + ([f"ref {a} s"] if args.reference else [])
    header += [f"ours GB ({allocators[0]})", f"authors GB ({allocators[0]})"]
    header += ["identical"] if args.reference else []
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header), flush=True)
    table = {"machine": machine, "device": args.device, "repeats": repeats, "rounds": args.rounds,
             "threads": args.threads or None, "allocators": allocators, "tcmalloc": tcmalloc,
             "authors": os.path.abspath(args.authors) if args.authors else None, "rows": {}}
    for row, batch in rows:
        runs = {}  # (side, allocator) -> [result per round]
        for r in range(args.rounds):
            order = sides if r % 2 == 0 else sides[::-1]
            for a in allocators:
                for side in (order if a == allocators[0] else order[::-1]):
                    if row == "library" and (a == "tcmalloc" or side == "reference"):
                        continue  # a user's interpreter: no tcmalloc; no pre-speed-work library
                    runs.setdefault((side, a), []).append(
                        measure(row, batch, side, repeats, args.device, args.threads, a, tcmalloc))
        cells = {k: median_cell(v) for k, v in runs.items()}
        key = f"{row}@{batch}"
        entry = {"cells": {f"{s.partition(':')[0]}/{a}": c for (s, a), c in cells.items()}, "ratio": {}}
        line = [key]
        for a in allocators:
            ours = cells.get(("ours", a))
            theirs = cells.get((sides[1], a)) if args.authors else None
            ratio = theirs["seconds"] / ours["seconds"] if ours and theirs else None
            entry["ratio"][a] = ratio
            line += [cell(ours and ours["seconds"], ".3f"), cell(theirs and theirs["seconds"], ".3f"),
                     cell(ratio, ".2f", "x")]
            if args.reference:
                ref = cells.get(("reference", a))
                line.append(cell(ref and ref["seconds"], ".3f"))
        first = allocators[0]
        ours, theirs = cells[("ours", first)], cells.get((sides[1], first)) if args.authors else None
        line += [cell(ours["peak_gb"], ".2f"), cell(theirs and theirs["peak_gb"], ".2f")]
        if args.reference:
            ref = cells.get(("reference", first))
            entry["identical"] = None if ref is None else ref["digest"] == ours["digest"]
            line.append({None: "-", True: "yes", False: "no"}[entry["identical"]])
        entry["ours_same_under_every_allocator"] = len({cells[("ours", a)]["digest"] for a in allocators
                                                        if ("ours", a) in cells}) == 1
        table["rows"][key] = entry
        print("| " + " | ".join(line) + " |", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(table, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
