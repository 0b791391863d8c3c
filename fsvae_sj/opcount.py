"""Operation counts and energy: the paper's rule, and SpikingJelly's own counters.

The paper's rule (the authors' eval-mode forward hooks), per image:

* a weight layer fed spikes: additions = input spikes x fan-out + one per output
  element (bias). Fan-out: conv ``k*k*C_out / stride^2``; linear ``out_features``;
  transposed conv ``k*k*C_out * stride^2`` as the authors' code writes it
  (``transposed_rule="code"``, it over-counts by stride^2) or ``k*k*C_out``
  (``"exact"``: each input reaches k*k*C_out outputs).
* the first conv, fed analog pixels at every one of the T steps: multiplications
  = N*C*H*W*T * fan-out, additions = that + bias additions.
* LIF: one addition per element per step; one multiplication (the decay) per
  element that did not spike.
* ANN: every weight layer costs inputs x fan-out multiplications and as many
  additions plus the bias; activations are not counted.

Energy: 0.9 pJ per accumulate (AC) and 4.6 pJ per multiply-accumulate (MAC)
(45 nm, Horowitz 2014, as the SNN literature uses).

Beside it, SpikingJelly 2's own counter (``spikingjelly.activation_based.op_counter``,
:func:`count_spikingjelly`) counts what this implementation executes, operator by operator:
SynOps (spike-driven weight accumulations), ACs, MACs and its simple energy model (the same
0.9 / 4.6 pJ, plus 24.96 pJ per byte of weights and neuron states moved). Where both count the
same thing they agree exactly (tests/test_ops.py): a spike-fed linear layer's additions without
its bias are its SynOps, a LIF layer's additions its ACs, the ANN's multiplications (exact
transposed rule) its MACs, and the first convolution's multiplications T times its MACs (it
runs once for all T steps here). Command line: ``python -m fsvae_sj.ops`` (:mod:`fsvae_sj.ops`).
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from .spiking import sj
from .errors import ConfigError
from .spiking.lif import LIF

PJ_PER_AC, PJ_PER_MAC = 0.9, 4.6
PAPER_RATIOS_MNIST = {"additions": 6.8, "multiplications": 1 / 13}
WEIGHT_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def fan_out(layer: nn.Module, transposed_rule: str = "code") -> float:
    k = layer.kernel_size[0] * layer.kernel_size[1] if hasattr(layer, "kernel_size") else 1
    if isinstance(layer, nn.Linear):
        return layer.out_features
    s = layer.stride[0] * layer.stride[1]
    if isinstance(layer, nn.ConvTranspose2d):
        if transposed_rule not in ("code", "exact"):
            raise ConfigError(f"transposed_rule must be 'code' or 'exact', got {transposed_rule!r}")
        return k * layer.out_channels * (s if transposed_rule == "code" else 1)
    return k * layer.out_channels / s


class PaperCounter:
    """Forward hooks that add up the paper's additions and multiplications.

    ``analog`` names layers fed analog values; ``repeat`` says how many time
    steps a layer's single call stands for (our first conv runs once for all T).
    ``layers`` holds each weight and LIF layer's share by module name:
    ``{"additions", "multiplications", "bias_additions"}`` (the bias additions are
    among the additions).
    """

    def __init__(self, model: nn.Module, analog=(), repeat=None, transposed_rule="code", spiking=True):
        self.additions = 0.0
        self.multiplications = 0.0
        self.layers: dict[str, dict[str, float]] = {}
        self.rule = transposed_rule
        self.handles = []
        analog, repeat = set(analog), dict(repeat or {})
        for name, mod in model.named_modules():
            if isinstance(mod, WEIGHT_LAYERS):
                is_analog = (not spiking) or name in analog
                self.handles.append(mod.register_forward_hook(self._weight_hook(name, is_analog,
                                                                                repeat.get(name, 1))))
            elif spiking and isinstance(mod, LIF):
                self.handles.append(mod.register_forward_hook(self._lif_hook(name)))

    def _weight_hook(self, name: str, analog: bool, times: int):
        def hook(mod, inputs, out):
            fo = fan_out(mod, self.rule)
            bias = out.numel() * times if mod.bias is not None else 0
            if analog:
                muls = inputs[0].numel() * times * fo
                self.add(name, muls + bias, muls, bias)
            else:
                self.add(name, float(inputs[0].sum()) * fo + bias, 0.0, bias)
        return hook

    def _lif_hook(self, name: str):
        def hook(mod, inputs, out):
            self.add(name, out.numel(), float((out == 0).sum()))
        return hook

    def add(self, name: str, additions: float = 0.0, multiplications: float = 0.0,
            bias_additions: float = 0.0) -> None:
        """Count operations of layer ``name`` (also for work no hook sees, e.g. the read-out)."""
        self.additions += additions
        self.multiplications += multiplications
        row = self.layers.setdefault(name, {"additions": 0.0, "multiplications": 0.0, "bias_additions": 0.0})
        row["additions"] += additions
        row["multiplications"] += multiplications
        row["bias_additions"] += bias_additions

    def per_image(self, n: int) -> dict:
        """``{"additions", "multiplications", "layers"}`` divided by the batch size ``n``."""
        return {"additions": self.additions / n, "multiplications": self.multiplications / n,
                "layers": {k: {m: v / n for m, v in row.items()} for k, row in self.layers.items()}}

    def close(self) -> None:
        for h in self.handles:
            h.remove()


@contextlib.contextmanager
def posterior_loop(model, loop: str | None):
    """Run an FSVAE's posterior with ``loop`` (None or a model without loops: unchanged) and
    restore the model's own afterwards."""
    if loop is None or not hasattr(model, "set_loop"):
        yield
        return
    previous = model.loop
    model.set_loop(loop)
    try:
        yield
    finally:
        model.set_loop(previous)


@torch.no_grad()
def count_fsvae(model, x: torch.Tensor, transposed_rule: str = "code", seed: int = 0,
                loop: str = "incremental") -> dict:
    """Paper-rule counts per image for an eval-mode reconstruction of ``x``: ``{"additions",
    "multiplications", "layers"}`` (see :class:`PaperCounter`).

    ``loop="prefix"`` counts the posterior as the authors' code ran it at test time
    (re-running the whole prefix at every step); ``"incremental"`` is our O(T) loop.
    """
    model.eval()
    T = model.config.n_steps
    c = PaperCounter(model, analog={"encoder.0.layer"}, repeat={"encoder.0.layer": T},
                     transposed_rule=transposed_rule)
    # The read-out conv runs once on time-weighted spikes (model.readout); the paper
    # counts it per step, fed by the last spiking layer's spikes.
    final = model.final_layer[1]
    spikes = []
    h = model.final_layer[0].lif.register_forward_hook(lambda m, i, o: spikes.append(float(o.sum())))
    try:
        with posterior_loop(model, loop):
            model.reconstruct(x, seed=seed)
    finally:
        h.remove()
        c.close()
    out_numel = x.numel() // x.shape[1] * final.out_channels
    c.add("final_layer.1", sum(spikes) * fan_out(final, transposed_rule) + out_numel * T,
          bias_additions=out_numel * T)
    return c.per_image(x.shape[0])


@torch.no_grad()
def count_ann(model, x: torch.Tensor, transposed_rule: str = "code") -> dict:
    """Paper-rule counts per image for the ANN VAE's eval-mode reconstruction of ``x``."""
    model.eval()
    c = PaperCounter(model, transposed_rule=transposed_rule, spiking=False)
    try:
        model.reconstruct(x, seed=0)
    finally:
        c.close()
    return c.per_image(x.shape[0])


@torch.no_grad()
def count_spikingjelly(model, x: torch.Tensor, loop: str | None = None) -> dict | None:
    """SpikingJelly 2's figures per image for the eval-mode reconstruction of ``x`` (seed 0),
    from its ``SimpleEnergyProfiler``: ``synops``, ``acs``, ``macs``, ``memory_bytes`` (weights
    and neuron states moved), ``energy_compute_uJ`` (0.9 pJ/AC, 4.6 pJ/MAC),
    ``energy_with_memory_uJ`` (plus 24.96 pJ/byte), and ``layers``: ``{"synops", "acs", "macs"}``
    of each weight and LIF layer by module name (``model.reconstruct`` must call the model, as
    FSVAE's and ANNVAE's do: SpikingJelly names its scopes from the outermost module called).
    ``loop`` as in :func:`count_fsvae` (None: the model's own). None on SpikingJelly 0.0.0.0.14,
    which has no op_counter."""
    oc = sj.op_counter()
    if oc is None:
        return None
    model.eval()
    profiler = oc.SimpleEnergyProfiler()
    profiler.bind_model(model)
    with posterior_loop(model, loop), profiler:
        model.reconstruct(x, seed=0)
    report, n = profiler.get_report(), x.shape[0]
    counters = {"synops": profiler.synop_counter, "acs": profiler.ac_counter, "macs": profiler.mac_counter}
    scopes = {k: c.get_counts() for k, c in counters.items()}
    root = type(model).__name__   # SpikingJelly's scopes are the module names under the class name
    layers = {name: {k: sum(scopes[k].get(f"{root}.{name}", {}).values()) / n for k in counters}
              for name, mod in model.named_modules() if isinstance(mod, (*WEIGHT_LAYERS, LIF))}
    return {"synops": report.counts["synop"] / n, "acs": report.counts["ac"] / n, "macs": report.counts["mac"] / n,
            "memory_bytes": report.counts["memory_access_bytes"] / n,
            "energy_compute_uJ": report.energy_compute_pj / n / 1e6,
            "energy_with_memory_uJ": report.energy_total_pj / n / 1e6,
            "layers": layers, "spikingjelly": sj.SJ_VERSION}


def energy_pj(acs: float, macs: float) -> float:
    return PJ_PER_AC * acs + PJ_PER_MAC * macs


def compare(fsvae, ann, x: torch.Tensor, transposed_rule: str = "code", loop: str = "incremental") -> dict:
    """Both models' counts, energies and the FSVAE/ANN ratios beside the paper's, and SpikingJelly's
    counter's figures for the same models and input (``"spikingjelly"``: None on 0.0.0.0.14)."""
    f, a = count_fsvae(fsvae, x, transposed_rule, loop=loop), count_ann(ann, x, transposed_rule)
    sj = {"fsvae": count_spikingjelly(fsvae, x, loop), "ann": count_spikingjelly(ann, x)}
    res = {"fsvae": f, "ann": a, "transposed_rule": transposed_rule, "posterior_loop": loop,
           "ratio_additions": f["additions"] / a["additions"],
           "ratio_multiplications": f["multiplications"] / a["multiplications"],
           "paper_ratios_mnist": PAPER_RATIOS_MNIST,
           # each multiplication pairs with an addition (MAC); the other additions are ACs
           "energy_paper_rule_uJ": {k: energy_pj(v["additions"] - v["multiplications"], v["multiplications"]) / 1e6
                                    for k, v in (("fsvae", f), ("ann", a))},
           "spikingjelly": sj if sj["fsvae"] is not None else None}
    return res
