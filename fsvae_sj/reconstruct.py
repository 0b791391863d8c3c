"""``python -m fsvae_sj.reconstruct`` (``fsvae-reconstruct``): test images and their reconstructions.

    python -m fsvae_sj.reconstruct -n 32 --model fashion-mnist     # originals above reconstructions
"""
from __future__ import annotations

import torch

from . import _cli, zoo
from .checkpoint import read_checkpoint
from .datasets import canonical, make_dataset
from .seeding import sample_generators


def dataset_of(model: str) -> str:
    """The dataset a zoo entry or one of our checkpoints was trained on."""
    if zoo.looks_like_path(model):
        name = read_checkpoint(model)[2].get("train_config", {}).get("dataset")
    else:
        name = zoo.get_weights(model).dataset
    if not name:
        raise _cli.UsageError(f"{model} does not record its dataset; pass --dataset")
    return name.lower()


def build_parser():
    p = _cli.parser("reconstruct", "Encode and decode the first N test images (eval mode). The PNG grid shows "
                                   "each row of originals above its reconstructions; the .npy holds only the "
                                   "reconstructions, shape (n, C, H, W) in [-1, 1].",
                    _cli.model_flag(), _cli.count_flag(32, "test images"), _cli.seed_flag(),
                    _cli.output_flag("output file (default: reconstructions.png / .npy)"),
                    _cli.image_flags(), _cli.device_flag(), _cli.data_root_flag())
    p.add_argument("--dataset", default=None, help="test set to reconstruct: " + _cli.data_help("the model's own"))
    return p


@_cli.command
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = _cli.check_image_args(args, "reconstructions")
    dataset = canonical(args.dataset or dataset_of(args.model))
    device = _cli.resolve_device(args.device)
    model = _cli.load_model(args.model, device)
    test = make_dataset(dataset, "test", args.data_root, limit=args.num)
    x = torch.stack([test[i][0] for i in range(len(test))]).to(device)
    # image i's posterior draws depend on (seed, i) only: any --batch-size gives the same images
    recon = torch.cat([model.reconstruct(x[i:i + args.batch_size],
                                         generator=sample_generators(args.seed, len(x[i:i + args.batch_size]), i))
                       for i in range(0, len(x), args.batch_size)])
    if args.format == "png":
        rows = [t for i in range(0, len(x), args.nrow) for t in (x[i:i + args.nrow], recon[i:i + args.nrow])]
        _cli.write_images(torch.cat(rows), out, "png", args.nrow)
    else:
        _cli.write_images(recon, out, "npy", args.nrow)
    mse = float(((recon - x) ** 2).mean())
    print(f"wrote {len(recon)} reconstructions of {dataset} test images to {out} (MSE {mse:.4f})")
    return 0


cli = _cli.entry_point(main)

if __name__ == "__main__":
    cli()
