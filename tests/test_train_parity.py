"""Training-mode parity with the authors' code (fixture made by benchmarks/make_train_parity.py).

One training step on a fixed batch with the same weights and the same posterior choices:
in float64 our spikes, reconstruction, loss, every gradient and every tdBN running statistic
equal theirs to rounding; in float32 ours are at least as accurate as theirs, measured
against the float64 result.
"""
import gzip
import io
import os

import pytest
import torch

from fsvae_sj.models import bernoulli
from fsvae_sj.spiking import fused_block as tdbn_lif
from fsvae_sj.zoo.authors import load_authors_checkpoint
from fsvae_sj.models.losses import fsvae_loss
from fsvae_sj.spiking.lif import use_fused_kernels

# "eager": the modules one by one; "fused": the compiled kernels training runs on
# (compiled LIF, tdBN + LIF in one pass for the convolution blocks).
PATHS = pytest.mark.parametrize("fused", [False, True], ids=["eager", "fused"])
fused_block = tdbn_lif.tdbn_lif

DATA = os.path.join(os.path.dirname(__file__), "data", "train_parity_fsvae.pt.gz")


@pytest.fixture(scope="module")
def fixture():
    return torch.load(io.BytesIO(gzip.open(DATA).read()), weights_only=True)


def projection_vector(n: int) -> torch.Tensor:
    # Must equal benchmarks/make_train_parity.py's: a fixed direction, no RNG.
    return torch.cos(torch.arange(n, dtype=torch.float64) * 0.7548776662466927)


def our_step(fixture, dtype, monkeypatch, fused: bool = False) -> dict:
    """Our training forward and backward on the fixture's batch, with its posterior choices."""
    model = use_fused_kernels(load_authors_checkpoint(fixture["checkpoint_bytes"]).to(dtype).train(), fused)
    draws = list(fixture["draws"].long())
    used = []

    def scripted(shape, k, generator, device):
        assert tuple(shape) == tuple(draws[0].shape) and k == model.config.k
        used.append(draws.pop(0))
        return used[-1].to(device)

    monkeypatch.setattr(bernoulli, "draw_indices", scripted)
    blocks = []
    monkeypatch.setattr(tdbn_lif, "tdbn_lif", lambda bn, lif, x: blocks.append(bn) or fused_block(bn, lif, x))
    x = fixture["x"].to(dtype)
    out = model(x, scheduled_p=0.0)
    # the fused path must have run every convolution block (encoder, decoder, final layer)
    n_conv = 2 * len(model.config.hidden_dims)
    assert len(blocks) == (n_conv if fused else 0), len(blocks)
    assert not draws, f"our posterior used {len(used)} of {len(used) + len(draws)} draws"
    losses = fsvae_loss(x, out.x_recon, out.q_out, out.p_out, "mmd")
    losses["loss"].backward()
    state = model.state_dict()
    return {"model": model, "out": out, "losses": losses,
            "running": {n: state[n] for n in fixture["float64"]["running"]}}


def relative_errors(stats: dict, reference: dict) -> dict:
    return {n: float(((stats[n].double() - reference[n].double()).abs()
                      / reference[n].double().abs().clamp_min(1e-12)).max())
            for n in reference if not n.endswith("num_batches_tracked")}


@PATHS
def test_float64_step_equals_the_authors(fixture, monkeypatch, fused):
    ref = fixture["float64"]
    ours = our_step(fixture, torch.float64, monkeypatch, fused)
    out, losses = ours["out"], ours["losses"]
    assert torch.equal(out.z.bool(), ref["z"])
    assert torch.equal(out.q_out.bool(), ref["q"])
    assert torch.equal(out.p_out.bool(), ref["p"])
    assert (out.x_recon.detach() - ref["x_recon"]).abs().max() < 1e-12
    for ours_key, their_key in (("loss", "loss"), ("recon", "Reconstruction_Loss"), ("distance", "Distance_Loss")):
        assert float(losses[ours_key].detach()) == pytest.approx(float(ref["loss"][their_key]), rel=1e-12, abs=1e-15)
    params = dict(ours["model"].named_parameters())
    assert params.keys() == ref["grads"].keys()
    # The biases of layers that feed a training-mode tdBN have a zero gradient in exact
    # arithmetic (the batch mean removes them): theirs and ours are both rounding noise there,
    # so every tolerance is relative to the larger of the tensor's norm and 1e-3 of the model's.
    model_norm = sum(float(s["sumsq"]) for s in ref["grads"].values()) ** 0.5
    for name, summary in ref["grads"].items():
        g = params[name].grad.double().flatten()
        norm = max(float(summary["sumsq"]) ** 0.5, 1e-3 * model_norm)
        tol = 1e-10 * norm
        assert abs(float(g.norm()) - float(summary["sumsq"]) ** 0.5) <= tol, name
        # |sum| and |proj| are at most norm * sqrt(numel): scale their tolerance alike.
        assert abs(float(g.sum() - summary["sum"])) <= tol * g.numel() ** 0.5, name
        assert abs(float((g * projection_vector(g.numel())).sum() - summary["proj"])) <= tol * g.numel() ** 0.5, name
        if "whole" in summary:
            assert float((g - summary["whole"]).abs().max()) <= tol, name
    for name, value in ref["running"].items():
        if name.endswith("num_batches_tracked"):
            assert torch.equal(ours["running"][name], value), name
    errors = relative_errors(ours["running"], ref["running"])
    assert max(errors.values()) < 1e-12, max(errors.items(), key=lambda kv: kv[1])


@PATHS
def test_float32_step_at_least_as_accurate_as_the_authors(fixture, monkeypatch, fused):
    """Against the float64 step: running statistics and spikes no worse than their float32 step."""
    exact = fixture["float64"]
    ours = our_step(fixture, torch.float32, monkeypatch, fused)
    theirs_err = max(relative_errors(fixture["float32"]["running"], exact["running"]).values())
    ours_err = max(relative_errors(ours["running"], exact["running"]).items(), key=lambda kv: kv[1])
    assert ours_err[1] <= max(2 * theirs_err, 1e-6), (ours_err, theirs_err)
    for key, ours_key in (("z", "z"), ("q", "q_out"), ("p", "p_out")):
        theirs_flips = int((fixture["float32"][key] != exact[key]).sum())
        ours_flips = int((getattr(ours["out"], ours_key).bool() != exact[key]).sum())
        assert ours_flips <= theirs_flips, (key, ours_flips, theirs_flips)
