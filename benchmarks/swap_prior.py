"""A weights file with one FSVAE's prior put into another: which part of a run lost the samples?

    python benchmarks/swap_prior.py RUN/ema.safetensors zoo/mnist.safetensors OUT.safetensors
    python -m fsvae_sj.evaluate --model OUT.safetensors --dataset mnist --metrics afd,afd-val -n 5000

OUT has every tensor and the metadata (config, provenance) of the first file but the prior's (every
``prior.`` tensor: weights and tdBN statistics), which come from the second. Both must be the same
architecture (the same tensor names and shapes; refused otherwise). Measured with it:
benchmarks/RESULTS.md, "The staged prior kept, the autoencoder trained under it".
"""
from __future__ import annotations

import argparse
import sys

from safetensors import safe_open
from safetensors.torch import save

from fsvae_sj.files import atomic_write_bytes


def swap_prior(body: str, prior: str) -> tuple[dict, dict]:
    """``(tensors, metadata)``: ``body``'s, its ``prior.`` tensors replaced by ``prior``'s."""
    with safe_open(body, "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    with safe_open(prior, "pt") as f:
        theirs = {k: f.get_tensor(k) for k in f.keys() if k.startswith("prior.")}
    ours = {k for k in tensors if k.startswith("prior.")}
    if set(theirs) != ours or any(theirs[k].shape != tensors[k].shape for k in ours):
        raise SystemExit(f"{prior}'s prior does not fit {body}'s (tensor names or shapes differ)")
    return {**tensors, **theirs}, meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("body", help="weights whose encoder, posterior and decoder are kept (safetensors)")
    ap.add_argument("prior", help="weights whose prior goes in (safetensors, same architecture)")
    ap.add_argument("out", help="the file to write (atomically)")
    a = ap.parse_args(argv)
    tensors, meta = swap_prior(a.body, a.prior)
    atomic_write_bytes(a.out, save(tensors, metadata=meta))
    print(f"{a.out}: {a.body} with the prior of {a.prior}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
