"""Operation counts against hand computations on tiny networks."""
import pytest
import torch
from torch import nn

from fsvae_sj import ANNVAE, ANNVAEConfig, FSVAE, FSVAEConfig, backend
from fsvae_sj.layers import linear_block
from fsvae_sj.opcount import PaperCounter, compare, count_spikingjelly, energy_pj, fan_out


def test_fan_out_rules():
    assert fan_out(nn.Conv2d(1, 8, 3, stride=2, padding=1)) == 9 * 8 / 4
    assert fan_out(nn.Linear(5, 7)) == 7
    ct = nn.ConvTranspose2d(4, 8, 3, stride=2, padding=1, output_padding=1)
    assert fan_out(ct, "code") == 9 * 8 * 4
    assert fan_out(ct, "exact") == 9 * 8


def test_spike_fed_linear_and_lif_by_hand(tiny_cfg):
    block = linear_block(3, 2, tiny_cfg).eval()
    spikes = torch.tensor([[[1., 0., 1.]], [[0., 0., 1.]]])  # T=2, N=1: 3 input spikes
    c = PaperCounter(nn.Sequential(block))
    out = block(spikes)
    c.close()
    silent = float((out == 0).sum())
    # linear: 3 spikes x 2 outputs + 4 bias additions; LIF: 4 elements (adds), silent ones decay (muls)
    assert c.additions == 3 * 2 + 4 + 4
    assert c.multiplications == silent


def test_analog_first_conv_by_hand():
    conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
    net = nn.Sequential(conv)
    c = PaperCounter(net, analog={"0"}, repeat={"0": 3})
    net(torch.rand(2, 1, 8, 8))
    c.close()
    muls = 2 * 1 * 8 * 8 * 3 * (9 * 4 / 4)
    assert c.multiplications == muls
    assert c.additions == muls + 2 * 4 * 4 * 4 * 3


def test_fsvae_against_ann_counts(tiny_cfg):
    torch.manual_seed(0)
    f = FSVAE(FSVAEConfig(latent_dim=8, k=2, n_steps=2)).eval()
    a = ANNVAE(ANNVAEConfig(latent_dim=8)).eval()
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    res = compare(f, a, x)
    # the ANN's multiplications are exactly its MACs: sum over layers of inputs x fan-out
    assert res["ann"]["multiplications"] > 0 and res["ann"]["additions"] > res["ann"]["multiplications"]
    # FSVAE multiplies only in the first conv and in LIF decays
    first = 1 * 32 * 32 * 2 * (9 * 32 / 4)
    assert res["fsvae"]["multiplications"] >= first
    # the paper's rule with its constants written out (45 nm: 0.9 pJ per AC, 4.6 pJ per MAC)
    macs = res["ann"]["multiplications"]
    acs = res["ann"]["additions"] - macs
    assert res["energy_paper_rule_uJ"]["ann"] == pytest.approx((0.9 * acs + 4.6 * macs) / 1e6, rel=1e-9)


def test_energy_constants():
    assert energy_pj(1, 0) == pytest.approx(0.9) and energy_pj(0, 1) == pytest.approx(4.6)
    assert energy_pj(10, 2) == pytest.approx(9.0 + 9.2)


@pytest.mark.skipif(backend.LEGACY, reason="op_counter exists only in SpikingJelly 2")
def test_spikingjelly_counters_on_a_small_net():
    lin = nn.Linear(3, 2)
    x = torch.tensor([[1., 0., 1.], [0., 0., 1.]])

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def reconstruct(self, x, seed=0):
            return self.lin(x)
    res = count_spikingjelly(Wrap(), x)
    assert res["synops"] == 3 * 2 / 2  # 3 spikes x 2 outputs, per image (2 images)
    assert res["macs"] == 0
    assert res["energy_uJ"] == pytest.approx(0.9 * res["acs"] / 1e6)


def test_authors_prefix_loop_counts_more_additions():
    torch.manual_seed(0)
    from fsvae_sj.opcount import count_fsvae
    f = FSVAE(FSVAEConfig(latent_dim=8, k=2, n_steps=3)).eval()
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    ours, authors = count_fsvae(f, x), count_fsvae(f, x, loop="prefix")
    assert authors["additions"] > ours["additions"]
    assert f.loop == "incremental"
