"""Losses on small cases computed by hand."""
import math

import pytest
import torch

from fsvae_sj.models.losses import bernoulli_kld, fsvae_loss, gaussian_vae_loss, mmd_loss, psp


def test_psp_by_hand():
    v = torch.tensor([1.0, 0.0, 1.0, 1.0]).view(4, 1, 1)
    # s1 = 0.5, s2 = 0.25, s3 = 0.625, s4 = 0.8125
    assert psp(v).flatten().tolist() == [0.5, 0.25, 0.625, 0.8125]


def test_mmd_mean_and_sum():
    q = torch.tensor([1.0, 0.0]).view(2, 1, 1)
    p = torch.zeros(2, 1, 1)
    # psp(q) = [0.5, 0.25]; squared: 0.25, 0.0625
    assert mmd_loss(q, p).item() == pytest.approx((0.25 + 0.0625) / 2)
    assert mmd_loss(q, p, reduction="sum").item() == pytest.approx(0.25 + 0.0625)
    with pytest.raises(ValueError):
        mmd_loss(q, p, reduction="max")


def test_bernoulli_kld_by_hand():
    q = torch.tensor([0.5]).view(1, 1, 1)
    p = torch.tensor([0.25]).view(1, 1, 1)
    expected = 0.5 * math.log(0.51 / 0.26) + 0.5 * math.log(0.51 / 0.76)
    assert bernoulli_kld(q, p).item() == pytest.approx(expected, rel=1e-6)


def test_fsvae_loss_terms():
    x = torch.zeros(2, 1, 2, 2)
    xr = torch.full((2, 1, 2, 2), 0.5)
    q = torch.ones(3, 2, 4, 5)
    p = torch.zeros(3, 2, 4, 5)
    out = fsvae_loss(x, xr, q, p)
    assert out["recon"].item() == pytest.approx(0.25)
    # psp of ones: 0.5, 0.75, 0.875
    assert out["distance"].item() == pytest.approx((0.25 + 0.5625 + 0.765625) / 3)
    assert out["loss"].item() == pytest.approx(out["recon"].item() + out["distance"].item())
    kl = fsvae_loss(x, xr, q, p, distance="kld")
    assert kl["loss"].item() == pytest.approx(0.25 + 1e-4 * kl["distance"].item())
    with pytest.raises(ValueError):
        fsvae_loss(x, xr, q, p, distance="l2")


def test_gaussian_kl_zero_at_standard_normal():
    mu, lv = torch.zeros(3, 4), torch.zeros(3, 4)
    out = gaussian_vae_loss(torch.zeros(3, 1), torch.zeros(3, 1), mu, lv, kld_weight=1.0)
    assert out["distance"].item() == 0.0
    out = gaussian_vae_loss(torch.zeros(3, 1), torch.zeros(3, 1), torch.ones(3, 4), lv, kld_weight=1.0)
    assert out["distance"].item() == pytest.approx(2.0)
