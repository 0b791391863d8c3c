"""Pictures of what FSVAE's spikes do. Plain functions returning matplotlib Figures.

Single rasters and membrane traces come from SpikingJelly's ``visualizing``
(``plot_1d_spikes``, ``plot_one_neuron_v_s``); what it lacks (rasters side by
side, the latent view, layer activity, PSP/MMD, titled image grids) is here.
Everything works headless (Agg); :func:`save` writes PNG or SVG.
"""
from __future__ import annotations

import copy
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from .backend import sj_plot
from .losses import psp
from .neurons import LIF


def _np(x) -> np.ndarray:
    return x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)


def select_neurons(spikes, neurons=None, order_by_rate: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``spikes [T, N]`` restricted to ``neurons`` (indices) and optionally sorted by
    firing rate, highest first. Returns (spikes [T, n], the neuron indices kept)."""
    s = _np(spikes)
    if s.ndim != 2:
        raise ValueError(f"expected a spike train [T, N], got shape {s.shape}")
    idx = np.arange(s.shape[1]) if neurons is None else np.asarray(neurons)
    s = s[:, idx]
    if order_by_rate:
        order = np.argsort(-s.mean(0), kind="stable")
        s, idx = s[:, order], idx[order]
    return s, idx


def raster(spikes, neurons=None, order_by_rate: bool = False, title: str = "spikes", figsize=(8, 5), dpi=100,
           firing_rate_panel: bool | None = None):
    """Raster of ``[T, N]`` (time on x, neurons on y) by SpikingJelly, with its annotated
    firing-rate panel (default: shown up to 48 neurons, where its labels stay legible)."""
    s, _ = select_neurons(spikes, neurons, order_by_rate)
    panel = s.shape[1] <= 48 if firing_rate_panel is None else firing_rate_panel
    return sj_plot("plot_1d_spikes", s, title, "time step t", "neuron", plot_firing_rate=panel,
                   figsize=figsize, dpi=dpi)


def rasters(trains, titles=None, neurons=None, order_by_rate: bool = False, figsize=None, dpi=100):
    """Several ``[T, N]`` rasters side by side, one axis each."""
    trains = list(trains)
    titles = titles or [f"train {i}" for i in range(len(trains))]
    fig, axes = plt.subplots(1, len(trains), figsize=figsize or (3.2 * len(trains), 4), dpi=dpi, squeeze=False)
    for ax, train, title in zip(axes[0], trains, titles):
        s, _ = select_neurons(train, neurons, order_by_rate)
        t, n = np.nonzero(s)
        ax.scatter(t, n, marker="|", s=12, color="k", linewidths=0.8)
        ax.set_xlim(-0.5, s.shape[0] - 0.5)
        ax.set_ylim(s.shape[1] - 0.5, -0.5)
        ax.set_title(title)
        ax.set_xlabel("time step t")
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
    """For each image: the image, its latent spike train z_1..z_T (``[T, n, L]``) and,
    if given, the Bernoulli probabilities pi_q / pi_p (``[T, n, L]``) as heatmaps."""
    z = _np(z)
    maps = [("z (spikes)", z)] + [(name, _np(p)) for name, p in (("pi_q", pi_q), ("pi_p", pi_p)) if p is not None]
    n = len(images)
    fig, axes = plt.subplots(n, 1 + len(maps), figsize=(2.2 + 3 * len(maps), 2.2 * n), dpi=dpi, squeeze=False)
    for i in range(n):
        _show_image(axes[i][0], images[i])
        for j, (name, m) in enumerate(maps, start=1):
            ax = axes[i][j]
            ax.imshow(m[:, i, :channels].T, aspect="auto", cmap="viridis" if name != "z (spikes)" else "Greys",
                      vmin=0, vmax=1, interpolation="nearest")
            ax.set_ylabel("channel")
            if i == 0:
                ax.set_title(name)
            if i == n - 1:
                ax.set_xlabel("time step t")
    fig.tight_layout()
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
    """Firing rate per layer (bars) and per time step (lines) from :func:`record_spikes`."""
    names = list(records)
    rates = [float(records[n].mean()) for n in names]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 0.3 * len(names) + 2), dpi=dpi)
    a1.barh(range(len(names)), rates, color="tab:blue")
    a1.set_yticks(range(len(names)), [n.replace(".lif", "") for n in names], fontsize=7)
    a1.invert_yaxis()
    a1.set_xlabel("mean firing rate")
    a1.set_title("firing rate per layer")
    for n in names:
        per_t = records[n].flatten(1).mean(1).numpy()
        a2.plot(range(len(per_t)), per_t, label=n.replace(".lif", ""), lw=1)
    a2.set_xlabel("time step t")
    a2.set_ylabel("firing rate")
    a2.set_title("firing rate per time step")
    a2.legend(fontsize=6, ncol=2)
    fig.tight_layout()
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
    probe.impl, probe.fused, probe.store_v_seq = "exact", False, True
    with torch.no_grad():
        spikes = probe(x)
    return sj_plot("plot_one_neuron_v_s", _np(probe.v_seq[:, 0]), _np(spikes[:, 0]), v_threshold=lif.v_threshold,
                   v_reset=0.0, title=title or f"neuron {neuron}: membrane u[t] and spikes", figsize=(8, 4), dpi=dpi)


def psp_and_mmd(q_bar, p_bar, channels=(0, 1, 2), tau_syn: float = 2.0, dpi=100):
    """PSP traces of posterior/prior firing probabilities ``[T, N, L]`` for a few
    channels of sample 0, and the per-step MMD contribution mean_{n,c}(PSP(q)-PSP(p))^2."""
    q, p = torch.as_tensor(_np(q_bar)), torch.as_tensor(_np(p_bar))
    pq, pp = psp(q, tau_syn), psp(p, tau_syn)
    per_step = ((pq - pp) ** 2).mean(dim=(1, 2)).numpy()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.5), dpi=dpi)
    for c, color in zip(channels, plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        a1.plot(pq[:, 0, c].numpy(), color=color, label=f"PSP(q), ch {c}")
        a1.plot(pp[:, 0, c].numpy(), color=color, ls="--", label=f"PSP(p), ch {c}")
    a1.set_xlabel("time step t")
    a1.set_title("PSP of firing probabilities")
    a1.legend(fontsize=7)
    a2.bar(range(len(per_step)), per_step, color="tab:red")
    a2.set_xlabel("time step t")
    a2.set_title(f"MMD contribution per step (mean {per_step.mean():.4g})")
    fig.tight_layout()
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
    """Write a figure as PNG or SVG (by suffix)."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg"):
        raise ValueError(f"save as .png or .svg, got {path.suffix!r}")
    fig.savefig(path, bbox_inches="tight")
    return path
