"""Where the samples lose against the reconstructions: the decoder on other latents, and the prior's trains.

    python benchmarks/latent_gap.py --model NAME|FILE [--dataset NAME] [--n 2000]

For the first N training images (eval mode, one generator seeded 0) the decoder runs on three kinds of
latent spike trains ``[T, N, latent]``, and the AE Frechet distance of its images to the test and the
training statistics is printed for each (``fsvae_sj.metrics.afd_scores``):

- ``posterior``: the posterior's z (the reconstructions, as benchmarks/recon_frechet.py);
- ``teacher-forced prior``: at each step the prior's own draw given the posterior's z before it
  (one of its k spikes per channel, uniformly, as it generates), so every step is the prior's guess
  with the image's history;
- ``half``: each spike taken from one of the two above with probability 1/2.

Then the posterior's trains against N of the prior's free-running ones (``model.sample``, seed 0):
firing rate per step, the mean and largest gap of the per-channel rates, and the channels' spike
counts' spread over images and their mean absolute correlation. Used in benchmarks/RESULTS.md ("What
the samples lack now").
"""
from __future__ import annotations

import json

import torch

from fsvae_sj.metrics import afd_scores
from recon_frechet import model_and_training_images   # this folder's scripts: one command line for both


def count_correlation(z: torch.Tensor) -> torch.Tensor:
    """Correlation ``[L, L]`` over images of each channel's spike count in trains ``z [T, N, L]``."""
    return torch.corrcoef(z.sum(0).T)


def main(argv=None) -> int:
    a, dataset, model, x = model_and_training_images(
        __doc__.split("\n")[0], argv, n_help="the first N training images, and N prior samples (default 2000)")
    g = torch.Generator().manual_seed(0)
    latents = {"posterior": [], "teacher-forced prior": [], "half": []}
    with torch.no_grad():
        for i in range(0, a.n, 250):
            z_q, _ = model.posterior.sample(model.encode(x[i:i + 250]), g)
            out_p = model.prior.teacher_forced(z_q)
            idx = torch.randint(0, model.config.k, z_q.shape, generator=g)
            z_p = model.prior.pick(out_p, idx)
            latents["posterior"].append(z_q)
            latents["teacher-forced prior"].append(z_p)
            latents["half"].append(torch.where(torch.rand(z_q.shape, generator=g) < 0.5, z_p, z_q))
        latents = {k: torch.cat(v, dim=1) for k, v in latents.items()}
        result = {"model": a.model, "dataset": dataset, "n": a.n}
        for name, z in latents.items():
            images = torch.cat([model.decode(z[:, i:i + 250]) for i in range(0, a.n, 250)])
            result[f"afd {name}"] = afd_scores(images, dataset)
        result["agreement teacher-forced prior / posterior"] = (
            latents["teacher-forced prior"] == latents["posterior"]).float().mean().item()
        _, z_free = model.sample(a.n, seed=0, return_latents=True)
    z_q = latents["posterior"]
    rate_q, rate_p = z_q.mean(1), z_free.mean(1)   # [T, L]
    corr_q, corr_p = count_correlation(z_q), count_correlation(z_free)
    off = ~torch.eye(corr_q.shape[0], dtype=torch.bool)
    result.update({
        "rate per step posterior": [round(v, 4) for v in rate_q.mean(1).tolist()],
        "rate per step prior": [round(v, 4) for v in rate_p.mean(1).tolist()],
        "per-channel-and-step rate gap mean": (rate_q - rate_p).abs().mean().item(),
        "per-channel-and-step rate gap max": (rate_q - rate_p).abs().max().item(),
        "count sd over images posterior": z_q.sum(0).std(0).mean().item(),
        "count sd over images prior": z_free.sum(0).std(0).mean().item(),
        "mean |count correlation| posterior": corr_q[off].nan_to_num().abs().mean().item(),
        "mean |count correlation| prior": corr_p[off].nan_to_num().abs().mean().item(),
    })
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
