"""AE Frechet distance of a model's reconstructions: what samples would score with a perfect prior.

    python benchmarks/recon_frechet.py --model RUN/ema.safetensors --n 2000

Reconstructs the first N training images in eval mode (the posterior's draws seeded with 0, 250 images
a call) and prints the AE Frechet distance of the reconstructions to the test and to the training
statistics (``fsvae_sj.metrics.afd_scores``). Unlike benchmarks/what_limits.py (a random subset, samples
too) this is the autoencoder alone, about a minute at 2,000 images on one thread. Used in
benchmarks/RESULTS.md ("Full training again, then the stage again" and after).
"""
from __future__ import annotations

import argparse

import torch

from fsvae_sj import zoo
from fsvae_sj.datasets import batch_of, make_dataset
from fsvae_sj.metrics import afd_scores


def model_and_training_images(description: str, argv=None, n_help: str = "the first N training images (default 2000)"):
    """``(args, dataset, model, x)``: the command line of this script (and benchmarks/latent_gap.py) parsed,
    the model loaded in eval mode and its dataset's first ``--n`` training images ``[N, C, H, W]``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", required=True, help="zoo name or .safetensors path")
    p.add_argument("--dataset", help="whose training images (default: the one the model was trained on, from its metadata)")
    p.add_argument("--n", type=int, default=2000, help=n_help)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if a.n < 2:
        p.error(f"--n must be >= 2, got {a.n}")
    torch.set_num_threads(a.threads)
    dataset = a.dataset or zoo.trained_on(a.model)
    if dataset is None:
        p.error(f"{a.model} does not say which dataset it was trained on: give --dataset")
    model = zoo.load(a.model).eval()
    return a, dataset, model, batch_of(make_dataset(dataset, "train"), torch.arange(a.n))


def main(argv=None) -> int:
    a, dataset, model, x = model_and_training_images(__doc__.split("\n")[0], argv)
    with torch.no_grad():
        rec = torch.cat([model.reconstruct(x[i:i + 250], seed=0) for i in range(0, a.n, 250)])
    print({"model": a.model, "n": a.n, **afd_scores(rec, dataset)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
