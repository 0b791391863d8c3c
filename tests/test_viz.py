"""Each viz function on a tiny model: the figure's axes, rows and data extents."""
import re

import matplotlib.text
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


def _ticks(ax) -> list[tuple[float, float]]:
    """(t, row) of every spike tick a raster axis draws."""
    segs = ax.collections[0].get_segments()
    return sorted((float(s[0][0]), float((s[0][1] + s[1][1]) / 2)) for s in segs)


def test_raster_uses_time_on_x(tmp_path):
    s = (torch.rand(16, 10, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    fig = viz.raster(s, neurons=range(6), order_by_rate=True, title="r")
    ax = fig.axes[0]
    assert fig.get_suptitle() == "r"
    assert ax.get_xlim()[1] - ax.get_xlim()[0] == pytest.approx(16)
    assert abs(ax.get_ylim()[0] - ax.get_ylim()[1]) == pytest.approx(6)
    assert viz.save(fig, tmp_path / "r.svg").read_text().startswith("<?xml")


def test_raster_draws_every_spike_in_one_colour_and_rates_as_bars_without_text():
    s = torch.zeros(8, 40)
    s[:, 3] = 1            # the busiest: rate 1
    s[::2, 7] = 1          # rate 0.5
    s[0, 11] = 1           # rate 0.125
    fig = viz.raster(s, order_by_rate=True, title="t")
    spikes_ax, rate_ax = fig.axes
    # busiest first: channel 3 on row 0 at every step, channel 7 on row 1 at even steps, 11 on row 2
    assert _ticks(spikes_ax) == sorted([(t, 0.0) for t in range(8)] + [(t, 1.0) for t in range(0, 8, 2)] + [(0, 2.0)])
    assert len({tuple(c) for c in spikes_ax.collections[0].get_colors()}) == 1
    widths = [b.get_width() for b in rate_ax.patches]
    assert len(widths) == 40 and widths[:4] == [1.0, 0.5, 0.125, 0.0]
    # no number printed per row (SpikingJelly's panel wrote f"{rate:.2f}" on each): the figure's
    # only words are the title, the axis labels and the tick labels
    fig.canvas.draw()
    words = [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text()]
    assert not [w for w in words if re.fullmatch(r"\d\.\d\d", w)]
    assert len(rate_ax.texts) == 0 and len(spikes_ax.texts) == 0
    assert rate_ax.get_title() == "" and spikes_ax.get_title() == ""
    assert len(fig.axes) == 2 and len(viz.raster(s, firing_rate_panel=False).axes) == 1


def test_rasters_side_by_side():
    trains = [torch.eye(5), torch.zeros(5, 3)]
    fig = viz.rasters(trains, titles=["a", "b"])
    assert [a.get_title() for a in fig.axes] == ["a", "b"]
    assert _ticks(fig.axes[0]) == [(float(i), float(i)) for i in range(5)]


def test_latent_view_rows_and_heatmaps(tiny_model):
    images, z = tiny_model.sample(3, seed=0, return_latents=True)
    _, out = tiny_model.prior.generate(3, 4, torch.Generator().manual_seed(0))
    pi_p = tiny_model.prior.probs(out)
    fig = viz.latent_view(images, z, pi_q=pi_p, pi_p=pi_p)
    assert len(fig.axes) == 3 * 4 + 1   # and the probabilities' colour bar
    heat = fig.axes[1].images[0].get_array()
    assert heat.shape == (6, 4)  # channels x time
    assert np.allclose(fig.axes[2].images[0].get_array(), pi_p[:, 0].numpy().T)
    assert fig.axes[-1].get_ylabel() == "Bernoulli probability"


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
    heat = np.asarray(fig.axes[1].images[0].get_array())   # one row per layer, one column per step
    first = rec[list(rec)[0]]
    assert heat.shape == (len(rec), tiny_cfg.n_steps)
    assert np.allclose(heat[0], first.flatten(1).float().mean(1).numpy())
    lif = tiny_model.encoder[0].lif
    inputs = torch.tensor([0.1, 0.2, 0.3, 0.0]).view(4, 1)
    fig = viz.membrane_trace(inputs, lif, neuron=0)
    assert len(fig.axes) >= 2
    v_line = fig.axes[0].lines[0].get_ydata()
    assert np.allclose(v_line, [0.1, 0.225, 0.3, 0.0], atol=1e-6)


def test_membrane_trace_comes_from_the_neuron(monkeypatch):
    """The plotted u[t] is the neuron's stored membrane (store_v_seq), so the neuron's own
    parameters shape it, and the LIF handed in keeps its state."""
    from fsvae_sj.spiking import lif as neurons
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


def test_psp_and_mmd_legend_says_colour_is_channel_and_style_is_q_or_p():
    fig = viz.psp_and_mmd(torch.ones(4, 1, 3), torch.zeros(4, 1, 3), channels=(0, 2))
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["channel 0", "channel 2", "posterior q", "prior p"]
    assert [ln.get_linestyle() for ln in fig.axes[0].lines] == ["-", "--", "-", "--"]


ENERGY = {"fsvae": {"additions": 9.6e7, "multiplications": 2.0e6}, "ann": {"additions": 3.2e7, "multiplications": 3.0e7},
          "ratio_additions": 3.0, "ratio_multiplications": 2 / 30, "energy_paper_rule_uJ": {"fsvae": 90.0, "ann": 130.0}}


def test_op_counts_bars_are_linear_and_ratios_are_dots_around_one():
    fig = viz.op_counts(ENERGY, paper_ratios={"additions": 6.8, "multiplications": 1 / 13},
                        authors_loop={"ratio_additions": 5.0, "ratio_multiplications": 0.08})
    ops_ax, energy_ax, ratio_ax = fig.axes
    # bars from 0 on linear axes, in millions: FSVAE adds, FSVAE muls, ANN adds, ANN muls
    assert ops_ax.get_yscale() == "linear" and ops_ax.get_ylim()[0] == 0
    assert [b.get_height() for b in ops_ax.patches] == pytest.approx([96, 2, 32, 30])
    assert [t.get_text() for t in ops_ax.texts] == ["96.0", "2.0", "32.0", "30.0",   # the bars' values
                                                    "FSVAE/ANN\n3", "FSVAE/ANN\n0.0667 = 1/15"]
    assert energy_ax.get_ylim()[0] == 0 and [b.get_height() for b in energy_ax.patches] == [90.0, 130.0]
    # ratios: one dot series each for ours, the authors' loop and the paper, x = the ratio
    assert ratio_ax.get_xscale() == "log"
    xs = [list(c.get_offsets()[:, 0]) for c in ratio_ax.collections]
    assert xs == [pytest.approx([3.0, 2 / 30]), pytest.approx([5.0, 0.08]), pytest.approx([6.8, 1 / 13])]
    assert [t.get_text() for t in ratio_ax.get_legend().get_texts()] == [
        "ours", "ours, authors' O(T^2) loop", "paper (MNIST)"]
    assert any(ln.get_xdata()[0] == 1 for ln in ratio_ax.lines)   # the reference line at 1


HISTORY = [{"epoch": 0, "cpu_hours": 1.0, "test_recon_mse": 0.15},
           {"epoch": 1, "cpu_hours": "2.0", "test_recon_mse": "0.1", "afd": 50.0, "ema_afd": 45.0,
            "ema_test_recon_mse": 0.11}]
EVALS = [{"step": 5, "cpu_hours": 1.5, "afd": 55.0, "ema_afd": "", "test_recon_mse": 0.12},
         {"step": 10, "cpu_hours": 2.0, "afd": 50.0, "ema_afd": 45.0, "test_recon_mse": 0.1,
          "ema_test_recon_mse": 0.11, "emacal_afd": 42.0}]


def test_curve_series_merges_log_and_evaluations_by_cpu_hours():
    s = viz.curve_series(EVALS, HISTORY)
    assert s == {"afd": ([1.5, 2.0], [55.0, 50.0]), "ema_afd": ([2.0], [45.0]), "emacal_afd": ([2.0], [42.0]),
                 "test_recon_mse": ([1.0, 1.5, 2.0], [0.15, 0.12, 0.1]), "ema_test_recon_mse": ([2.0], [0.11])}


def test_learning_curve_plots_the_records_the_published_point_and_the_paper():
    fig = viz.learning_curve(EVALS, HISTORY, title="x", published={"cpu_hours": 2.1, "autoencoder_frechet": 40.0,
                                                                   "recon_mse": 0.09},
                             paper={"autoencoder_frechet": 15.0, "recon_mse": 0.03})
    afd_ax, mse_ax = fig.axes
    lines = {ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata())) for ln in afd_ax.lines}
    assert lines == {"raw weights": ([1.5, 2.0], [55.0, 50.0]), "EMA of the weights": ([2.0], [45.0]),
                     "EMA, decoder statistics on prior samples": ([2.0], [42.0]),
                     "published entry: 40": ([2.1], [40.0]), "paper (Table 1): 15": ([0, 1], [15.0, 15.0])}
    lines = {ln.get_label(): list(ln.get_ydata()) for ln in mse_ax.lines}
    assert lines["raw weights"] == [0.15, 0.12, 0.1] and lines["published entry: 0.09"] == [0.09]


def test_image_grid_shape():
    fig = viz.image_grid(torch.zeros(10, 1, 4, 4), nrow=4, title="t")
    assert len(fig.axes) == 12 and sum(1 for a in fig.axes if a.images) == 10
