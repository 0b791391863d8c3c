"""The neuron's equations exist once: change the charge in fsvae_sj/spiking/equations.py and every
route follows (eager, in-place inference, compiled, FlexSN's core, the tdBN + LIF block, the block's
inference path)."""
import pytest
import torch

from fsvae_sj import FSVAEConfig
from fsvae_sj.spiking import equations, fused_block, lif as lif_module
from fsvae_sj.spiking.compiled import can_compile
from fsvae_sj.spiking.layers import SpikingBlock, deconv_block
from fsvae_sj.spiking.lif import LIF, use_fused_kernels
from fsvae_sj.spiking.sj import reset_net
from fsvae_sj.spiking.surrogate import Rect

COMPILES = can_compile(torch.device("cpu"))


def _doubled_charge(monkeypatch):
    """Patch the one charge to take twice the input: h = decay * v + 2 x. Doubling is exact in
    floating point, so each route must then give bit for bit what it gives unpatched on 2 x."""
    original = equations.charge
    monkeypatch.setattr(equations, "charge", lambda v, x, decay, out=None: original(v, x * 2, decay, out=out))


def _inputs():
    g = torch.Generator().manual_seed(5)
    # the channels-last layout of a convolution's output, as the compiled kernels see it
    x = (torch.randn(6 * 3, 4, 5, 5, generator=g) * 0.15).contiguous(memory_format=torch.channels_last)
    return x.view(6, 3, 4, 5, 5)


ROUTES = ["eager", "eager-inference"] + (["compiled"] if COMPILES else [])


@pytest.mark.parametrize("route", ROUTES)
def test_every_lif_route_follows_the_one_charge(route, monkeypatch):
    x = _inputs()

    def run(inputs):
        lif = LIF(surrogate=Rect.preset("paper", 0.2, 0.5), route=route.removesuffix("-inference"),
                  store_v_seq=route != "eager-inference")
        with torch.set_grad_enabled(route != "eager-inference"):
            spikes = lif(inputs.clone().requires_grad_(route != "eager-inference"))
        return spikes.detach(), lif.v.detach()

    plain, plain_twice = run(x), run(x * 2)
    _doubled_charge(monkeypatch)
    patched = run(x)
    assert 0.02 < float(plain[0].mean()) < float(plain_twice[0].mean()) < 0.6   # the change shows in spikes
    assert not torch.equal(patched[0], plain[0])
    assert torch.equal(patched[0], plain_twice[0]) and torch.equal(patched[1], plain_twice[1])


def test_flexsn_core_follows_the_one_charge(monkeypatch):
    """FlexSN (SpikingJelly 2 on CUDA) traces this core; on the CPU the core itself runs."""
    x, v = _inputs()[0].flatten(), torch.full((300,), 0.1)
    consts = [torch.tensor(c) for c in (0.25, 0.2, 1.0, -0.2)]
    plain, plain_twice = lif_module._flexsn_step(x, v, *consts), lif_module._flexsn_step(x * 2, v, *consts)
    _doubled_charge(monkeypatch)
    patched = lif_module._flexsn_step(x, v, *consts)
    assert not torch.equal(patched[0], plain[0])
    assert torch.equal(patched[0], plain_twice[0]) and torch.equal(patched[1], plain_twice[1])


BLOCK_PATHS = ["inference"] + (["fused-training", "fused-eval"] if COMPILES else [])


@pytest.mark.parametrize("path", BLOCK_PATHS)
def test_the_spiking_block_paths_follow_the_one_charge(path, monkeypatch):
    """A block's own paths (the tdBN + LIF pass on the compiled route, the in-place inference path
    in eval mode without autograd): doubling the charged input equals doubling tdBN's output,
    exactly (weight and bias times 2)."""
    y, training, fused = _inputs(), path == "fused-training", path.startswith("fused")

    def make():
        blk = deconv_block(4, 4, FSVAEConfig()).train(training)
        return use_fused_kernels(blk) if fused else blk

    blk, twice = make(), make()
    with torch.no_grad():
        blk.bn.running_mean.uniform_(-0.05, 0.05, generator=torch.Generator().manual_seed(6))
        blk.bn.running_var.fill_(0.02)
        blk.bn.bias.uniform_(-0.1, 0.1, generator=torch.Generator().manual_seed(7))
    twice.load_state_dict(blk.state_dict())
    with torch.no_grad():
        twice.bn.weight.mul_(2)
        twice.bn.bias.mul_(2)
    calls, block_pass, inference = [], fused_block.tdbn_lif, SpikingBlock._fire_inference
    monkeypatch.setattr(fused_block, "tdbn_lif", lambda *a: calls.append("fused") or block_pass(*a))
    monkeypatch.setattr(SpikingBlock, "_fire_inference", lambda *a: calls.append("inference") or inference(*a))

    def run(block):
        reset_net(block)
        with torch.set_grad_enabled(training):
            return block.fire(y).detach()

    plain, plain_twice = run(blk), run(twice)
    _doubled_charge(monkeypatch)
    patched = run(blk)
    assert calls == ["fused" if fused else "inference"] * 3
    assert 0.02 < float(plain.mean()) < float(plain_twice.mean())
    assert not torch.equal(patched, plain) and torch.equal(patched, plain_twice)
