"""tdBN + LIF in one compiled pass against the two modules run one after the other."""
import pytest
import torch

from fsvae_sj import FSVAE, FSVAEConfig
from fsvae_sj.spiking import fused_block
from fsvae_sj.spiking.sj import reset_net
from fsvae_sj.spiking.layers import deconv_block
from fsvae_sj.spiking.lif import use_fused_kernels

from conftest import near_threshold

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def block(dtype, seed=0):
    torch.manual_seed(seed)
    blk = use_fused_kernels(deconv_block(8, 6, FSVAEConfig()).to(dtype))
    return near_threshold(blk, seed)


def run(blk, s_in, fused: bool, grad=None):
    """The block on spikes ``s_in``; with ``grad`` also backward: outputs, membrane, stats, grads."""
    reset_net(blk)
    for p in blk.parameters():
        p.grad = None
    stats = (blk.bn.running_mean.clone(), blk.bn.running_var.clone())
    x = s_in.clone().requires_grad_(grad is not None)
    calls = []
    fire = fused_block.tdbn_lif
    fused_block.tdbn_lif = lambda *a: calls.append(1) or fire(*a)
    real_applies = fused_block.applies
    if not fused:
        fused_block.applies = lambda *a: False
    try:
        with torch.set_grad_enabled(grad is not None):
            y = blk(x)
            if grad is not None:
                (y * grad).sum().backward()
    finally:
        fused_block.tdbn_lif, fused_block.applies = fire, real_applies
    assert len(calls) == int(fused)
    out = {"spikes": y.detach(), "v": blk.lif.v.detach().clone(),
           "running_mean": blk.bn.running_mean.clone(), "running_var": blk.bn.running_var.clone()}
    if grad is not None:
        out.update(x=x.grad, weight=blk.layer.weight.grad, gamma=blk.bn.weight.grad, beta=blk.bn.bias.grad)
    blk.bn.running_mean.copy_(stats[0])
    blk.bn.running_var.copy_(stats[1])
    return out


def spikes_in(dtype, n=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(16, n, 8, 7, 7, generator=g) > 0.6).to(dtype)


def test_eval_spikes_and_membranes_are_bit_identical():
    blk = block(torch.float32).eval()
    s = spikes_in(torch.float32)
    ref, ours = run(blk, s, False), run(blk, s, True)
    assert 0 < float(ref["spikes"].mean()) < 1
    for k in ref:
        assert torch.equal(ours[k], ref[k]), k
    assert ours["spikes"].shape == s.shape[:2] + (6, 14, 14)


def test_training_float64_equals_the_modules_to_rounding():
    blk = block(torch.float64).train()
    s = spikes_in(torch.float64)
    grad = torch.randn(16, 5, 6, 14, 14, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ref, ours = run(blk, s, False, grad), run(blk, s, True, grad)
    assert 0 < float(ref["spikes"].mean()) < 1
    assert torch.equal(ours["spikes"], ref["spikes"])
    for k in ("v", "running_mean", "running_var", "x", "weight", "gamma", "beta"):
        scale = float(ref[k].abs().max()) + 1e-12
        assert float((ours[k] - ref[k]).abs().max()) <= 1e-12 * scale * 100, k


def test_training_float32_no_less_accurate_than_the_modules():
    """Against the float64 result: spike flips and statistics errors of the fused float32 step
    no worse than the two modules' (sample of several seeds)."""
    flips = {False: 0, True: 0}
    err = {False: 0.0, True: 0.0}

    def blk(dtype, seed):
        b = block(dtype, seed).train()
        b.bn.momentum = 1.0  # running statistics = this batch's: their error undiluted
        return b

    for seed in range(3):
        exact = run(blk(torch.float64, seed), spikes_in(torch.float64, 16, seed), False)
        for fused in (False, True):
            got = run(blk(torch.float32, seed), spikes_in(torch.float32, 16, seed), fused)
            flips[fused] += int((got["spikes"].double() != exact["spikes"]).sum())
            err[fused] = max(err[fused], float(((got["running_var"].double() - exact["running_var"])
                                                / exact["running_var"]).abs().max()))
    assert flips[True] <= flips[False] + 2, flips
    assert err[True] <= err[False], err


def test_when_the_fused_path_applies():
    blk = block(torch.float32).train()
    x = spikes_in(torch.float32).flatten(0, 1).contiguous(memory_format=torch.channels_last)
    y = blk.layer(x).unflatten(0, (16, 5))
    assert fused_block.applies(blk.bn, blk.lif, y)
    assert fused_block.applies(blk.bn, blk.lif, y[:1].expand(16, *y.shape[1:]))  # one image over T
    assert not fused_block.applies(blk.bn, blk.lif, y.contiguous())  # NCHW steps
    blk.lif.store_v_seq = True
    assert not fused_block.applies(blk.bn, blk.lif, y)
    blk.lif.store_v_seq = False
    handle = blk.lif.register_forward_hook(lambda *a: None)  # e.g. opcount's spike counter
    assert not fused_block.applies(blk.bn, blk.lif, y)
    handle.remove()
    handle = blk.bn.register_full_backward_hook(lambda *a: None)  # e.g. a gradient monitor
    assert not fused_block.applies(blk.bn, blk.lif, y)
    handle.remove()
    handle = torch.nn.modules.module.register_module_forward_hook(lambda *a: None)  # global
    assert not fused_block.applies(blk.bn, blk.lif, y)
    handle.remove()
    assert fused_block.applies(blk.bn, blk.lif, y)
    blk.lif.v = torch.zeros_like(y[0])  # a membrane kept from an earlier call
    assert not fused_block.applies(blk.bn, blk.lif, y)
    reset_net(blk)
    use_fused_kernels(blk, False)
    assert not fused_block.applies(blk.bn, blk.lif, y)
    use_fused_kernels(blk, True)
    blk.eval()
    assert not fused_block.applies(blk.bn, blk.lif, y)  # eval with gradients: the modules
    with torch.no_grad():
        assert fused_block.applies(blk.bn, blk.lif, y)


def test_model_samples_and_reconstructions_are_identical_on_the_fused_path(tiny_cfg):
    from conftest import make_alive

    torch.manual_seed(0)
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    model = make_alive(FSVAE(tiny_cfg), x)
    ref = (model.sample(5, seed=3), model.reconstruct(x, seed=3))
    use_fused_kernels(model)
    ours = (model.sample(5, seed=3), model.reconstruct(x, seed=3))
    assert all(torch.equal(a, b) for a, b in zip(ref, ours))
    assert ref[0].std() > 0.01  # not a silent model


def test_blocks_with_other_neurons_or_norms_run_them():
    from fsvae_sj.spiking.lif import LIF

    class LoudLIF(LIF):  # a subclass may change the dynamics: it must run as written
        def multi_step_forward(self, x_seq):
            return super().multi_step_forward(x_seq + 100.0)

    s = spikes_in(torch.float32)
    blk = block(torch.float32).train()
    blk.lif = use_fused_kernels(LoudLIF())
    assert float(blk(s).mean()) == 1.0
    blk.lif = torch.nn.ReLU()  # any module in place of the neuron
    assert blk(s).shape == (16, 5, 6, 14, 14)
    blk = block(torch.float32).train()
    blk.bn = torch.nn.Identity()
    assert blk(s).shape == (16, 5, 6, 14, 14)


def test_one_value_per_channel_in_training_is_refused_like_batch_norm():
    blk = block(torch.float32).train()
    one = (torch.rand(1, 1, 8, 1, 1) > 0.5).float()
    blk.layer = torch.nn.Conv2d(8, 6, 1)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        blk(one)
