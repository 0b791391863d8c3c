"""Eval mode without autograd: the in-place, step-by-step paths of the spiking blocks and the LIF
give the modules' outputs (spikes and membranes) bit for bit, and leave inputs they do not own alone."""
import pytest
import torch

from fsvae_sj import FSVAEConfig
from fsvae_sj.spiking.sj import reset_net
from fsvae_sj.spiking.layers import SpikingBlock, deconv_block, linear_block
from fsvae_sj.spiking.lif import LIF

from conftest import near_threshold


def make(kind, dtype, seed=0):
    torch.manual_seed(seed)
    cfg = FSVAEConfig()
    blk = deconv_block(8, 6, cfg) if kind == "conv" else linear_block(12, 40, cfg, alpha=2.0)
    blk = near_threshold(blk.to(dtype), seed).eval()
    g = torch.Generator().manual_seed(seed + 1)
    shape = (16, 5, 8, 7, 7) if kind == "conv" else (16, 5, 12)
    return blk, (torch.rand(shape, generator=g) > 0.6).to(dtype)


def modules(blk, x):
    """The block through its modules (autograd on: the inference path stands aside)."""
    reset_net(blk)
    with torch.enable_grad():
        y = blk(x).detach()
    return y, blk.lif.v.detach().clone()


@pytest.fixture
def inference_calls(monkeypatch):
    calls = []
    real = SpikingBlock._fire_inference
    monkeypatch.setattr(SpikingBlock, "_fire_inference",
                        lambda self, y, out: calls.append(out is y) or real(self, y, out))
    return calls


@pytest.mark.parametrize("kind", ["conv", "linear"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_block_inference_equals_the_modules(kind, dtype, inference_calls):
    blk, x = make(kind, dtype)
    ref, v_ref = modules(blk, x)
    reset_net(blk)
    with torch.no_grad():
        y = blk(x)
    assert inference_calls == [True]   # the weight layer's fresh output, overwritten in place
    assert torch.equal(y, ref) and torch.equal(blk.lif.v, v_ref)   # membranes: every rounding
    assert y.stride() == ref.stride()
    assert 0.05 < float(ref.mean()) < 0.95   # firing and silence both exercised


def test_block_inference_carries_the_membrane_across_calls(inference_calls):
    blk, x = make("linear", torch.float32)
    # The reference takes the same one-step calls through the modules: a one-step linear layer is
    # another GEMM than the T-step one, whose roundings depend on the CPU's kernels (they differed on
    # an AMD EPYC without AVX-512), and the inputs are built to sit within rounding of the threshold.
    reset_net(blk)
    with torch.enable_grad():
        ref = torch.cat([blk(x[t:t + 1]).detach() for t in range(x.shape[0])])
    v_ref = blk.lif.v.detach().clone()
    assert inference_calls == []
    reset_net(blk)
    with torch.no_grad():
        steps = [blk(x[t:t + 1]) for t in range(x.shape[0])]   # the incremental sampling loop
    assert len(inference_calls) == x.shape[0]
    assert torch.equal(torch.cat(steps), ref) and torch.equal(blk.lif.v, v_ref)
    assert 0.05 < float(ref.mean()) < 0.95


def test_fire_leaves_an_input_it_does_not_own_alone(inference_calls):
    # as the encoder's first block: one image's weighted input repeated over T
    blk, _ = make("conv", torch.float32)
    y0 = torch.randn(5, 6, 14, 14, generator=torch.Generator().manual_seed(3)).contiguous(
        memory_format=torch.channels_last) * 0.5
    y = y0.unsqueeze(0).expand(16, *y0.shape)
    reset_net(blk)
    with torch.enable_grad():
        ref = blk.fire(y).detach()
    reset_net(blk)
    with torch.no_grad():
        out = blk.fire(y)
    assert inference_calls == [False]
    assert torch.equal(out, ref) and torch.equal(y0, y[0]) and torch.equal(y[0], y[15])
    assert out[0].is_contiguous(memory_format=torch.channels_last)
    assert 0.05 < float(ref.mean()) < 0.95


def test_hooks_see_the_modules_run(inference_calls):
    blk, x = make("conv", torch.float32)
    seen = []
    blk.lif.register_forward_hook(lambda m, i, o: seen.append(o))   # e.g. opcount's spike counter
    reset_net(blk)
    with torch.no_grad():
        y = blk(x)
    assert inference_calls == [] and len(seen) == 1 and torch.equal(seen[0], y)


def test_a_weight_layer_output_kept_by_a_hook_is_not_overwritten(inference_calls):
    blk, x = make("conv", torch.float32)
    kept = []
    blk.layer.register_forward_hook(lambda m, i, o: kept.append(o))   # e.g. recording pre-activations
    ref, _ = modules(blk, x)
    before = kept[0].detach().clone()
    reset_net(blk)
    with torch.no_grad():
        y = blk(x)
    assert inference_calls == [False] and torch.equal(y, ref)
    assert torch.equal(kept[1], before) and not torch.equal(kept[1], y.flatten(0, 1))


def test_an_identity_layer_leaves_the_input_alone(inference_calls):
    blk = near_threshold(SpikingBlock(torch.nn.Identity(), 40, FSVAEConfig())).eval()
    x = torch.rand(16, 5, 40, generator=torch.Generator().manual_seed(0)) * 0.6
    before = x.clone()
    ref, _ = modules(blk, x)
    reset_net(blk)
    with torch.no_grad():
        y = blk(x)
    assert inference_calls == [False] and torch.equal(y, ref) and torch.equal(x, before)
    assert 0.05 < float(ref.mean()) < 0.95


def test_lif_without_autograd_equals_the_autograd_path():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 6, 40, generator=g) * 0.15 + 0.08   # charges near threshold: roundings show
    ref_lif, lif = LIF(), LIF()
    with torch.enable_grad():
        ref = torch.cat([ref_lif(x[:7]), ref_lif(x[7:])])
    x_before = x.clone()
    with torch.no_grad():
        ours = torch.cat([lif(x[:7]), lif(x[7:])])
    assert torch.equal(ours, ref) and torch.equal(lif.v, ref_lif.v) and torch.equal(x, x_before)
    assert 0.05 < float(ref.mean()) < 0.95
