"""The paper's Table 1 columns for a checkpoint (or for real test images); the library behind
``python -m fsvae_sj.evaluate``.

Metrics (JSON keys): ``recon_mse`` (eval-mode MSE on the test set),
``afd`` (Autoencoder Frechet distance with the AUTHORS' autoencoder and test
statistics, MNIST/FashionMNIST shipped in ``fsvae_sj/assets/afd``, MIT, (c) 2021
Hiromichi Kamata), ``afd_val`` (the same features' distance to the TRAINING
images' statistics: the validation number to choose weights by),
``inception_score`` (torchvision Inception-v3, 10 splits) and ``fid`` (clean-fid).
A metric that could not be computed is null, with the reason in ``notes``; every
computed number carries its protocol in ``protocol``.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .spiking import sj
from ._version import __version__
from .datasets import DATASETS, batch_of, canonical, check_model_fits, make_dataset
from .errors import ConfigError, FsvaeError, InputError
from .seeding import sample_generators

ASSETS = Path(__file__).resolve().parent / "assets" / "afd"
METRICS = ("recon", "afd", "afd-val", "is", "fid")

# The paper's Table 1 (Kamata et al., AAAI 2022), by (dataset, arch): what the cards compare with.
PAPER_TABLE1 = {
    ("mnist", "ann-vae"): {"recon_mse": 0.048, "inception_score": 5.947, "fid": 112.5, "autoencoder_frechet": 17.09},
    ("mnist", "fsvae"): {"recon_mse": 0.031, "inception_score": 6.209, "fid": 97.06, "autoencoder_frechet": 35.54},
    ("fashion-mnist", "ann-vae"): {"recon_mse": 0.050, "inception_score": 4.252, "fid": 123.7,
                                   "autoencoder_frechet": 18.08},
    ("fashion-mnist", "fsvae"): {"recon_mse": 0.031, "inception_score": 4.551, "fid": 90.12,
                                 "autoencoder_frechet": 15.75},
}


# -- Frechet distance and Inception score: pure statistics ------------------------------
def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, np.float64)
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))."""
    from scipy import linalg
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    s1, s2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    covmean = linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def inception_score(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))), mean and std over ``splits`` chunks."""
    scores = []
    for part in np.array_split(np.asarray(probs, np.float64), splits):
        py = part.mean(0, keepdims=True)
        kl = (part * (np.log(part + 1e-12) - np.log(py + 1e-12))).sum(1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


# -- the authors' autoencoder (encoder half) ------------------------------------------------
class AFDEncoder(nn.Module):
    """4 x [Conv 3x3/2 -> BN -> LeakyReLU(0.01)], flatten, Linear -> 64 features."""

    def __init__(self, in_channels: int = 1, dims=(32, 64, 128, 256), latent: int = 64):
        super().__init__()
        blocks, c = [], in_channels
        for h in dims:
            blocks.append(nn.Sequential(nn.Conv2d(c, h, 3, 2, 1), nn.BatchNorm2d(h), nn.LeakyReLU(0.01)))
            c = h
        self.encoder = nn.Sequential(*blocks)
        self.latent_layer = nn.Linear(4 * dims[-1], latent)

    def forward(self, x):
        return self.latent_layer(self.encoder(x).flatten(1))


def load_afd(dataset: str) -> tuple[AFDEncoder, np.ndarray, np.ndarray]:
    dataset = canonical(dataset)
    if DATASETS[dataset].afd is None:
        shipped = sorted(d.name for d in DATASETS.values() if d.afd)
        raise ConfigError(f"no autoencoder for {dataset} in this package (shipped: {shipped}); "
                         f"the CelebA/CIFAR10 ones are in the upstream repository")
    weights, stats = DATASETS[dataset].afd
    sd = torch.load(ASSETS / weights, map_location="cpu", weights_only=True)
    enc = AFDEncoder()
    enc.load_state_dict({k: v for k, v in sd.items() if k.startswith(("encoder.", "latent_layer."))}, strict=True)
    st = np.load(ASSETS / stats)
    return enc.eval(), st["mu"], st["sigma"]


@torch.no_grad()
def features(net: nn.Module, images: torch.Tensor, batch_size: int = 500) -> np.ndarray:
    return torch.cat([net(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]).numpy()


REFERENCES = ("test", "train")


@functools.lru_cache(maxsize=None)
def train_reference(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the authors' autoencoder features of ALL the training images of
    ``dataset``: the validation reference. Choosing weights by their distance to the test
    statistics, then reporting that distance, flatters the number; this one chooses instead.
    Computed once per process (60,000 images: about 15 s of one CPU core)."""
    enc = load_afd(dataset)[0]
    train = make_dataset(dataset, "train")
    feats = [features(enc, batch_of(train, torch.arange(i, min(i + 5000, len(train)))))
             for i in range(0, len(train), 5000)]
    return gaussian_stats(np.concatenate(feats))


def afd_scores(images: torch.Tensor, dataset: str, references=REFERENCES) -> dict[str, float]:
    """Autoencoder Frechet distances of images ``[N, 1, 32, 32]`` in [-1, 1] to each reference:
    ``"test"`` (the authors' test statistics, the paper's number) and ``"train"`` (the training
    images' statistics, :func:`train_reference`: the validation number). Features are computed once."""
    bad = sorted(set(references) - set(REFERENCES))
    if bad:
        raise ConfigError(f"unknown AE Frechet reference(s) {bad}; expected some of {REFERENCES}")
    enc, mu, sigma = load_afd(dataset)
    stats = gaussian_stats(features(enc, images.float().cpu()))
    refs = {"test": lambda: (mu, sigma), "train": lambda: train_reference(canonical(dataset))}
    return {r: frechet_distance(*stats, *refs[r]()) for r in references}


def afd_score(images: torch.Tensor, dataset: str) -> float:
    """Autoencoder Frechet distance of images ``[N, 1, 32, 32]`` in [-1, 1] to the authors' test
    statistics (the paper's Table 1 number)."""
    return afd_scores(images, dataset, ("test",))["test"]


# -- Inception-based metrics: real code paths, unavailable offline without weights ---------------
class MetricUnavailable(FsvaeError, FileNotFoundError):
    """A metric this machine cannot compute: its weights or package are not present (offline)."""


def _inception_probs(images: torch.Tensor) -> np.ndarray:
    from torchvision.models import Inception_V3_Weights, inception_v3
    w = Inception_V3_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name
    if not cached.is_file():
        raise MetricUnavailable(f"Inception-v3 weights not present at {cached} (offline: cannot download {w.url})")
    net = inception_v3(weights=w).eval()
    x = (images.cpu() + 1) / 2
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        return torch.cat([F.softmax(net(x[i:i + 64]), 1) for i in range(0, len(x), 64)]).numpy()


def _clean_fid(images: torch.Tensor, dataset: str) -> float:
    try:
        from cleanfid import fid
    except ImportError as e:
        raise MetricUnavailable("clean-fid is not installed (pip install clean-fid)") from e
    ref = DATASETS[dataset].clean_fid
    if ref is None:
        raise MetricUnavailable(f"clean-fid has no precomputed reference statistics for {dataset}")
    imgs = ((images.cpu() + 1) * 127.5).clamp(0, 255).to(torch.uint8)
    imgs = imgs.expand(-1, 3, -1, -1) if imgs.shape[1] == 1 else imgs
    taken = [0]

    def next_batch(z):   # clean-fid asks for a batch of len(z) images, [B, 3, H, W] in 0..255
        batch = imgs[taken[0]:taken[0] + len(z)].float()
        taken[0] += len(z)
        return batch
    return float(fid.compute_fid(gen=next_batch, dataset_name=ref[0], dataset_res=ref[1],
                                 dataset_split=ref[2], num_gen=len(imgs), mode="clean"))


# -- the evaluation itself ------------------------------------------------------------------
@torch.no_grad()
def recon_mse(model, test_set, batch_size: int = 250, seed: int = 0, progress: bool = False) -> float:
    """Eval-mode reconstruction MSE over ``test_set`` (mean over all pixels, images in [-1, 1]).

    The model's training/eval mode is restored afterwards; ``progress``: a progress bar on stderr."""
    from tqdm import tqdm
    core = model.module if hasattr(model, "module") else model
    was = core.training
    core.eval()
    total, count = 0.0, 0
    device = next(core.parameters()).device
    for i in tqdm(range(0, len(test_set), batch_size), desc=f"recon MSE, {len(test_set)} test images",
                  unit="batch", disable=not progress):
        idx = torch.arange(i, min(i + batch_size, len(test_set)))
        x = batch_of(test_set, idx).to(device)
        gens = sample_generators(seed, len(idx), start=i)   # image i's draws: (seed, i), any batch size
        total += float(((core.reconstruct(x, generator=gens) - x) ** 2).sum())
        count += x.numel()
    core.train(was)
    return total / count


@torch.no_grad()
def generate(model, n: int, seed: int, batch_size: int = 500, progress: bool = False) -> torch.Tensor:
    """``n`` samples ``[n, C, H, W]`` (CPU); image i depends only on (seed, i); ``progress``: a
    progress bar on stderr."""
    from tqdm import tqdm
    return torch.cat([model.sample(m, generator=sample_generators(seed, m, start=i)).cpu()
                      for i in tqdm(range(0, n, batch_size), desc=f"{n} samples", unit="batch", disable=not progress)
                      for m in [min(batch_size, n - i)]])


def evaluate(model, dataset: str, metrics=("recon", "afd"), num_samples: int = 5000, seed: int = 0,
             real: bool = False, data_root=None, test_limit: int | None = None, download: bool = False,
             progress: bool = False) -> dict:
    """The requested metrics with their protocol; unavailable ones are None with a note. Raises
    ValueError before any work for a model that cannot take the dataset's images. ``progress``:
    a progress bar on stderr for each long phase (sampling, reconstruction)."""
    dataset = canonical(dataset)
    if model is not None and not real:
        check_model_fits((model.module if hasattr(model, "module") else model).config, dataset)
    bad = sorted(set(metrics) - set(METRICS))
    if bad:
        raise ConfigError(f"unknown metric(s) {bad}; expected some of {METRICS}")
    result = {"dataset": dataset, "recon_mse": None, "afd": None, "afd_val": None, "inception_score": None, "fid": None,
              "protocol": {}, "notes": {}, "versions": _versions()}
    test = make_dataset(dataset, "test", data_root, download, limit=test_limit)
    images = None
    if set(metrics) & {"afd", "afd-val", "is", "fid"}:   # recon alone needs no samples
        if real:
            images = test.images if hasattr(test, "images") else torch.stack([test[i][0] for i in range(len(test))])
            result["protocol"]["images"] = f"the real {dataset} test images ({len(images)})"
        else:
            if num_samples < 2:
                raise InputError(f"num_samples must be >= 2 for a Frechet distance or score, got {num_samples}")
            images = generate(model, num_samples, seed, progress=progress)
            result["protocol"]["images"] = f"{num_samples} generated images, seed {seed}"
    if "recon" in metrics:
        if real or model is None:
            result["notes"]["recon_mse"] = "not computed for real images"
        else:
            result["recon_mse"] = recon_mse(model, test, seed=seed, progress=progress)
            result["protocol"]["recon_mse"] = (f"MSE in [-1, 1] over all {len(test)} {dataset} test images, "
                                               f"eval mode, posterior seed {seed}")
    # One pass of the autoencoder serves both references.
    afd_keys = {"afd": "test", "afd_val": "train"}
    wanted = [key for key in afd_keys if key.replace("_", "-") in metrics]
    if wanted:
        try:
            scores = afd_scores(images, dataset, [afd_keys[key] for key in wanted])
        except ValueError as e:
            result["notes"].update({key: str(e) for key in wanted})
        else:
            features_of = f"Frechet distance of the authors' {dataset} autoencoder features ({DATASETS[dataset].afd[0]})"
            against = {"afd": f"their test statistics ({DATASETS[dataset].afd[1]})",
                       "afd_val": f"the statistics of all {dataset} training images (the validation number)"}
            for key in wanted:
                result[key] = scores[afd_keys[key]]
                result["protocol"][key] = f"{features_of} to {against[key]}"
    if "is" in metrics:
        try:
            result["inception_score"] = inception_score(_inception_probs(images))[0]
            result["protocol"]["inception_score"] = "torchvision Inception-v3 (IMAGENET1K_V1), 10 splits"
        except FileNotFoundError as e:
            result["notes"]["inception_score"] = f"unavailable: {e}"
    if "fid" in metrics:
        try:
            result["fid"] = _clean_fid(images, dataset)
            result["protocol"]["fid"] = "clean-fid, mode clean"
        except FileNotFoundError as e:
            result["notes"]["fid"] = f"unavailable: {e}"
    return result


def _versions() -> dict:
    return {"fsvae_sj": __version__, "torch": torch.__version__, "spikingjelly": sj.SJ_VERSION,
            "numpy": np.__version__}
