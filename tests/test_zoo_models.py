"""The zoo's FSVAE models generate: what a user sees from `python -m fsvae_sj.sample`."""
import pytest
import torch

from fsvae_sj import datasets as data
from fsvae_sj import publish, zoo
from fsvae_sj.metrics import afd_score, evaluate, generate

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
