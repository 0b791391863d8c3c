"""Layers with hand-written backward passes: the same numbers as autograd's, faster."""
import pytest
import torch
from torch import nn

from fsvae_sj import FSVAE
from fsvae_sj.spiking.layers import ConvTranspose2d


@pytest.mark.parametrize("fmt", [torch.channels_last, torch.contiguous_format], ids=["channels_last", "nchw"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv_transpose_equals_torch_and_its_bias_gradient_is_at_least_as_accurate(fmt, dtype):
    torch.manual_seed(0)
    ref = nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1).to(dtype)
    ours = ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1).to(dtype)
    ours.load_state_dict(ref.state_dict())
    x = (torch.rand(256, 16, 8, 8) > 0.7).to(dtype).contiguous(memory_format=fmt)
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ref, y_ours = ref(x_ref), ours(x_ours)
    grad = torch.randn(y_ref.shape, dtype=dtype).contiguous(memory_format=fmt) * 100
    y_ref.backward(grad)
    y_ours.backward(grad)
    assert torch.equal(y_ours, y_ref) and y_ours.stride() == y_ref.stride()
    assert torch.equal(x_ours.grad, x_ref.grad)
    assert torch.equal(ours.weight.grad, ref.weight.grad)
    exact = grad.double().sum((0, 2, 3))
    err_ours = (ours.bias.grad.double() - exact).abs().max()
    err_ref = (ref.bias.grad.double() - exact).abs().max()
    assert err_ours <= err_ref
    if dtype == torch.float64:
        torch.testing.assert_close(ours.bias.grad, ref.bias.grad, rtol=1e-13, atol=1e-9)


def test_conv_transpose_without_bias_and_with_frozen_input():
    torch.manual_seed(0)
    ref = nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1, bias=False)
    ours = ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1, bias=False)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 4, 5, 5)
    ref(x).square().sum().backward()
    ours(x).square().sum().backward()
    assert torch.equal(ours.weight.grad, ref.weight.grad)


def test_readout_gradient_is_each_steps_weight_times_the_image_gradient(tiny_cfg):
    model = FSVAE(tiny_cfg)
    T, c = tiny_cfg.n_steps, tiny_cfg.hidden_dims[0]
    size = tiny_cfg.image_size
    # spikes in the layout the LIF hands over (channels-last steps)
    spikes = (torch.rand(T, 5, size, size, c) > 0.5).float().permute(0, 1, 4, 2, 3).requires_grad_()
    out = model.readout(spikes)
    weights = torch.randn(out.shape)
    (out * weights).sum().backward()
    # the same read-out written with autograd's own broadcast product and sum over time
    coef = model.readout_coefficients(T)
    ref_spikes = spikes.detach().clone().requires_grad_()
    weighted = (coef.view(-1, 1, 1, 1, 1) * ref_spikes).sum(0)
    conv = model.final_layer[1]
    torch.nn.functional.conv_transpose2d(weighted, conv.weight, conv.bias * coef.sum(), conv.stride,
                                         conv.padding, conv.output_padding).mul(weights).sum().backward()
    torch.testing.assert_close(spikes.grad, ref_spikes.grad, rtol=1e-6, atol=1e-7)
    assert spikes.grad.stride() == spikes.stride()
    # step t's gradient is coef[t] times one image-shaped gradient, for every t
    base = spikes.grad[-1]
    for t in range(T):
        assert torch.equal(spikes.grad[t], base * coef[t])


def test_spike_inputs_are_kept_as_bool_and_give_the_same_gradients():
    from fsvae_sj.spiking.layers import _SavedAsBool, per_step

    torch.manual_seed(0)
    x = (torch.rand(4, 3, 8, 6, 6) > 0.6).float()
    flat = x.flatten(0, 1).contiguous(memory_format=torch.channels_last)
    hooks = _SavedAsBool(flat)
    dtype, packed = hooks.pack(flat)
    assert packed.dtype == torch.bool and dtype == torch.float32
    back = hooks.unpack((dtype, packed))
    assert torch.equal(back, flat) and back.stride() == flat.stride()
    weight = torch.randn(5, 8, 3, 3)
    assert hooks.pack(weight)[1] is weight  # anything else is kept as it is
    conv = nn.Conv2d(8, 5, 3, padding=1)
    grads = []
    for spikes in (False, True):
        conv.zero_grad()
        xi = x.clone().requires_grad_()
        per_step(conv, xi, spikes=spikes).square().sum().backward()
        grads.append((xi.grad, conv.weight.grad.clone()))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])


@pytest.mark.parametrize("values", ["analog", "counts", "signed", "nan"])
def test_inputs_that_are_not_spikes_keep_their_gradients(values):
    from fsvae_sj.spiking.layers import per_step

    g = torch.Generator().manual_seed(0)
    x = {"analog": torch.rand(3, 2, 4, 5, 5, generator=g),
         "counts": torch.randint(0, 3, (3, 2, 4, 5, 5), generator=g).float(),
         "signed": torch.randint(-1, 2, (3, 2, 4, 5, 5), generator=g).float(),
         "nan": (torch.rand(3, 2, 4, 5, 5, generator=g) > 0.5).float()}[values]
    if values == "nan":
        x[0, 0, 0, 0, 0] = float("nan")
    conv = nn.Conv2d(4, 3, 3, padding=1)
    grads = []
    for spikes in (False, True):
        conv.zero_grad()
        per_step(conv, x, spikes=spikes).sum().backward()
        grads.append(conv.weight.grad.clone())
    assert torch.equal(grads[0], grads[1]) or (values == "nan" and torch.equal(grads[0].isnan(), grads[1].isnan()))


def test_conv_transpose_twice_differentiable():
    torch.manual_seed(0)
    ref = nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1)
    ours = ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 4, 5, 5)
    penalties = []
    for m in (ref, ours):
        xi = x.clone().requires_grad_()
        (gx,) = torch.autograd.grad(m(xi).square().sum(), xi, create_graph=True)
        m.zero_grad()
        gx.square().sum().backward()  # a gradient penalty
        penalties.append((m.weight.grad.clone(), m.bias.grad.clone()))
    torch.testing.assert_close(penalties[1][0], penalties[0][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(penalties[1][1], penalties[0][1], rtol=1e-5, atol=1e-6)
