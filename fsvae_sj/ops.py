"""``python -m fsvae_sj.ops`` (``fsvae-ops``): additions, multiplications and energy per image.

    python -m fsvae_sj.ops --dataset mnist --fsvae mnist --ann mnist-ann

The counting rules are :mod:`fsvae_sj.opcount`.
"""
from __future__ import annotations

from . import _cli, zoo
from .datasets import canonical, make_dataset
from .opcount import PAPER_RATIOS_MNIST, compare


def build_parser():
    p = _cli.parser("ops", "Additions, multiplications, SynOps/ACs/MACs and energy per image, FSVAE against "
                           "the ANN VAE, beside the paper's ratios.",
                    _cli.count_flag(16, "test images counted", "--num-images"),
                    _cli.output_flag("write the result here as JSON, atomically (default: printed only)", "--json"),
                    _cli.device_flag())
    p.add_argument("--dataset", default="mnist", help="test images to count on: " + _cli.data_help("mnist"))
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


@_cli.command
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    ds = canonical(args.dataset)
    device = _cli.resolve_device(args.device)
    fsvae = zoo.load(args.fsvae or ds, device=device)
    ann = zoo.load(args.ann or f"{ds}-ann", device=device)
    x = make_dataset(ds, "test", limit=_cli.positive(args.num, "-n")).images.to(device)
    res = compare(fsvae, ann, x, args.transposed_rule, args.loop)
    print(f"per image, {args.num} {ds} test images, transposed-conv rule {args.transposed_rule!r}, "
          f"posterior loop {args.loop!r}")
    for k in ("additions", "multiplications"):
        print(f"{k:16s} FSVAE {res['fsvae'][k]:14,.0f}  ANN {res['ann'][k]:14,.0f}  "
              f"ratio {res['ratio_' + k]:.3f}  (paper on MNIST: {PAPER_RATIOS_MNIST[k]:.3f})")
    _cli.write_json(args.out, res)
    return 0


cli = _cli.entry_point(main)

if __name__ == "__main__":
    cli()
