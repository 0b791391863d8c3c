"""Where a zoo model's samples lose quality: the decoder or the prior (issue 20).

    python benchmarks/what_limits.py --model mnist --n 5000 --json benchmarks/what_limits.json

For one model (a zoo name or a .safetensors of ours) and n training images (a fixed random subset,
seed 1), all in eval mode:
- AE Frechet (:func:`fsvae_sj.metrics.afd_scores`, test and training statistics) of the real images
  (the metric's floor at this n), of their reconstructions (posterior seed 0: what a perfect prior
  would give on this decoder) and of n samples (seed 0; the cards' protocol at n = 5000);
- the latent spike trains ``[T, n, latent]`` of the posterior on those images against the prior's
  own samples: firing rate per step, per-channel rates and their correlation, the variance of each
  channel's spike count per image and the relative difference of the count covariance matrices
  (a prior that matches rates but not their spread or correlations makes samples that are too alike);
- the pixel levels of the real images, reconstructions and samples: the shares of pixels near black
  (<= -0.9), near white (>= 0.9) and grey in between (a decoder trained on the mean squared error
  blends where the latent code leaves it uncertain: grey haze where the real images are black).
Results are appended to the JSON file under the model's name.
"""
import argparse
import json
import time
from pathlib import Path

import torch

from fsvae_sj import zoo
from fsvae_sj.datasets import batch_of, make_dataset
from fsvae_sj.zoo import trained_on
from fsvae_sj.metrics import afd_scores, generate
from fsvae_sj.seeding import sample_generators


def latent_statistics(z: torch.Tensor) -> dict:
    """Summary of spike trains ``[T, n, latent]`` (0/1)."""
    per_channel = z.mean((0, 1))
    counts = z.sum(0)   # [n, latent] spikes per image and channel
    return {"rate": round(float(z.mean()), 4),
            "rate_per_step": [round(float(v), 3) for v in z.mean((1, 2))],
            "channel_rate_quantiles_0_10_50_90_100": [round(float(v), 3) for v in
                                                      torch.quantile(per_channel, torch.tensor([0, .1, .5, .9, 1.]))],
            "count_variance_mean": round(float(counts.var(0).mean()), 3)}


def pixel_levels(images: torch.Tensor) -> dict:
    """Shares of the pixels of images in [-1, 1] near black (<= -0.9), near white (>= 0.9) and between."""
    black, white = float((images <= -0.9).float().mean()), float((images >= 0.9).float().mean())
    return {"black": round(black, 4), "white": round(white, 4), "grey": round(1 - black - white, 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="zoo name or .safetensors path")
    p.add_argument("--n", type=int, default=5000, help="images and samples (default 5000, the cards' protocol)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="append the result here under the model's name")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = zoo.load(args.model)
    dataset = trained_on(args.model)
    train = make_dataset(dataset, "train", None, False, None)
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(1))[:args.n]
    t0 = time.time()
    recons, zq, zp = [], [], []
    with torch.no_grad():
        for i in range(0, args.n, 250):
            x = batch_of(train, idx[i:i + 250])
            out = model(x, generator=sample_generators(0, len(x), start=i))
            recons.append(out.x_recon)
            zq.append(out.z)
            zp.append(model.sample(len(x), generator=sample_generators(7, len(x), start=i), return_latents=True)[1])
    zq, zp = torch.cat(zq, 1), torch.cat(zp, 1)
    cq, cp = torch.cov(zq.sum(0).T), torch.cov(zp.sum(0).T)
    rq, rp = zq.mean((0, 1)), zp.mean((0, 1))
    real, recons, samples = batch_of(train, idx), torch.cat(recons), generate(model, args.n, seed=0)
    result = {
        "model": args.model, "dataset": dataset, "n": args.n,
        "afd_real_images": afd_scores(real, dataset),
        "afd_reconstructions": afd_scores(recons, dataset),
        "afd_samples_seed0": afd_scores(samples, dataset),
        "pixel_levels": {"real": pixel_levels(real), "reconstructions": pixel_levels(recons),
                         "samples": pixel_levels(samples)},
        "posterior": latent_statistics(zq), "prior": latent_statistics(zp),
        "channel_rate_correlation": round(float(torch.corrcoef(torch.stack([rq, rp]))[0, 1]), 3),
        "channel_rate_abs_difference_mean": round(float((rq - rp).abs().mean()), 4),
        "count_covariance_relative_difference": round(float((cq - cp).norm() / cq.norm()), 3),
        "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        old = json.loads(args.json.read_text()) if args.json.is_file() else {}
        old[args.model] = result
        args.json.write_text(json.dumps(old, indent=1) + "\n")


if __name__ == "__main__":
    main()
