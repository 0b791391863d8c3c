"""The seeding module's draws: one shape convention, ``[n, *shape]``, for one generator and for one
per sample, with the values pinned (a change of them changes every seeded image)."""
import pytest
import torch

from conftest import near_threshold
from fsvae_sj import seeding
from fsvae_sj.models import bernoulli
from fsvae_sj.seeding import sample_generators


def test_per_sample_and_single_generators_give_the_same_shape_and_pinned_values():
    per_sample = seeding.randint(sample_generators(0, 2), 5, 2, (4,), "cpu")
    single = seeding.randint(torch.Generator().manual_seed(0), 5, 2, (4,), "cpu")
    assert per_sample.tolist() == [[1, 3, 3, 2], [4, 3, 0, 2]]
    assert single.tolist() == [[4, 4, 3, 0], [3, 4, 2, 3]]
    noise = seeding.randn(sample_generators(1, 2), 2, (2,), "cpu", torch.float64)
    assert noise.dtype == torch.float64 and noise.shape == (2, 2)
    assert [round(v, 4) for v in noise.flatten().tolist()] == [-0.7917, -0.7764, 0.3025, 0.1857]
    assert seeding.rand(torch.Generator().manual_seed(0), 1, (), "cpu").shape == (1,)
    assert round(seeding.rand(torch.Generator().manual_seed(0), 1, (), "cpu").item(), 4) == 0.4963


def test_a_list_of_another_length_is_refused():
    with pytest.raises(ValueError, match="3 generators for 2 samples"):
        seeding.randint(sample_generators(0, 3), 5, 2, (4,), "cpu")


def test_choices_drawn_step_by_step_are_those_drawn_at_once(tiny_cfg, monkeypatch):
    """The prior's loop draws each step's choices as it goes; per-sample streams give the very values
    of drawing all steps at once (so images did not change when the loop stopped drawing ahead)."""
    torch.manual_seed(0)
    prior = near_threshold(bernoulli.Prior(tiny_cfg)).eval()
    n, T, L = 3, tiny_cfg.n_steps, tiny_cfg.latent_dim
    z, _ = prior.generate(n, T, sample_generators(5, n))
    assert 0.1 < z.mean() < 0.9 and not torch.equal(z, prior.generate(n, T, sample_generators(6, n))[0])
    at_once = seeding.randint(sample_generators(5, n), tiny_cfg.k, n, (T, L), "cpu").transpose(0, 1)
    served = iter(at_once)
    monkeypatch.setattr(bernoulli, "draw_indices", lambda shape, k, g, device: next(served))
    z_at_once, _ = prior.generate(n, T, sample_generators(5, n))
    assert torch.equal(z, z_at_once)


def test_posterior_and_prior_are_two_classes_and_the_old_one_warns(tiny_cfg):
    from fsvae_sj import FSVAE
    m = FSVAE(tiny_cfg)
    assert type(m.posterior) is bernoulli.Posterior and type(m.prior) is bernoulli.Prior
    assert not hasattr(m.prior, "sample") and not hasattr(m.posterior, "generate")
    with pytest.warns(DeprecationWarning, match="Posterior and Prior"):
        old = bernoulli.BernoulliSampler(0, tiny_cfg)
    assert set(old.state_dict()) == set(m.prior.state_dict())
