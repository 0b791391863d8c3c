"""What the prior-free stage's set MMD sees: the prior against the posterior, and the posterior
against itself (the estimator's spread when there is nothing to see), on spike trains and on the
firing probabilities they are drawn from, on the decoder's images of the trains and on the frozen
encoder's spike trains of those images (issue 20).

    python benchmarks/set_mmd_power.py --model mnist --batches 64,256 --rounds 8 \
        --json benchmarks/set_mmd_power.json

For one model (a zoo name or a .safetensors of ours), in eval mode, each round draws 2 x n training
images (seeded) and n prior samples: ``latent_set_mmd(prior, posterior of the first n)`` and
``latent_set_mmd(posterior of the second n, posterior of the first n)``, for the trains and for the
probabilities (:meth:`fsvae_sj.models.losses.latent_set_mmd`, :meth:`FSVAE.free_prior_forward`'s
two features). A feature the stage can learn from has a prior-posterior value well above the null's
spread. Results are appended to the JSON file under the model's name.
"""
import argparse
import json
import statistics
from pathlib import Path

import torch

from fsvae_sj import zoo
from fsvae_sj.datasets import batch_of, make_dataset
from fsvae_sj.models.losses import latent_set_mmd, set_mmd
from fsvae_sj.zoo import trained_on

# What the set MMD compares: the latent trains, their firing probabilities, the decoder's images of
# the trains (pixels), and the frozen encoder's spike trains of those images (a learnt feature space).
FEATURES = ("spikes", "probabilities", "images", "encoder")


def measure(model, images, n: int, rounds: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    found = {f"{feature}_{pair}": [] for feature in FEATURES for pair in ("prior", "null")}
    for _ in range(rounds):
        idx = torch.randperm(len(images), generator=g)[:2 * n]
        with torch.no_grad():
            z_q, out_q = model.posterior.sample(model.encode(batch_of(images, idx)), g)
            z_p, out_p = model.prior.generate(n, model.config.n_steps, g)
            x_q, x_p = model.decode(z_q), model.decode(z_p)
            e_q, e_p = model.encode(x_q), model.encode(x_p)
        for feature, q, p, mmd in (
                ("spikes", z_q, z_p, latent_set_mmd),
                ("probabilities", model.posterior.probs(out_q), model.prior.probs(out_p), latent_set_mmd),
                ("images", x_q, x_p, lambda a, b: set_mmd(a.flatten(1), b.flatten(1))),
                ("encoder", e_q, e_p, latent_set_mmd)):
            # the set's images lie along dim 0 of the images, dim 1 of the trains [T, N, ...]
            dim = 0 if feature == "images" else 1
            first, second = q.narrow(dim, 0, n), q.narrow(dim, n, n)
            found[f"{feature}_prior"].append(float(mmd(p, first)))
            found[f"{feature}_null"].append(float(mmd(second, first)))
    summary = {}
    for feature in FEATURES:
        prior, null = found[f"{feature}_prior"], found[f"{feature}_null"]
        summary[feature] = {"prior_mean": statistics.mean(prior), "prior_sd": statistics.stdev(prior),
                            "null_mean": statistics.mean(null), "null_sd": statistics.stdev(null),
                            "signal_to_null_sd": statistics.mean(prior) / statistics.stdev(null)}
    return {"rounds": found, "summary": summary}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="zoo name or .safetensors")
    p.add_argument("--dataset", default=None, help="training images (default: the model's)")
    p.add_argument("--batches", default="64,256", help="comma-separated set sizes n")
    p.add_argument("--rounds", type=int, default=8, help="draws per set size (>= 2)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="append the results here under --model")
    a = p.parse_args(argv)
    if a.rounds < 2:
        p.error("--rounds must be >= 2 (a spread needs two)")
    torch.set_num_threads(a.threads)
    model = zoo.load(a.model).eval()
    images = make_dataset(a.dataset or trained_on(a.model), "train", None, False, None)
    out = {}
    for n in (int(v) for v in a.batches.split(",")):
        out[n] = measure(model, images, n, a.rounds)
        for feature, s in out[n]["summary"].items():
            print(f"n={n:4d} {feature:13s} prior-posterior {s['prior_mean']:.4f} +- {s['prior_sd']:.4f}, "
                  f"null {s['null_mean']:.4f} +- {s['null_sd']:.4f}, signal / null sd {s['signal_to_null_sd']:.1f}",
                  flush=True)
    if a.json:
        old = json.loads(a.json.read_text()) if a.json.exists() else {}
        old[a.model] = out
        tmp = a.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(old, indent=1))
        tmp.replace(a.json)


if __name__ == "__main__":
    main()
