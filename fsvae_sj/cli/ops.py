"""``python -m fsvae_sj.ops`` (``fsvae-ops``): additions, multiplications and energy per image,
by the paper's rule and, on SpikingJelly 2, by SpikingJelly's own op_counter.

    python -m fsvae_sj.ops --dataset mnist --fsvae mnist --ann mnist-ann

The counting rules are :mod:`fsvae_sj.opcount`.
"""
from __future__ import annotations

from .. import zoo
from . import common
from ..spiking.sj import SJ_VERSION
from ..datasets import canonical, make_dataset
from ..opcount import PAPER_RATIOS_MNIST, compare


def build_parser():
    p = common.parser("ops", "Additions, multiplications, SynOps/ACs/MACs and energy per image, FSVAE against "
                           "the ANN VAE, beside the paper's ratios.",
                    common.count_flag(16, "test images counted", "--num-images"),
                    common.output_flag("write the result here as JSON, atomically (default: printed only)", "--json"),
                    common.device_flag(), common.cross_dataset_flag())
    p.add_argument("--dataset", default="mnist", help="test images to count on: " + common.data_help("mnist"))
    p.add_argument("--fsvae", default=None, metavar="NAME|PATH",
                   help="the FSVAE: zoo name or path (default: the dataset's zoo model, e.g. mnist)")
    p.add_argument("--ann", default=None, metavar="NAME|PATH",
                   help="the ANN VAE: zoo name or path (default: <dataset>-ann, e.g. mnist-ann)")
    p.add_argument("--transposed-rule", default="code", choices=("code", "exact"),
                   help="fan-out of a transposed convolution: code (k*k*C_out*stride^2, as the authors' code "
                        "counted) or exact (k*k*C_out) (default code)")
    p.add_argument("--loop", default="incremental", choices=("incremental", "prefix"),
                   help="posterior loop to count: ours (O(T)) or the authors' test-time prefix loop (O(T^2)) "
                        "(default incremental)")
    return p


@common.command
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = common.writable(args.out, "--out") if args.out else None   # before the work, not after it
    ds = canonical(args.dataset)
    device = common.resolve_device(args.device)
    fsvae = zoo.load(args.fsvae or ds, device=device)
    ann = zoo.load(args.ann or f"{ds}-ann", device=device)
    common.check_dataset(args.fsvae or ds, fsvae, ds, args.cross_dataset, "--fsvae")
    common.check_dataset(args.ann or f"{ds}-ann", ann, ds, args.cross_dataset, "--ann")
    x = make_dataset(ds, "test", limit=common.positive(args.num, "-n")).images.to(device)
    res = compare(fsvae, ann, x, args.transposed_rule, args.loop)
    print(f"per image, {args.num} {ds} test images, transposed-conv rule {args.transposed_rule!r}, "
          f"posterior loop {args.loop!r}")
    print(f"{'by the paper rule':22s} {'FSVAE':>14s} {'ANN':>14s}  FSVAE/ANN")
    for k in ("additions", "multiplications"):
        print(f"{k:22s} {res['fsvae'][k]:14,.0f} {res['ann'][k]:14,.0f}  {res['ratio_' + k]:.3f} "
              f"(paper on MNIST: {PAPER_RATIOS_MNIST[k]:.3f})")
    _row("energy (uJ)", res["energy_paper_rule_uJ"]["fsvae"], res["energy_paper_rule_uJ"]["ann"], ",.2f")
    sj = res["spikingjelly"]
    if sj is None:
        print(f"SpikingJelly {SJ_VERSION} has no op_counter: the paper's rule only")
    else:
        print(f"SpikingJelly {sj['fsvae']['spikingjelly']} op_counter: what this code executes")
        for key, label, fmt in _SJ_ROWS:
            _row(label, sj["fsvae"][key], sj["ann"][key], fmt)
    common.write_json(out, res)
    return 0


# SpikingJelly's figures as printed: key of opcount.count_spikingjelly, label, number format
_SJ_ROWS = (("synops", "SynOps", ",.0f"), ("acs", "ACs", ",.0f"), ("macs", "MACs", ",.0f"),
            ("memory_bytes", "memory (bytes)", ",.0f"), ("energy_compute_uJ", "energy, compute (uJ)", ",.2f"),
            ("energy_with_memory_uJ", "energy with memory (uJ)", ",.2f"))


def _row(label: str, fsvae: float, ann: float, fmt: str) -> None:
    ratio = f"{fsvae / ann:.3f}" if ann else "-"
    print(f"{label:22s} {fsvae:14{fmt}} {ann:14{fmt}}  {ratio}")


cli = common.entry_point(main)

if __name__ == "__main__":
    cli()
