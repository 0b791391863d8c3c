"""``python -m fsvae_sj.ops`` (``fsvae-ops``): additions, multiplications and energy per image.

    python -m fsvae_sj.ops --dataset mnist --fsvae mnist --ann mnist-ann

The counting rules are :mod:`fsvae_sj.opcount`.
"""
from __future__ import annotations

from . import _cli, zoo
from .datasets import canonical, make_dataset
from .opcount import PAPER_RATIOS_MNIST, compare


@_cli.command
def main(argv=None) -> int:
    p = _cli.parser("ops", "Additions, multiplications, SynOps/ACs/MACs and energy per image, FSVAE against "
                           "the ANN VAE, beside the paper's ratios.",
                    _cli.count_flag(16, "test images counted", "--num-images"),
                    _cli.output_flag("write the result here as JSON (atomically)", "--json"), _cli.device_flag())
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--fsvae", default=None, help="zoo name or path (default: the dataset's zoo model)")
    p.add_argument("--ann", default=None, help="zoo name or path (default: <dataset>-ann)")
    p.add_argument("--transposed-rule", default="code", choices=("code", "exact"))
    p.add_argument("--loop", default="incremental", choices=("incremental", "prefix"),
                   help="posterior loop to count: ours (O(T)) or the authors' test-time prefix loop (O(T^2))")
    args = p.parse_args(argv)
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
