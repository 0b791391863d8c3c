"""The zoo's FSVAE models generate: what a user sees from `python -m fsvae_sj.sample`."""
import hashlib

import pytest
import torch

from fsvae_sj import datasets as data
from fsvae_sj import zoo
from fsvae_sj.zoo import publish
from fsvae_sj.metrics import afd_score, evaluate, generate
from fsvae_sj.seeding import sample_generators

FSVAE_ENTRIES = ["fashion-mnist", "mnist"]


@pytest.fixture(scope="module", params=FSVAE_ENTRIES)
def entry(request):
    return request.param, zoo.load(request.param)


def test_seeds_give_different_varied_images(entry):
    name, m = entry
    a, za = m.sample(16, seed=0, return_latents=True)
    b, zb = m.sample(16, seed=1, return_latents=True)
    assert not torch.equal(za, zb) and (a - b).abs().mean() > 0.1
    assert publish.sample_spread(m) > 2 * publish.MIN_SAMPLE_STD   # the 64 images of seed 0 differ from each other
    assert float(za.mean()) > 0.01   # the prior fires


def test_reconstructions_follow_the_input(entry):
    name, m = entry
    if not data.DEBIAN_FASHION.is_dir() and name == "fashion-mnist":
        pytest.skip("needs dataset-fashion-mnist")
    x = data.make_dataset(name, "test", limit=16).images
    r = m.reconstruct(x, seed=0)
    shuffled = m.reconstruct(x.roll(1, 0), seed=0).roll(-1, 0)
    # each reconstruction is much nearer its own input than the other inputs
    own = ((r - x) ** 2).mean()
    assert own < 0.5 * ((r - x.roll(1, 0)) ** 2).mean()
    assert ((shuffled - x) ** 2).mean() < 0.5 * ((shuffled - x.roll(1, 0)) ** 2).mean()


def test_quality_beats_a_constant_image(entry):
    """The AE Frechet distance of 500 samples against that of 500 copies of their mean image."""
    name, m = entry
    imgs = generate(m, 500, seed=0)
    constant = imgs.mean(0, keepdim=True).expand_as(imgs).contiguous()
    assert afd_score(imgs, name) < 0.5 * afd_score(constant, name)


@pytest.mark.slow
def test_card_metrics_are_what_the_protocol_measures(entry):
    """The card's numbers, re-measured with its own protocol (5,000 samples, seed 0; the whole
    test set): generation is seeded per sample, so they repeat up to float rounding."""
    name, m = entry
    w = zoo.get_weights(name)
    res = evaluate(m, name, ("recon", "afd"), num_samples=5000, seed=0)
    assert res["afd"] == pytest.approx(w.metrics["autoencoder_frechet"], abs=0.01)
    assert res["recon_mse"] == pytest.approx(w.metrics["recon_mse"], abs=1e-4)
    assert "5000 generated images, seed 0" in w.eval_protocol["images"]


def _sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def pixel_sums(images: torch.Tensor) -> list[float]:
    return images.double().flatten(1).sum(1).tolist()


PINNED_WEIGHTS = "06493e7b240518fe3fcd9503042ac973c95242854c9006886b0b2cd0cc055cc4"


def test_fashion_mnist_outputs_are_pinned():
    """The zoo model's eval-mode outputs for fixed seeds (spikes and latents bit for bit, images to
    rounding), as recorded before the sampling loop was reworked for speed (issue 23): a faster
    loop must draw the same choices and fire the same spikes. The spike hashes hold on any CPU (spikes are 0/1; a flip needs a
    membrane within rounding of the threshold). Images are the decoder's float32 arithmetic, whose
    roundings depend on the CPU's kernels (an AMD EPYC without AVX-512 gave other image bytes than
    the Intel machine they were recorded on, from the same spikes): they are pinned by each image's
    pixel sum (1,024 pixels in [-1, 1]), to within 2e-3, far above rounding and far below any change
    of spikes.
    The pins belong to one weights file: when the entry is republished they are re-recorded with
    the code of that commit (last: ve13s856, a decoder stage on the absolute error: the images and reconstructions
    moved, the prior's and the posterior's spikes stayed bit for bit, 2026-12-04)."""
    assert zoo.get_weights("fashion-mnist").sha256 == PINNED_WEIGHTS, "the entry changed: re-record the pins"
    m = zoo.load("fashion-mnist")
    img, z = m.sample(4, seed=0, return_latents=True)
    assert _sha256(z) == "14c472bd9c208cfdb57269f2423a0bdd89f732322e2122901680188095cc91f0"
    assert pixel_sums(img) == pytest.approx([-161.81832, -335.73049, -319.43845, -589.82964], rel=0, abs=2e-3)
    x = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    out = m(x, generator=sample_generators(0, 4))
    assert _sha256(out.z) == "0647de0b92a136be4a28e67e65c69baba5d1ce88bb2d1db317d7988f5721dded"
    assert _sha256(out.q_out) == "2e538c6752968d36dac94416ded9f064745fc4678b22a77ee6f1257c698aa454"
    assert pixel_sums(m.reconstruct(x, seed=0)) == pytest.approx([57.58667, 123.33724, 53.18921, 16.09616], rel=0, abs=2e-3)
