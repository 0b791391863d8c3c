"""Make the training-mode parity fixture with the authors' code.

    python benchmarks/make_train_parity.py --authors PATH/FullySpikingVAE --out tests/data/train_parity_fsvae.pt.gz

One training step of the authors' FSVAE (32x32, one channel) on a fixed batch of
FashionMNIST test images, with deterministic non-trivial weights and tdBN
statistics (quantised so the file compresses) and scripted posterior choices
(their ``torch.randint`` returns precomputed draws), in float64 and in float32.
Recorded per precision, time-first and under our parameter names (through our
converter): the spikes z, q and p; the reconstruction; the loss terms; every
gradient (whole for small tensors; sum, sum of squares and a fixed projection for
the rest); every tdBN running statistic after the step. Their code stays outside
the repository; the fixture holds only numbers (see tests/data/README.md).
"""
from __future__ import annotations

import argparse
import gzip
import io
import math
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import authors_code  # noqa: E402

from fsvae_sj.zoo.authors import convert_state_dict, infer_config  # noqa: E402

# Small enough to keep the fixture near 1 MB, large enough to show the float32 statistics
# error of a channels-last batch_norm (it grows with the elements per channel: N * T * H * W).
SIZES = {"latent_dim": 32, "k": 20, "n_steps": 16, "batch_size": 32}
WHOLE_BELOW = 4096  # gradients of tensors this small are stored whole


def projection_vector(n: int) -> torch.Tensor:
    """A fixed float64 direction for projecting a flattened gradient (no RNG involved)."""
    return torch.cos(torch.arange(n, dtype=torch.float64) * 0.7548776662466927)


def gradient_summary(g: torch.Tensor) -> dict:
    g = g.detach().to(torch.float64).flatten()
    out = {"sum": g.sum(), "sumsq": (g * g).sum(), "proj": (g * projection_vector(g.numel())).sum()}
    if g.numel() < WHOLE_BELOW:
        out["whole"] = g.clone()
    return out


def quantised_weights(net: torch.nn.Module, gen: torch.Generator) -> None:
    """17-level weights with power-of-two scales (exact in float32 and float64); tdBN
    gains near 1, small shifts, and running statistics that are not the defaults."""
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("num_batches_tracked") or t.dim() == 0 or name.endswith(("initial_input", "coef")):
                continue
            levels = lambda lo, hi: torch.randint(lo, hi + 1, t.shape, generator=gen).to(t.dtype)  # noqa: E731
            if ".bn." in name or name.startswith("bn"):
                leaf = name.rsplit(".", 1)[1]
                value = {"weight": 1 + levels(-4, 4) / 16, "bias": levels(-4, 4) / 64,
                         "running_mean": levels(-8, 8) / 16, "running_var": 1 + levels(0, 8) / 8}[leaf]
            else:
                # Biases: 1/8 (tdBN removes most of them; the read-out keeps its own).
                scale = 2.0 ** round(math.log2(1 / math.sqrt(t[0].numel()))) if t.dim() > 1 else 0.125
                value = levels(-8, 8) / 8 * scale
            t.copy_(value)


def run(their_model, x: torch.Tensor, draws: list[torch.Tensor], dtype: torch.dtype, config) -> dict:
    """One training forward and backward of their code in ``dtype``; time-first results."""
    import copy
    net = copy.deepcopy(their_model).to(dtype).train()
    L, k, T = config.latent_dim, config.k, config.n_steps
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # their membranes start as torch.zeros(...) of the default dtype
    try:
        with authors_code.scripted_randint(draws) as left:
            x_recon, q_z, p_z, z = net(authors_code.time_last_images(x.to(dtype), T), scheduled=False)
            if left:
                raise AssertionError(f"their posterior used {len(draws) - len(left)} of {len(draws)} draws")
        losses = net.loss_function_mmd(x.to(dtype), x_recon, q_z, p_z)
        losses["loss"].backward()
    finally:
        torch.set_default_dtype(old)
    params = dict(net.named_parameters())
    sd = {n: (params[n].grad if n in params else v) for n, v in net.state_dict().items()}
    _, grads = convert_state_dict(sd, config)
    _, state = convert_state_dict(net.state_dict(), config)
    ours_params = {n for n in grads if not n.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    n = x.shape[0]
    return {
        "z": authors_code.time_first(z).reshape(T, n, L).to(torch.bool),
        "q": authors_code.time_first(q_z).reshape(T, n, L, k).to(torch.bool),
        "p": authors_code.time_first(p_z).reshape(T, n, L, k).to(torch.bool),
        "x_recon": x_recon.detach().clone(),
        "loss": {key: v.detach().to(torch.float64) for key, v in losses.items()},
        "grads": {name: gradient_summary(grads[name]) for name in sorted(ours_params)},
        "running": {name: v.clone() for name, v in state.items()
                    if name.endswith(("running_mean", "running_var", "num_batches_tracked"))},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--authors", required=True, help="a checkout of kamata1729/FullySpikingVAE")
    p.add_argument("--out", required=True, help="the fixture to write (.pt.gz)")
    args = p.parse_args(argv)

    fsvae, _ = authors_code.load(args.authors, **SIZES)
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    theirs = fsvae.FSVAE()
    quantised_weights(theirs, gen)
    buf = io.BytesIO()
    torch.save(theirs.state_dict(), buf)
    config = infer_config(theirs.state_dict())

    from fsvae_sj.datasets import batch_of, make_dataset
    n = SIZES["batch_size"]
    x = batch_of(make_dataset("fashion-mnist", "test"), torch.arange(n)).to(torch.float32)
    draws = [torch.randint(0, config.k, (n * config.latent_dim,), generator=gen) for _ in range(config.n_steps)]

    fixture = {
        "checkpoint_bytes": buf.getvalue(),
        "x": x,
        "draws": torch.stack(draws).view(config.n_steps, n, config.latent_dim).to(torch.uint8),
        "float64": run(theirs, x, draws, torch.float64, config),
        "float32": run(theirs, x, draws, torch.float32, config),
        "made_with": "kamata1729/FullySpikingVAE at ffadb3d; benchmarks/make_train_parity.py",
    }
    raw = io.BytesIO()
    torch.save(fixture, raw)
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_bytes(gzip.compress(raw.getvalue(), mtime=0))
    os.replace(tmp, args.out)
    f64, f32 = fixture["float64"], fixture["float32"]
    flips = {key: int((f64[key] != f32[key]).sum()) for key in ("z", "q", "p")}
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.2f} MB); their float32 vs float64: "
          f"spike flips {flips}, loss {float(f32['loss']['loss']):.9f} vs {float(f64['loss']['loss']):.9f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
