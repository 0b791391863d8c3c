"""Each viz function on a tiny model: the figure's axes, rows and data extents."""
import numpy as np
import pytest
import torch

from fsvae_sj import FSVAE, viz


@pytest.fixture
def tiny_model(tiny_cfg):
    torch.manual_seed(0)
    return FSVAE(tiny_cfg).eval()


def test_select_neurons_subset_and_rate_order():
    s = torch.zeros(4, 3)
    s[:, 2] = 1
    s[0, 0] = 1
    sel, idx = viz.select_neurons(s, neurons=[0, 2], order_by_rate=True)
    assert idx.tolist() == [2, 0] and sel[:, 0].sum() == 4
    with pytest.raises(ValueError, match=r"\[T, N\]"):
        viz.select_neurons(torch.zeros(2, 3, 4))


def test_raster_uses_time_on_x(tmp_path):
    s = (torch.rand(16, 10, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    fig = viz.raster(s, neurons=range(6), order_by_rate=True, title="r")
    ax = fig.axes[0]
    assert ax.get_title() == "r"
    assert ax.get_xlim()[1] - ax.get_xlim()[0] == pytest.approx(16)
    assert abs(ax.get_ylim()[0] - ax.get_ylim()[1]) == pytest.approx(6)
    assert viz.save(fig, tmp_path / "r.svg").read_text().startswith("<?xml")


def test_rasters_side_by_side():
    trains = [torch.eye(5), torch.zeros(5, 3)]
    fig = viz.rasters(trains, titles=["a", "b"])
    assert [a.get_title() for a in fig.axes] == ["a", "b"]
    pts = fig.axes[0].collections[0].get_offsets()
    assert len(pts) == 5 and np.allclose(np.asarray(pts)[:, 0], np.asarray(pts)[:, 1])


def test_latent_view_rows_and_heatmaps(tiny_model):
    images, z = tiny_model.sample(3, seed=0, return_latents=True)
    _, out = tiny_model.prior.generate(3, 4, torch.Generator().manual_seed(0))
    pi_p = tiny_model.prior.probs(out)
    fig = viz.latent_view(images, z, pi_q=pi_p, pi_p=pi_p)
    assert len(fig.axes) == 3 * 4
    heat = fig.axes[1].images[0].get_array()
    assert heat.shape == (6, 4)  # channels x time


def test_layer_activity_and_membrane_trace(tiny_model, tiny_cfg):
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    rec = viz.record_spikes(tiny_model, lambda: tiny_model.reconstruct(x, seed=0))
    assert "encoder.0.lif" in rec and rec["encoder.0.lif"].shape[0] == tiny_cfg.n_steps
    # the incremental posterior is called once per step: its records span T steps too
    assert rec["posterior.layers.0.lif"].shape[0] == tiny_cfg.n_steps
    fig = viz.layer_activity(rec)
    bars = fig.axes[0].patches
    assert len(bars) == len(rec)
    assert bars[0].get_width() == pytest.approx(float(rec[list(rec)[0]].mean()))
    lif = tiny_model.encoder[0].lif
    inputs = torch.tensor([0.1, 0.2, 0.3, 0.0]).view(4, 1)
    fig = viz.membrane_trace(inputs, lif, neuron=0)
    assert len(fig.axes) >= 2
    v_line = fig.axes[0].lines[0].get_ydata()
    assert np.allclose(v_line, [0.1, 0.225, 0.3, 0.0], atol=1e-6)


def test_membrane_trace_comes_from_the_neuron(monkeypatch):
    """The plotted u[t] is the neuron's stored membrane (store_v_seq), so the neuron's own
    parameters shape it, and the LIF handed in keeps its state."""
    from fsvae_sj import neurons
    calls = []
    eager = neurons._eager_forward
    monkeypatch.setattr(neurons, "_eager_forward", lambda *a: calls.append(a) or eager(*a))
    inputs = torch.tensor([[0.1, 0.2, 0.3, 0.0], [0.0, 0.0, 0.0, 0.0]]).T  # [T=4, 2 neurons]
    lif = neurons.LIF(v_threshold=0.3, decay=0.5)
    lif(torch.full((2, 2), 0.05))
    state = lif.v.clone()
    fig = viz.membrane_trace(inputs, lif, neuron=0)
    assert len(calls) == 2  # one call of the real neuron for the trace
    # decay 0.5, threshold 0.3: 0.1, 0.05 + 0.2, 0.125 + 0.3 (fires), reset then 0.0
    assert np.allclose(fig.axes[0].lines[0].get_ydata(), [0.1, 0.25, 0.425, 0.0], atol=1e-6)
    assert torch.equal(lif.v, state) and not lif.store_v_seq


def test_psp_and_mmd_per_step_bars():
    q = torch.ones(4, 2, 3)
    p = torch.zeros(4, 2, 3)
    fig = viz.psp_and_mmd(q, p, channels=(0,))
    heights = [b.get_height() for b in fig.axes[1].patches]
    assert np.allclose(heights, [0.25, 0.5625, 0.765625, 0.87890625])


def test_image_grid_shape():
    fig = viz.image_grid(torch.zeros(10, 1, 4, 4), nrow=4, title="t")
    assert len(fig.axes) == 12 and sum(1 for a in fig.axes if a.images) == 10
