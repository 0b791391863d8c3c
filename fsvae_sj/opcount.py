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
(45 nm, Horowitz 2014, as the SNN literature uses). Command line:
``python -m fsvae_sj.ops`` (:mod:`fsvae_sj.ops`).
"""
from __future__ import annotations

import torch
from torch import nn

from .neurons import LIF

PJ_PER_AC, PJ_PER_MAC = 0.9, 4.6
PAPER_RATIOS_MNIST = {"additions": 6.8, "multiplications": 1 / 13}


def fan_out(layer: nn.Module, transposed_rule: str = "code") -> float:
    k = layer.kernel_size[0] * layer.kernel_size[1] if hasattr(layer, "kernel_size") else 1
    if isinstance(layer, nn.Linear):
        return layer.out_features
    s = layer.stride[0] * layer.stride[1]
    if isinstance(layer, nn.ConvTranspose2d):
        if transposed_rule not in ("code", "exact"):
            raise ValueError(f"transposed_rule must be 'code' or 'exact', got {transposed_rule!r}")
        return k * layer.out_channels * (s if transposed_rule == "code" else 1)
    return k * layer.out_channels / s


class PaperCounter:
    """Forward hooks that add up the paper's additions and multiplications.

    ``analog`` names layers fed analog values; ``repeat`` says how many time
    steps a layer's single call stands for (our first conv runs once for all T).
    """

    def __init__(self, model: nn.Module, analog=(), repeat=None, transposed_rule="code", spiking=True):
        self.additions = 0.0
        self.multiplications = 0.0
        self.rule = transposed_rule
        self.handles = []
        analog, repeat = set(analog), dict(repeat or {})
        for name, mod in model.named_modules():
            if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                is_analog = (not spiking) or name in analog
                self.handles.append(mod.register_forward_hook(self._weight_hook(is_analog, repeat.get(name, 1))))
            elif spiking and isinstance(mod, LIF):
                self.handles.append(mod.register_forward_hook(self._lif_hook))

    def _weight_hook(self, analog: bool, times: int):
        def hook(mod, inputs, out):
            fo = fan_out(mod, self.rule)
            bias = out.numel() * times if mod.bias is not None else 0
            if analog:
                muls = inputs[0].numel() * times * fo
                self.multiplications += muls
                self.additions += muls + bias
            else:
                self.additions += float(inputs[0].sum()) * fo + bias
        return hook

    def _lif_hook(self, mod, inputs, out):
        self.additions += out.numel()
        self.multiplications += float((out == 0).sum())

    def add(self, additions: float = 0.0, multiplications: float = 0.0) -> None:
        self.additions += additions
        self.multiplications += multiplications

    def close(self) -> None:
        for h in self.handles:
            h.remove()


@torch.no_grad()
def count_fsvae(model, x: torch.Tensor, transposed_rule: str = "code", seed: int = 0,
                loop: str = "incremental") -> dict:
    """Paper-rule counts per image for an eval-mode reconstruction of ``x``.

    ``loop="prefix"`` counts the posterior as the authors' code ran it at test time
    (re-running the whole prefix at every step); ``"incremental"`` is our O(T) loop.
    """
    model.eval()
    previous = model.loop
    model.set_loop(loop)
    T = model.config.n_steps
    c = PaperCounter(model, analog={"encoder.0.layer"}, repeat={"encoder.0.layer": T},
                     transposed_rule=transposed_rule)
    # The read-out conv runs once on time-weighted spikes (model.readout); the paper
    # counts it per step, fed by the last spiking layer's spikes.
    final = model.final_layer[1]
    spikes = []
    h = model.final_layer[0].lif.register_forward_hook(lambda m, i, o: spikes.append(float(o.sum())))
    try:
        model.reconstruct(x, seed=seed)
    finally:
        h.remove()
        c.close()
        model.set_loop(previous)
    out_numel = x.numel() // x.shape[1] * final.out_channels
    c.add(additions=sum(spikes) * fan_out(final, transposed_rule) + out_numel * T)
    n = x.shape[0]
    return {"additions": c.additions / n, "multiplications": c.multiplications / n}


@torch.no_grad()
def count_ann(model, x: torch.Tensor) -> dict:
    model.eval()
    c = PaperCounter(model, spiking=False)
    try:
        model.reconstruct(x, seed=0)
    finally:
        c.close()
    n = x.shape[0]
    return {"additions": c.additions / n, "multiplications": c.multiplications / n}


@torch.no_grad()
def count_spikingjelly(model, x: torch.Tensor) -> dict | None:
    """SynOps, ACs and MACs per image from SpikingJelly 2's dispatch counters
    (None on the legacy generation, which has no op_counter)."""
    try:
        from spikingjelly.activation_based import op_counter as oc
    except ImportError:
        return None
    model.eval()
    counters = {"synops": oc.SynOpCounter(), "acs": oc.ACCounter(), "macs": oc.MACCounter()}
    with oc.DispatchCounterMode(list(counters.values())):
        model.reconstruct(x, seed=0)
    n = x.shape[0]
    out = {k: c.get_total() / n for k, c in counters.items()}
    out["energy_uJ"] = energy_pj(out["acs"], out["macs"]) / 1e6
    return out


def energy_pj(acs: float, macs: float) -> float:
    return PJ_PER_AC * acs + PJ_PER_MAC * macs


def compare(fsvae, ann, x: torch.Tensor, transposed_rule: str = "code", loop: str = "incremental") -> dict:
    """Both models' counts, energies and the FSVAE/ANN ratios beside the paper's."""
    f, a = count_fsvae(fsvae, x, transposed_rule, loop=loop), count_ann(ann, x)
    res = {"fsvae": f, "ann": a, "transposed_rule": transposed_rule, "posterior_loop": loop,
           "ratio_additions": f["additions"] / a["additions"],
           "ratio_multiplications": f["multiplications"] / a["multiplications"],
           "paper_ratios_mnist": PAPER_RATIOS_MNIST,
           # each multiplication pairs with an addition (MAC); the other additions are ACs
           "energy_paper_rule_uJ": {k: energy_pj(v["additions"] - v["multiplications"], v["multiplications"]) / 1e6
                                    for k, v in (("fsvae", f), ("ann", a))},
           "spikingjelly": {"fsvae": count_spikingjelly(fsvae, x), "ann": count_spikingjelly(ann, x)}}
    return res
