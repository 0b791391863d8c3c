"""Reconstruct test images with a pretrained model.

    python -m fsvae_sj.reconstruct -n 32 --dataset fashion-mnist     # originals above reconstructions
"""
from __future__ import annotations

import argparse

import torch

from .data import canonical, make_dataset
from .seeding import sample_generators
from .sample import (add_common_args, check_counts, check_output, load_for_cli, output_format, resolve_device,
                     write_images)


def dataset_of(model: str) -> str:
    """The dataset a zoo entry or one of our checkpoints was trained on."""
    from pathlib import Path

    from . import zoo
    from .io import CheckpointError, read_checkpoint
    try:
        if Path(model).is_file():
            name = read_checkpoint(model)[2].get("train_config", {}).get("dataset")
        else:
            name = zoo.get_weights(model).dataset
    except (zoo.ZooError, CheckpointError) as e:
        raise SystemExit(f"error: {e}") from e
    if not name:
        raise SystemExit(f"error: {model} does not record its dataset; pass --dataset")
    return name.lower()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fsvae_sj.reconstruct",
                                description="Encode and decode the first N test images (eval mode). The PNG grid "
                                            "shows each row of originals above its reconstructions; the .npy "
                                            "holds only the reconstructions, shape (n, C, H, W) in [-1, 1].")
    p.add_argument("-n", "--num", type=int, default=32, help="number of test images (default 32)")
    p.add_argument("--dataset", default=None, help="test set to reconstruct (default: the model's zoo dataset)")
    p.add_argument("--data-root")
    add_common_args(p)
    args = p.parse_args(argv)
    if args.num < 1:
        raise SystemExit(f"error: -n must be >= 1, got {args.num}")
    check_counts(args)
    args.format = output_format(args.out, args.format)
    out = check_output(args.out, args.format, "reconstructions")
    dataset = canonical(args.dataset or dataset_of(args.model))
    device = resolve_device(args.device)
    model = load_for_cli(args.model, device)
    test = make_dataset(dataset, "test", args.data_root, limit=args.num)
    x = torch.stack([test[i][0] for i in range(len(test))]).to(device)
    # image i's posterior draws depend on (seed, i) only: any --batch-size gives the same images
    recon = torch.cat([model.reconstruct(x[i:i + args.batch_size],
                                         generator=sample_generators(args.seed, len(x[i:i + args.batch_size]), i))
                       for i in range(0, len(x), args.batch_size)])
    if args.format == "png":
        rows = [t for i in range(0, len(x), args.nrow) for t in (x[i:i + args.nrow], recon[i:i + args.nrow])]
        write_images(torch.cat(rows), out, "png", args.nrow)
    else:
        write_images(recon, out, "npy", args.nrow)
    mse = float(((recon - x) ** 2).mean())
    print(f"wrote {len(recon)} reconstructions of {dataset} test images to {out} (MSE {mse:.4f})")
    return 0


if __name__ == "__main__":
    from ._malloc import run_cli
    run_cli(main)
