"""Operation counts against hand computations on tiny networks, and beside SpikingJelly's counter."""
import json

import pytest
import torch
from torch import nn

from conftest import make_alive
from fsvae_sj import LIF, ANNVAE, ANNVAEConfig, FSVAE, FSVAEConfig, backend
from fsvae_sj.datasets import DEBIAN_FASHION
from fsvae_sj.layers import linear_block
from fsvae_sj.opcount import PaperCounter, compare, count_ann, count_fsvae, count_spikingjelly, energy_pj, fan_out


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

        def forward(self, x):
            return self.lin(x)

        def reconstruct(self, x, seed=0):
            return self(x)
    res = count_spikingjelly(Wrap(), x)
    assert res["synops"] == 3 * 2 / 2  # 3 spikes x 2 outputs, per image (2 images)
    assert res["layers"]["lin"] == {"synops": 3.0, "acs": 3.0, "macs": 0.0}
    assert res["macs"] == 0
    assert res["energy_compute_uJ"] == pytest.approx(0.9 * res["acs"] / 1e6)
    # its memory model: the weights and biases read, float32, at 24.96 pJ per byte
    assert 0 < res["memory_bytes"] <= (6 + 2) * 4
    assert res["energy_with_memory_uJ"] == pytest.approx(res["energy_compute_uJ"] + 24.96 * res["memory_bytes"] / 1e6)


@pytest.mark.skipif(backend.LEGACY, reason="op_counter exists only in SpikingJelly 2")
def test_spikingjelly_agrees_with_the_paper_rule_where_both_count_the_same_thing():
    """Layer by layer, on a firing FSVAE and on the ANN VAE (what differs is in the README)."""
    torch.manual_seed(0)
    T = 3
    f = make_alive(FSVAE(FSVAEConfig(latent_dim=8, k=2, n_steps=T)), torch.rand(4, 1, 32, 32) * 2 - 1)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    paper, sj = count_fsvae(f, x, "exact")["layers"], count_spikingjelly(f, x)["layers"]
    linear = [n for n, m in f.named_modules() if isinstance(m, nn.Linear)]
    lifs = [n for n, m in f.named_modules() if isinstance(m, LIF)]
    assert len(linear) == 8 and len(lifs) == 16
    assert sum(sj[n]["synops"] for n in linear) > 1000   # the network fires: the check below has work
    for n in linear:   # a spike-fed linear layer's additions without its bias: SynOps, exactly
        assert paper[n]["additions"] - paper[n]["bias_additions"] == sj[n]["synops"] == sj[n]["acs"], n
    for n in lifs:     # a LIF layer's additions (one per element and step): its ACs
        assert paper[n]["additions"] == sj[n]["acs"] > 0, n
    # the analog first convolution runs once for all T steps here; the paper counts every step
    assert paper["encoder.0.layer"]["multiplications"] == T * sj["encoder.0.layer"]["macs"] > 0

    a = ANNVAE(ANNVAEConfig(latent_dim=8)).eval()
    paper, sj = count_ann(a, x, "exact"), count_spikingjelly(a, x)
    weights = [n for n, m in a.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    assert len(weights) == 12
    for n in weights:   # the ANN's multiplications with the exact transposed rule: its MACs
        assert paper["layers"][n]["multiplications"] == sj["layers"][n]["macs"] > 0, n
    assert paper["multiplications"] == sum(sj["layers"][n]["macs"] for n in weights)
    # the authors' transposed rule counts stride^2 = 4 times SpikingJelly's MACs there
    code = count_ann(a, x, "code")["layers"]
    assert code["decoder.0.0"]["multiplications"] == 4 * sj["layers"]["decoder.0.0"]["macs"]


@pytest.mark.skipif(not backend.LEGACY, reason="SpikingJelly 2 has an op_counter")
def test_without_an_op_counter_only_the_paper_rule():
    torch.manual_seed(0)
    f = FSVAE(FSVAEConfig(latent_dim=8, k=2, n_steps=2)).eval()
    a = ANNVAE(ANNVAEConfig(latent_dim=8)).eval()
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    assert count_spikingjelly(f, x) is None
    res = compare(f, a, x)
    assert res["spikingjelly"] is None and res["fsvae"]["additions"] > 0


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="apt-get install dataset-fashion-mnist (done by .ci/run)")
def test_ops_cli_prints_both_columns_and_writes_json(tmp_path, capsys):
    from fsvae_sj.cli.ops import main
    out = tmp_path / "ops.json"
    assert main(["--dataset", "fashion-mnist", "-n", "2", "--device", "cpu", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    res = json.loads(out.read_text())
    assert f"{res['fsvae']['additions']:14,.0f}" in text and f"{res['ann']['multiplications']:14,.0f}" in text
    if backend.LEGACY:
        assert res["spikingjelly"] is None
        assert "SpikingJelly 0.0.0.0.14 has no op_counter: the paper's rule only" in text
    else:
        sj = res["spikingjelly"]
        assert f"SpikingJelly {backend.SJ_VERSION} op_counter" in text
        for key in ("synops", "acs", "macs", "memory_bytes"):
            assert f"{sj['fsvae'][key]:14,.0f} {sj['ann'][key]:14,.0f}" in text, key
        assert sj["fsvae"]["macs"] < res["fsvae"]["multiplications"]


def test_authors_prefix_loop_counts_more_additions():
    torch.manual_seed(0)
    f = FSVAE(FSVAEConfig(latent_dim=8, k=2, n_steps=3)).eval()
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    ours, authors = count_fsvae(f, x), count_fsvae(f, x, loop="prefix")
    assert authors["additions"] > ours["additions"]
    assert f.loop == "incremental"
