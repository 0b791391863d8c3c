"""Write and execute the notebooks (outputs kept, so they read on a code host).

    python notebooks/build.py                # regenerate notebooks/*.ipynb in place
    python notebooks/build.py --small --out /tmp/nb   # CI: small sizes, elsewhere, fail on any error

Each notebook reads FSVAE_SJ_SMALL (set by --small) to shrink its batch sizes.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent

SETUP = """\
import os
import torch
import matplotlib.pyplot as plt
import fsvae_sj
from fsvae_sj import viz, zoo
SMALL = os.environ.get("FSVAE_SJ_SMALL") == "1"
torch.set_num_threads(2)
%matplotlib inline
plt.ioff()  # figures are shown once, as the value a cell returns
plt.rcParams["figure.dpi"] = 80"""

NOTEBOOKS = {
    "spike_rasters": [
        ("md", """# What FSVAE's spikes do

FSVAE encodes an image into a **latent spike train** z_1..z_T (T = 16 steps, 128 channels) and decodes it
back with spiking layers only. This notebook loads a model from the zoo, samples and reconstructs, and
shows every spike-level view in `fsvae_sj.viz`."""),
        ("code", SETUP),
        ("code", """model = zoo.load("fashion-mnist")
n = 4 if SMALL else 8
images, z = model.sample(n, seed=0, return_latents=True)
print("images", tuple(images.shape), "latent spikes", tuple(z.shape), "firing rate", float(z.mean()))
viz.image_grid(images, nrow=n, title="samples from the prior")"""),
        ("md", """## The latent spike train of one sample
Time runs left to right; each row is one latent channel and each black tick one spike. The 32 busiest
of the 128 channels are shown, busiest at the top; the bars on the right give each channel's firing
rate (spikes per step, 0 to 1). Even the busiest channels fire at only 9 to 12 of the 16 steps and the
32nd busiest at 4: the code is a sparse pattern of which channels fire when, and that pattern is
what the decoder reads."""),
        ("code", """busiest = torch.argsort(z[:, 0].mean(0), descending=True)[:32]
viz.raster(z[:, 0], neurons=busiest, order_by_rate=True, title="latent spikes z of sample 0 (32 busiest channels)",
           figsize=(7, 4.5), dpi=80)"""),
        ("md", """## Posterior and prior side by side
For real test images the posterior q(z_t | x, z_<t) and the prior p(z_t | z_<t) each give Bernoulli
probabilities pi_t (the mean of k = 20 spiking outputs). Training pulls the prior's PSP-filtered
probabilities towards the posterior's (the MMD loss). Look for channels where pi_q is near 0 or 1 while
pi_p hesitates: that is what the prior has not learnt yet. The read-out integrates the last layer with
weights `0.8^(T-1-t)`, so **late** steps weigh more on the output membrane, while early steps set the
decoder's state.

The first figure shows, for three test images (rows), the first 48 latent channels against time: the
sampled spikes z (black), then pi_q and pi_p on one colour scale (bar on the right). The second
follows three channels of the first image: the PSP of pi_q (solid) and of pi_p (dashed), one colour
per channel, and on the right the MMD term of each step, averaged over images and channels."""),
        ("code", """from fsvae_sj.datasets import make_dataset
x = make_dataset("fashion-mnist", "test", limit=n).images
out = model(x, generator=torch.Generator().manual_seed(0))
pi_q, pi_p = out.q_out.mean(-1), out.p_out.mean(-1)
viz.latent_view(x[:3], out.z[:, :3], pi_q=pi_q[:, :3], pi_p=pi_p[:, :3], channels=48, dpi=70)"""),
        ("code", """viz.psp_and_mmd(pi_q, pi_p, channels=(0, 1, 2), dpi=80)"""),
        ("md", """## Activity in every layer
Mean firing rate per layer (left) and per layer and time step (right: one row per layer, in the same
order, colour = fraction of the layer's neurons that fire), while the test images are reconstructed.
After the first two steps every layer fires at a steady rate, between about 0.13 and 0.48; the layer
before the latent fires most. The encoder's layers alternate between even and odd steps (encoder.2:
about 0.26, then 0.32); the last layers of the posterior and of the prior fire at about 0.3 at t = 0
and drop to 0.05 at t = 1; the decoder starts at about half its later rate (its input layer: 0.05 to
0.09 at t = 0 and 1, 0.14 to 0.20 after)."""),
        ("code", """records = viz.record_spikes(model, lambda: model.reconstruct(x, seed=0))
viz.layer_activity(records, dpi=80)"""),
        ("md", """## One neuron's membrane
The input current of a decoder neuron is captured with a forward hook; the trace shows u_t before reset,
the threshold V_th = 0.2 and the spikes (SpikingJelly's `plot_one_neuron_v_s`)."""),
        ("code", """captured = {}
lif = model.decoder[-1].lif
def keep_input(module, inputs, output):
    captured["x"] = inputs[0][:, 0].detach()   # returning None keeps the module's output
h = lif.register_forward_hook(keep_input)
model.reconstruct(x[:1], seed=0)
h.remove()
rates = records["decoder.%d.lif" % (len(model.decoder) - 1)][:, 0].flatten(1).mean(0)
neuron = int(torch.argsort(rates, descending=True)[len(rates) // 4])
viz.membrane_trace(captured["x"], lif, neuron=neuron, dpi=80)"""),
    ],
    "zoo_tour": [
        ("md", """# A tour of the zoo
Every entry carries its architecture, file hash, data, licence, the metrics we measured and how."""),
        ("code", SETUP),
        ("code", """for name in zoo.list_models():
    w = zoo.get_weights(name)
    print(f"{name:15s} {w.dataset:14s} {w.source_format:9s} metrics={dict(w.metrics)}")"""),
        ("code", """print(zoo.get_weights("fashion-mnist").card()[:1500])"""),
        ("md", """## Samples and reconstructions of every shipped model
Models not present locally (the authors' CelebA weights need a download) are skipped."""),
        ("code", """from fsvae_sj.datasets import make_dataset
shipped = [n for n in zoo.list_models() if (zoo.ZOO_DIR / zoo.get_weights(n).file_name).is_file()]
n = 6 if SMALL else 8
for name in shipped:
    m = zoo.load(name)
    ds = zoo.get_weights(name).dataset
    x = make_dataset(ds, "test", limit=n).images
    grid = torch.cat([m.sample(n, seed=0), x, m.reconstruct(x, seed=0)])
    viz.image_grid(grid, nrow=n, title=f"{name}: samples / test images / reconstructions")
    plt.show()"""),
        ("md", """## Seeded reproducibility
Image i depends only on (seed, i): every image has its own CPU random stream (as in diffusers), so
asking for 3 images or for 8 gives the same first three, and the latent spike trains are identical.
The cell asserts what it prints."""),
        ("code", """model = zoo.load("fashion-mnist")
a, za = model.sample(8, seed=123, return_latents=True)
b, zb = model.sample(3, seed=123, return_latents=True)
same_latents = torch.equal(za[:, :3], zb)
same_images = torch.allclose(a[:3], b, atol=1e-5)
print("same latents:", same_latents, " same images:", same_images)
assert same_latents and same_images"""),
        ("md", """## Interpolating between two latent spike trains
Spike trains cannot be averaged, but they can be **switched**: take z_a for steps < t and z_b from t on.
The first row runs from t = 0 (z_b alone, left) to t = 16 (z_a alone, right); the second takes the
first c channels from z_a and the rest from z_b, from c = 0 (z_b alone) to c = 128 (z_a alone). The
cell prints how far each image is from z_b's (mean absolute pixel difference, pixels in [-1, 1]).
When this notebook was built, switching the first 6 of the 16 steps to z_a moved the image by 0.05
only, while the last 6 steps moved it most (0.15 at t = 10, 0.51 at t = 16): the read-out weighs
late steps more. Taking channels from z_a moves it sooner (0.09 with the first 16 channels)."""),
        ("code", """_, za = model.sample(1, seed=1, return_latents=True)
_, zb = model.sample(1, seed=2, return_latents=True)
T, L = za.shape[0], za.shape[2]
switch = torch.cat([torch.cat([za[:t], zb[t:]]) for t in range(0, T + 1, 2)], dim=1)
mix = torch.cat([torch.cat([za[..., :c], zb[..., c:]], dim=-1) for c in range(0, L + 1, L // 8)], dim=1)
with torch.no_grad():
    switched, mixed = model.decode(switch), model.decode(mix)
for name, row in (("switch at t = 0, 2, ..., 16", switched), ("first c channels, c = 0, 16, ..., 128", mixed)):
    print(f"{name}: distance from z_b's image", [round(float((im - row[0]).abs().mean()), 2) for im in row])
viz.image_grid(switched, nrow=len(switched), title="z_a before step t, z_b from t on: t = 0 (z_b) ... 16 (z_a)")
plt.show()
viz.image_grid(mixed, nrow=len(mixed), title="first c channels from z_a, the rest from z_b: c = 0 (z_b) ... 128 (z_a)")"""),
    ],
    "energy": [
        ("md", """# The energy story
The paper's claim: per image, FSVAE needs more **additions** but far fewer **multiplications** than an
ANN VAE of the same shape (MNIST: 6.8x the additions, 1/13 of the multiplications). Additions on
spikes are cheap accumulates (0.9 pJ in 45 nm CMOS) while multiply-accumulates cost 4.6 pJ.
Counts follow the paper's rule (`fsvae_sj.opcount`, transposed convolutions counted as the authors'
code does) and, beside it where SpikingJelly 2 is installed, SpikingJelly's own counter
(`spikingjelly.activation_based.op_counter`): SynOps, ACs and MACs of what this code executes, and
its simple energy model, which adds the energy of moving weights and neuron states (24.96 pJ per
byte)."""),
        ("code", SETUP),
        ("code", """from fsvae_sj import opcount as ops
from fsvae_sj.datasets import make_dataset
have = set(zoo.list_models())
ds = "mnist" if {"mnist", "mnist-ann"} <= have else "fashion-mnist"
fsvae, ann = zoo.load(ds), zoo.load(ds + "-ann")
x = make_dataset(ds, "test", limit=4 if SMALL else 32).images
res = ops.compare(fsvae, ann, x)


def row(label, f, a, fmt=",.0f"):
    print(f"{label:40s} {f:14{fmt}} {a:14{fmt}}   " + (f"{f / a:.3f}" if a else "-"))


print(f"{f'per image, {len(x)} {ds} test images':40s} {'FSVAE':>14s} {'ANN':>14s}   FSVAE/ANN")
for k in ("additions", "multiplications"):
    row(f"paper's rule: {k}", res["fsvae"][k], res["ann"][k])
row("paper's rule: energy (uJ)", res["energy_paper_rule_uJ"]["fsvae"], res["energy_paper_rule_uJ"]["ann"], ",.2f")
sj = res["spikingjelly"]
if sj is None:
    print("this SpikingJelly has no op_counter: the paper's rule only")
else:
    for k in ("synops", "acs", "macs", "memory_bytes", "energy_compute_uJ", "energy_with_memory_uJ"):
        row(f"SpikingJelly: {k}", sj["fsvae"][k], sj["ann"][k], ",.2f" if "energy" in k else ",.0f")
authors_loop = ops.compare(fsvae, ann, x, loop="prefix")
print("counted with the authors' O(T^2) test-time posterior loop: additions ratio "
      f"{authors_loop['ratio_additions']:.2f}, multiplications ratio {authors_loop['ratio_multiplications']:.3f}")"""),
        ("code", """viz.op_counts(res, paper_ratios=ops.PAPER_RATIOS_MNIST, authors_loop=authors_loop, dpi=80)"""),
        ("md", """Left: additions and multiplications per image on a linear axis, FSVAE beside the ANN VAE, with
their ratio above each pair. Middle: the energy per image by the paper's rule: the FSVAE's many cheap
additions cost less than the ANN's multiply-accumulates. Right: the FSVAE/ANN ratios as dots on a log
axis (the line at 1 is where both networks count the same): ours, ours counted with the authors'
test-time loop, and the paper's MNIST numbers. The multiplication ratio lands near the paper's 1/13:
FSVAE multiplies only in its first convolution (analog pixels) and in membrane decays. The addition
ratio depends on how much the network fires and on what is counted: the authors' test loop re-ran the
posterior on the whole prefix at every step (O(T^2)), which multiplies the posterior's additions and
brings the ratio closer to the paper's; our O(T) loop does the same work once per step. The counts
here are for *our* zoo weights, trained for a short budget; the paper counted its own checkpoints."""),
        ("code", """if sj is None:
    print("SpikingJelly 0.0.0.0.14 has no op_counter: the paper's rule alone")
else:
    print(f"{'per image':<34}{'FSVAE':>14}{'ANN VAE':>14}")
    for k, label in (("synops", "SynOps (SpikingJelly)"), ("acs", "ACs (SpikingJelly)"), ("macs", "MACs (SpikingJelly)"),
                     ("energy_compute_uJ", "compute energy, uJ (SpikingJelly)"),
                     ("energy_with_memory_uJ", "with memory traffic, uJ (SJ)")):
        print(f"{label:<34}{sj['fsvae'][k]:>14,.2f}{sj['ann'][k]:>14,.2f}")"""),
        ("md", """SpikingJelly's own counter (`spikingjelly.activation_based.op_counter`, SpikingJelly 2) counts
what this code executes: the first convolution once for all T steps, the read-out once on
time-weighted spikes, exact kernel overlaps at the borders, tdBN's additions, no decays; where both
count the same thing (linear layers' SynOps, LIF additions, the ANN's MACs) they agree exactly
(`tests/test_ops.py`). Its energy model with memory traffic turns the comparison around: it charges a
4-byte weight read (about 100 pJ) for every synaptic operation, more than a hundred times the 0.9 pJ of
the accumulate itself (and, in SpikingJelly 2.0.0, it leaves the weight reads of transposed
convolutions out, for both models)."""),
    ],
}


def build(name: str, out_dir: Path, small: bool, timeout: int = 600) -> float:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, src in NOTEBOOKS[name]:
        nb.cells.append(nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src))
    env_small = os.environ.get("FSVAE_SJ_SMALL")
    os.environ["FSVAE_SJ_SMALL"] = "1" if small else "0"
    start = time.time()
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(HERE.parent)}}).execute()
    finally:
        if env_small is None:
            os.environ.pop("FSVAE_SJ_SMALL", None)
        else:
            os.environ["FSVAE_SJ_SMALL"] = env_small
    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_dir / f"{name}.ipynb")
    return time.time() - start


def readme_raster(path: Path) -> None:
    """The raster shown in the README: the busiest latent channels of one zoo sample."""
    import torch

    from fsvae_sj import viz, zoo
    model = zoo.load("fashion-mnist")
    _, z = model.sample(1, seed=0, return_latents=True)
    busiest = torch.argsort(z[:, 0].mean(0), descending=True)[:32]
    fig = viz.raster(z[:, 0], neurons=busiest, order_by_rate=True, figsize=(7, 4.5), dpi=80,
                     title="FSVAE latent spikes z_1..z_16 of one sample (fashion-mnist zoo model)\n"
                           "the 32 busiest of its 128 channels")
    viz.save(fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="CI sizes")
    p.add_argument("--out", type=Path, default=HERE, help="where to write the executed notebooks")
    p.add_argument("names", nargs="*", default=list(NOTEBOOKS))
    args = p.parse_args(argv)
    for name in args.names:
        seconds = build(name, args.out, args.small)
        print(f"{name}: executed in {seconds:.0f} s -> {args.out / (name + '.ipynb')}")
    if args.out == HERE:
        readme_raster(HERE / "raster.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
