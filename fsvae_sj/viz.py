"""Pictures of what FSVAE's spikes do, of operation counts and of learning curves. Plain functions
returning matplotlib Figures.

Membrane traces come from SpikingJelly's ``visualizing`` (``plot_one_neuron_v_s``). Rasters are
drawn here: SpikingJelly's ``plot_1d_spikes`` prints one rate per row (unreadable past a dozen rows)
and colours spikes by row number; ours draws every spike in black beside a bar of each row's rate.
Everything works headless (Agg); :func:`save` writes PNG or SVG.
"""
from __future__ import annotations

import copy
import io
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from .spiking.sj import sj_plot
from .errors import InputError
from .files import atomic_write_bytes
from .models.losses import psp
from .spiking.lif import LIF
from .opcount import PJ_PER_AC, PJ_PER_MAC


def _np(x) -> np.ndarray:
    return x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)


def select_neurons(spikes, neurons=None, order_by_rate: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``spikes [T, N]`` restricted to ``neurons`` (indices) and optionally sorted by
    firing rate, highest first. Returns (spikes [T, n], the neuron indices kept)."""
    s = _np(spikes)
    if s.ndim != 2:
        raise InputError(f"expected a spike train [T, N], got shape {s.shape}")
    idx = np.arange(s.shape[1]) if neurons is None else np.asarray(neurons)
    s = s[:, idx]
    if order_by_rate:
        order = np.argsort(-s.mean(0), kind="stable")
        s, idx = s[:, order], idx[order]
    return s, idx


def _draw_raster(ax, s: np.ndarray) -> None:
    """Spikes ``s [T, n]`` as one black tick per spike (time on x, row on y, row 0 at the top)."""
    t, n = np.nonzero(s)
    ax.vlines(t, n - 0.4, n + 0.4, color="k", linewidth=1.5)
    ax.set_xlim(-0.5, s.shape[0] - 0.5)
    ax.set_ylim(s.shape[1] - 0.5, -0.5)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel("time step t")


def raster(spikes, neurons=None, order_by_rate: bool = False, title: str = "spikes", figsize=(8, 5), dpi=100,
           firing_rate_panel: bool = True):
    """Raster of ``[T, N]`` spikes (0/1): time on x, one row per neuron (row 0 at the top), one
    black tick per spike; beside it (``firing_rate_panel``) one bar per row, its firing rate
    (spikes per step, 0..1, on a shared axis). The title sits above the whole figure.
    Raises ValueError if ``spikes`` is not 2-D."""
    s, _ = select_neurons(spikes, neurons, order_by_rate)
    if firing_rate_panel:
        fig, (ax, side) = plt.subplots(1, 2, figsize=figsize, dpi=dpi, sharey=True, layout="constrained",
                                       gridspec_kw={"width_ratios": (4, 1)})
    else:
        fig, ax = plt.subplots(figsize=figsize, dpi=dpi, layout="constrained")
    _draw_raster(ax, s)
    ax.set_ylabel("neuron, busiest first" if order_by_rate else "neuron")
    if firing_rate_panel:
        side.barh(np.arange(s.shape[1]), s.mean(0), height=0.8, color="0.45")
        side.set_xlim(0, 1)
        side.set_xticks([0, 0.5, 1], ["0", "0.5", "1"])
        side.set_xlabel("firing rate")
        side.grid(axis="x", color="0.85")
        side.set_axisbelow(True)
        side.tick_params(axis="y", left=False)
    fig.suptitle(title)
    return fig


def rasters(trains, titles=None, neurons=None, order_by_rate: bool = False, figsize=None, dpi=100):
    """Several ``[T, N]`` rasters side by side, one axis each (black ticks, as :func:`raster`)."""
    trains = list(trains)
    titles = titles or [f"train {i}" for i in range(len(trains))]
    fig, axes = plt.subplots(1, len(trains), figsize=figsize or (3.2 * len(trains), 4), dpi=dpi, squeeze=False)
    for ax, train, title in zip(axes[0], trains, titles):
        s, _ = select_neurons(train, neurons, order_by_rate)
        _draw_raster(ax, s)
        ax.set_title(title)
    axes[0][0].set_ylabel("neuron")
    fig.tight_layout()
    return fig


def _show_image(ax, img):
    img = (_np(img) + 1) / 2
    if img.shape[0] == 1:
        ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(np.clip(img.transpose(1, 2, 0), 0, 1))
    ax.set_xticks([])
    ax.set_yticks([])


def latent_view(images, z, pi_q=None, pi_p=None, channels: int = 64, dpi=100):
    """For each image: the image, its latent spike train z_1..z_T (``[T, n, L]``, black = spike) and,
    if given, the Bernoulli probabilities pi_q / pi_p (``[T, n, L]``, 0..1) as heatmaps sharing one
    colour bar; the first ``channels`` channels, time on x."""
    z = _np(z)
    maps = [("z (spikes, black)", z)] + [(name, _np(p)) for name, p in (("pi_q, posterior", pi_q), ("pi_p, prior", pi_p))
                                         if p is not None]
    n = len(images)
    fig, axes = plt.subplots(n, 1 + len(maps), figsize=(2.2 + 3 * len(maps) + 0.6, 2.2 * n), dpi=dpi, squeeze=False,
                             layout="constrained")
    for i in range(n):
        _show_image(axes[i][0], images[i])
        for j, (name, m) in enumerate(maps, start=1):
            ax = axes[i][j]
            im = ax.imshow(m[:, i, :channels].T, aspect="auto", cmap="viridis" if j > 1 else "Greys",
                           vmin=0, vmax=1, interpolation="nearest")
            if j == 1:
                ax.set_ylabel("channel")
            if i == 0:
                ax.set_title(name)
            if i == n - 1:
                ax.set_xlabel("time step t")
    if len(maps) > 1:
        fig.colorbar(im, ax=axes[:, -1], label="Bernoulli probability", shrink=0.8)
    return fig


def record_spikes(model, run) -> dict[str, torch.Tensor]:
    """Every LIF layer's output spikes ``[T, N, ...]`` during ``run()``, by module name
    (a layer called several times, like the incremental posterior, is concatenated in time)."""
    records, handles = {}, []
    for name, mod in model.named_modules():
        if isinstance(mod, LIF):
            handles.append(mod.register_forward_hook(
                lambda m, i, o, name=name: records.setdefault(name, []).append(o.detach().cpu())))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return {k: torch.cat(v) for k, v in records.items()}


def layer_activity(records: dict[str, torch.Tensor], dpi=100):
    """Mean firing rate per layer (bars, left) and per layer and time step (heatmap, right: one
    row per layer in the same order, colour bar in spikes per neuron per step) from
    :func:`record_spikes`."""
    names = list(records)
    labels = [n.replace(".lif", "") for n in names]
    rates = [float(records[n].mean()) for n in names]
    per_t = np.stack([records[n].flatten(1).float().mean(1).numpy() for n in names])   # [layers, T]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 0.28 * len(names) + 1.8), dpi=dpi, sharey=True,
                                 layout="constrained", gridspec_kw={"width_ratios": (1, 1.6)})
    a1.barh(range(len(names)), rates, color="0.45")
    a1.set_yticks(range(len(names)), labels)
    a1.invert_yaxis()
    a1.set_xlabel("mean firing rate")
    a1.set_title("firing rate per layer")
    im = a2.imshow(per_t, aspect="auto", cmap="viridis", vmin=0, interpolation="nearest")
    a2.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    a2.set_xlabel("time step t")
    a2.set_title("firing rate per time step")
    fig.colorbar(im, ax=a2, label="firing rate")
    return fig


def membrane_trace(inputs, lif: LIF, neuron: int = 0, title: str | None = None, dpi=100):
    """Membrane potential u_t (before reset) and spikes of one neuron of ``lif`` fed
    ``inputs [T, ...]`` (e.g. captured with a forward hook), threshold marked (SpikingJelly).

    The trace is the neuron's own: a reset copy of ``lif`` runs the inputs on its exact
    (eager) route with ``store_v_seq`` and the plot shows its ``v_seq``; ``lif`` is untouched."""
    x = torch.as_tensor(_np(inputs)).reshape(len(inputs), -1)[:, neuron:neuron + 1]
    probe = copy.deepcopy(lif)
    probe.reset()
    # the exact route keeps the membrane before the reset (SpikingJelly's route keeps it after)
    probe.route, probe.store_v_seq = "eager", True
    with torch.no_grad():
        spikes = probe(x)
    return sj_plot("plot_one_neuron_v_s", _np(probe.v_seq[:, 0]), _np(spikes[:, 0]), v_threshold=lif.v_threshold,
                   v_reset=0.0, title=title or f"neuron {neuron}: membrane u[t] and spikes", figsize=(8, 4), dpi=dpi)


def psp_and_mmd(q_bar, p_bar, channels=(0, 1, 2), tau_syn: float = 2.0, dpi=100):
    """PSP traces of posterior/prior firing probabilities ``[T, N, L]`` for a few
    channels of sample 0 (colour: channel; solid: posterior q, dashed: prior p), and the
    per-step MMD contribution mean_{n,c}(PSP(q)-PSP(p))^2 as bars."""
    from matplotlib.lines import Line2D
    q, p = torch.as_tensor(_np(q_bar)), torch.as_tensor(_np(p_bar))
    pq, pp = psp(q, tau_syn), psp(p, tau_syn)
    per_step = ((pq - pp) ** 2).mean(dim=(1, 2)).numpy()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.6), dpi=dpi, layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for c, color in zip(channels, colors):
        a1.plot(pq[:, 0, c].numpy(), color=color)
        a1.plot(pp[:, 0, c].numpy(), color=color, ls="--")
    keys = [Line2D([], [], color=color, label=f"channel {c}") for c, color in zip(channels, colors)]
    keys += [Line2D([], [], color="k", label="posterior q"), Line2D([], [], color="k", ls="--", label="prior p")]
    a1.legend(handles=keys, fontsize="small", ncol=2)
    a1.set_xlabel("time step t")
    a1.set_ylabel("PSP")
    a1.set_title("PSP of firing probabilities, sample 0")
    a2.bar(range(len(per_step)), per_step, color="tab:red")
    a2.set_xlabel("time step t")
    a2.set_title(f"MMD contribution per step (mean {per_step.mean():.4g})")
    return fig


def op_counts(res: dict, paper_ratios: dict | None = None, authors_loop: dict | None = None, dpi=100):
    """The energy comparison from :func:`fsvae_sj.opcount.compare`'s result ``res``, three panels:
    additions and multiplications per image (millions, linear axis, FSVAE beside the ANN VAE, the
    FSVAE/ANN ratio written above each pair); energy per image by the paper's rule (uJ, linear);
    the FSVAE/ANN ratios as dots on a log axis with a line at 1 (equal counts): ours, ours counted
    with the authors' O(T^2) posterior loop (``authors_loop``, another ``compare`` result) and the
    paper's (``paper_ratios``: ``{"additions": r, "multiplications": r}``), each value written."""
    kinds = ("additions", "multiplications")
    fsvae_c, ann_c = "tab:orange", "tab:blue"
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(12, 3.8), dpi=dpi, layout="constrained",
                                     gridspec_kw={"width_ratios": (1.3, 0.8, 1.3)})
    x = np.arange(len(kinds))
    f = np.array([res["fsvae"][k] for k in kinds]) / 1e6
    a = np.array([res["ann"][k] for k in kinds]) / 1e6
    a1.bar_label(a1.bar(x - 0.2, f, 0.4, color=fsvae_c, label="FSVAE"), fmt="%.1f", fontsize="small")
    a1.bar_label(a1.bar(x + 0.2, a, 0.4, color=ann_c, label="ANN VAE"), fmt="%.1f", fontsize="small")
    for i, k in enumerate(kinds):
        r = res["ratio_" + k]
        a1.annotate(f"FSVAE/ANN\n{r:.3g}" + (f" = 1/{1 / r:.3g}" if r < 1 else ""), (i, max(f[i], a[i])),
                    xytext=(0, 14),
                    textcoords="offset points", ha="center", va="bottom", fontweight="bold")
    a1.set_xticks(x, kinds)
    a1.set_ylim(0, 1.4 * max(f.max(), a.max()))
    a1.set_ylabel("millions per image")
    a1.set_title("operations per image")
    a1.legend(loc="upper right", fontsize="small")
    energy = res["energy_paper_rule_uJ"]
    a2.bar_label(a2.bar(["FSVAE", "ANN VAE"], [energy["fsvae"], energy["ann"]], color=[fsvae_c, ann_c]),
                 fmt="%.1f")
    a2.set_ylim(0, 1.2 * max(energy.values()))
    a2.set_ylabel("uJ per image")
    a2.set_title(f"energy per image\n({PJ_PER_AC} pJ/AC, {PJ_PER_MAC} pJ/MAC)")
    points = [("ours", "o", fsvae_c, res)]
    if authors_loop is not None:
        points.append(("ours, authors' O(T^2) loop", "s", "tab:brown", authors_loop))
    if paper_ratios is not None:
        points.append(("paper (MNIST)", "D", "0.3", {f"ratio_{k}": paper_ratios[k] for k in kinds}))
    offsets = np.linspace(-0.22, 0.22, len(points)) if len(points) > 1 else [0.0]
    for (label, marker, color, r), dy in zip(points, offsets):
        vals = [r[f"ratio_{k}"] for k in kinds]
        a3.scatter(vals, x + dy, marker=marker, color=color, s=45, label=label, zorder=3)
        for v, y in zip(vals, x + dy):
            a3.annotate(f"{v:.3g}", (v, y), xytext=(7, 0), textcoords="offset points", va="center",
                        fontsize="small")
    a3.axvline(1, color="k", lw=1)
    a3.text(1, -0.55, " FSVAE = ANN", va="top", fontsize="small")
    a3.set_xscale("log")
    a3.set_xlim(0.03, 30)
    a3.set_xticks([0.05, 0.1, 0.3, 1, 3, 10], ["0.05", "0.1", "0.3", "1", "3", "10"])
    a3.minorticks_off()
    a3.set_yticks(x, kinds)
    a3.set_ylim(len(kinds) - 0.4, -0.6)
    a3.set_xlabel("FSVAE / ANN VAE (log scale)")
    a3.set_title("FSVAE / ANN ratio")
    a3.legend(loc="lower right", fontsize="small")
    return fig


def curve_series(evals: list[dict], history: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """The learning-curve series of a training run's records (``fsvae_sj.train``'s evaluations and
    per-epoch log, as a zoo entry's recipe keeps them): for each of ``afd``, ``ema_afd``,
    ``emacal_afd`` (the EMA with its decoder calibrated, :mod:`fsvae_sj.calibration`),
    ``test_recon_mse``, ``ema_test_recon_mse``, ``emacal_test_recon_mse`` that some row holds, (CPU-hours, values) sorted by
    CPU-hours, from every row that has both numbers (empty strings are absent values; a point the
    per-epoch log repeats from an evaluation is kept once)."""
    out = {}
    for key in ("afd", "ema_afd", "emacal_afd", "test_recon_mse", "ema_test_recon_mse", "emacal_test_recon_mse"):
        points = sorted({(float(r["cpu_hours"]), float(r[key])) for r in [*evals, *history]
                         if r.get(key) not in (None, "") and r.get("cpu_hours") not in (None, "")})
        if points:
            out[key] = ([h for h, _ in points], [v for _, v in points])
    return out


def learning_curve(evals: list[dict], history: list[dict], title: str = "", published: dict | None = None,
                   paper: dict | None = None, dpi=100):
    """AE Frechet distance (left) and test recon MSE (right) against CPU-hours of training, raw
    weights and their EMA where recorded (:func:`curve_series`). ``published``
    (``{"cpu_hours", "autoencoder_frechet", "recon_mse"}``, the zoo entry's own measurement) is a
    star; ``paper`` (``{"autoencoder_frechet", "recon_mse"}``) a dotted level."""
    series = curve_series(evals, history)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=dpi, layout="constrained", sharex=True)
    panels = (("afd", "autoencoder_frechet", "AE Frechet distance"), ("test_recon_mse", "recon_mse", "test recon MSE"))
    for ax, (key, metric, name) in zip(axes, panels):
        for k, label, style in ((key, "raw weights", {"color": "tab:blue", "lw": 1, "alpha": 0.8}),
                                ("ema_" + key, "EMA of the weights", {"color": "tab:orange", "lw": 2}),
                                ("emacal_" + key, "EMA, decoder statistics on prior samples",
                                 {"color": "tab:green", "lw": 2})):
            if k in series:
                ax.plot(*series[k], marker="o", ms=4, label=label, **style)
        if published and published.get(metric) is not None:
            ax.plot([published["cpu_hours"]], [published[metric]], marker="*", ms=14, color="k", ls="none",
                    label=f"published entry: {published[metric]:g}")
        if paper and paper.get(metric) is not None:
            ax.axhline(paper[metric], color="0.3", ls=":", label=f"paper (Table 1): {paper[metric]:g}")
        ax.set_xlabel("CPU-hours of training")
        ax.set_title(f"{name} (lower is better)")
        ax.grid(color="0.9")
        if ax.lines:
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def image_grid(images, nrow: int = 8, title: str = "", dpi=100):
    images = _np(images)
    n = len(images)
    rows = (n + nrow - 1) // nrow
    fig, axes = plt.subplots(rows, nrow, figsize=(nrow * 0.9, rows * 0.9 + (0.4 if title else 0)), dpi=dpi,
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k < n:
            _show_image(ax, images[k])
        else:
            ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def save(fig, path: str | Path) -> Path:
    """Write a figure as PNG or SVG (by suffix), atomically. Raises ValueError for another suffix."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg"):
        raise InputError(f"save as .png or .svg, got {path.suffix!r}")
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix[1:].lower(), bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())   # no half-written picture if drawing fails
    return path
