"""tdBN against the authors' formula, written out here in the time-last layout."""
import pytest
import torch

from fsvae_sj.spiking.tdbn import TdBN


def authors_tdbn(x_tl, mean, var, w, b, alpha, eps=1e-5, v_th=0.2):
    """x_tl: (N, C, H, W, T)."""
    return alpha * v_th * (x_tl - mean[None, :, None, None, None]) / torch.sqrt(
        var[None, :, None, None, None] + eps) * w[None, :, None, None, None] + b[None, :, None, None, None]


def make(alpha=2.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    bn = TdBN(5, alpha=alpha)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(5, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(5, generator=g))
        bn.running_mean.copy_(torch.randn(5, generator=g))
        bn.running_var.copy_(torch.rand(5, generator=g) + 0.5)
    x = torch.randn(4, 3, 5, 2, 2, generator=g) * 2 + 1  # [T, N, C, H, W]
    return bn, x


def to_time_last(x):
    return x.permute(1, 2, 3, 4, 0)


def test_eval_is_bitwise_the_authors_formula():
    bn, x = make()
    bn.eval()
    ref = authors_tdbn(to_time_last(x), bn.running_mean, bn.running_var, bn.weight, bn.bias, alpha=2.0)
    assert torch.equal(to_time_last(bn(x)), ref)


def test_train_statistics_over_batch_time_space_and_running_update():
    bn, x = make(alpha=1.0)
    rm0, rv0 = bn.running_mean.clone(), bn.running_var.clone()
    bn.train()
    y = bn(x)
    xt = to_time_last(x)
    mean = xt.mean([0, 2, 3, 4])
    var = xt.var([0, 2, 3, 4], unbiased=False)
    n = xt.numel() / xt.size(1)
    ref = authors_tdbn(xt, mean, var, bn.weight, bn.bias, alpha=1.0)
    torch.testing.assert_close(to_time_last(y), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bn.running_mean, 0.1 * mean + 0.9 * rm0)
    torch.testing.assert_close(bn.running_var, 0.1 * var * n / (n - 1) + 0.9 * rv0)
    assert int(bn.num_batches_tracked) == 1


def test_gradient_wrt_gamma_is_the_authors_parametrisation():
    bn, x = make(alpha=2.0)
    bn.train()
    w = bn.weight.detach().clone().requires_grad_()
    xt = to_time_last(x)
    ref = authors_tdbn(xt, xt.mean([0, 2, 3, 4]), xt.var([0, 2, 3, 4], unbiased=False), w, bn.bias.detach(), 2.0)
    (g_ref,) = torch.autograd.grad((ref ** 2).sum(), w)
    (g_ours,) = torch.autograd.grad((bn(x) ** 2).sum(), bn.weight)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-4, atol=1e-4)
    assert torch.equal(TdBN(3).weight, torch.ones(3))  # gamma starts at 1, not alpha * V_th


def test_linear_layout_and_bad_shape():
    bn = TdBN(4).eval()
    assert bn(torch.zeros(2, 3, 4)).shape == (2, 3, 4)
    with pytest.raises(ValueError, match=r"\[T, N, 4"):
        bn(torch.zeros(2, 3, 5))
