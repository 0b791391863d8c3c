"""``python -m fsvae_sj.reconstruct`` (``fsvae-reconstruct``): test images and their reconstructions.

    python -m fsvae_sj.reconstruct -n 32 --model fashion-mnist     # originals above reconstructions
"""
from __future__ import annotations

import torch

from .. import zoo
from . import common
from ..datasets import canonical, make_dataset
from ..seeding import sample_generators


def build_parser():
    p = common.parser("reconstruct", "Encode and decode the first N test images (eval mode). The PNG grid shows "
                                   "each row of originals above its reconstructions; the .npy holds only the "
                                   "reconstructions, shape (n, C, H, W) in [-1, 1].",
                    common.model_flag(), common.count_flag(32, "test images"), common.seed_flag(),
                    common.output_flag("output file (default: reconstructions.png / .npy)"),
                    common.image_flags(), common.device_flag(), common.data_root_flag(),
                    common.cross_dataset_flag())
    p.add_argument("--dataset", default=None, help="test set to reconstruct: " + common.data_help("the model's own"))
    return p


@common.command
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = common.check_image_args(args, "reconstructions")
    dataset = args.dataset or zoo.trained_on(args.model)
    if not dataset:
        raise common.UsageError(f"{args.model} does not record its dataset; pass --dataset")
    dataset = canonical(dataset)
    device = common.resolve_device(args.device)
    model = common.load_and_report(args.model, device)
    common.check_dataset(args.model, model, dataset, args.cross_dataset)
    test = make_dataset(dataset, "test", args.data_root, limit=args.num)
    x = torch.stack([test[i][0] for i in range(len(test))]).to(device)
    # image i's posterior draws depend on (seed, i) only: any --batch-size gives the same images
    recon = torch.cat([model.reconstruct(x[i:i + args.batch_size],
                                         generator=sample_generators(args.seed, len(x[i:i + args.batch_size]), i))
                       for i in range(0, len(x), args.batch_size)])
    if args.format == "png":
        rows = [t for i in range(0, len(x), args.nrow) for t in (x[i:i + args.nrow], recon[i:i + args.nrow])]
        common.write_images(torch.cat(rows), out, "png", args.nrow)
    else:
        common.write_images(recon, out, "npy", args.nrow)
    mse = float(((recon - x) ** 2).mean())
    print(f"wrote {len(recon)} reconstructions of {dataset} test images to {out} (MSE {mse:.4f})")
    return 0


cli = common.entry_point(main)

if __name__ == "__main__":
    cli()
