"""Sample images from a zoo model or a checkpoint.

    python -m fsvae_sj.sample -n 64                       # grid PNG from the default zoo model
    python -m fsvae_sj.sample -n 5000 --model fashion-mnist --format npy --seed 0 --out s.npy
"""
from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

import numpy as np
import torch

from .io import atomic_write_bytes
from .seeding import sample_generators

FORMATS = ("png", "npy")


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but no CUDA device is available; use --device cpu")
    return name


def output_format(out: str | None, fmt: str | None) -> str:
    """--format, else the suffix of --out (.png / .npy), else png; a mismatch is refused."""
    suffix = Path(out).suffix.lower().lstrip(".") if out else ""
    if fmt is None:
        return suffix if suffix in FORMATS else "png"
    if fmt not in FORMATS:
        raise SystemExit(f"error: unknown --format {fmt!r}; expected one of {FORMATS}")
    if suffix in FORMATS and suffix != fmt:
        raise SystemExit(f"error: --out {out} ends in .{suffix} but --format is {fmt}; make them agree")
    return fmt


def check_output(out: str | None, fmt: str, default_stem: str) -> Path:
    """The output path, validated before any work: known format, writable folder, not a folder."""
    if fmt not in FORMATS:
        raise SystemExit(f"error: unknown --format {fmt!r}; expected one of {FORMATS}")
    path = Path(out) if out else Path(f"{default_stem}.{fmt}")
    if path.is_dir():
        raise SystemExit(f"error: --out {path} is a folder; give a file name, e.g. {path / (default_stem + '.' + fmt)}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise SystemExit(f"error: output folder {folder} does not exist; create it or choose another --out")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise SystemExit(f"error: cannot write {path}; choose another --out")
    return path


def save_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())


def write_images(images: torch.Tensor, path: Path, fmt: str, nrow: int) -> None:
    """``images`` in [-1, 1] as a PNG grid or an ``(n, C, H, W)`` float32 .npy, atomically."""
    if fmt == "npy":
        save_npy(path, images.cpu().numpy().astype(np.float32))
        return
    from torchvision.utils import save_image
    buf = io.BytesIO()
    save_image((images.cpu() + 1) / 2, buf, format="png", nrow=nrow)
    atomic_write_bytes(path, buf.getvalue())


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="fashion-mnist",
                   help="zoo name (python -m fsvae_sj.zoo list) or path to a .safetensors checkpoint "
                        "(default: fashion-mnist, shipped in zoo/)")
    p.add_argument("--seed", type=int, default=0, help="random seed: image i depends only on (seed, i), whatever "
                                                        "the batch size or device (default 0)")
    p.add_argument("--out", help="output file (default: samples.png / samples.npy)")
    p.add_argument("--nrow", type=int, default=8, help="images per row of the PNG grid (default 8)")
    p.add_argument("--format", default=None, help="png (a grid) or npy (array (n, C, H, W) in [-1, 1]); "
                                                  "default: the suffix of --out, else png")
    p.add_argument("--batch-size", type=int, default=500, help="images generated per forward pass (default 500)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))


def check_counts(args) -> None:
    if args.seed < 0:
        raise SystemExit(f"error: --seed must be >= 0, got {args.seed}")
    if args.batch_size < 1:
        raise SystemExit(f"error: --batch-size must be >= 1, got {args.batch_size}")
    if args.nrow < 1:
        raise SystemExit(f"error: --nrow must be >= 1, got {args.nrow}")


def load_for_cli(name: str, device: str):
    from . import zoo
    try:
        model = zoo.load(name, device=device)
        path, digest = zoo.weights_of(name)
    except (zoo.ZooError, ValueError) as e:
        raise SystemExit(f"error: {e}")
    print(f"weights: {name} -> {path} (sha256 {digest})")
    return model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fsvae_sj.sample",
                                description="Generate images with a pretrained FSVAE (or ANN VAE) from the zoo.")
    p.add_argument("-n", "--num", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--save-latents", metavar="FILE",
                   help="also save the latent spike trains as .npy, shape [T, n, latent] (FSVAE only)")
    add_common_args(p)
    args = p.parse_args(argv)
    if args.num < 1:
        raise SystemExit(f"error: -n must be >= 1, got {args.num}")
    check_counts(args)
    args.format = output_format(args.out, args.format)
    out = check_output(args.out, args.format, "samples")
    latents_out = check_output(args.save_latents, "npy", "latents") if args.save_latents else None
    device = resolve_device(args.device)
    model = load_for_cli(args.model, device)

    from tqdm import tqdm
    images, latents = [], []
    with tqdm(total=args.num, unit="img", disable=args.num <= args.batch_size) as bar:
        for start in range(0, args.num, args.batch_size):
            n = min(args.batch_size, args.num - start)
            # image i depends on (seed, i) only: any --batch-size gives the same images
            x, z = model.sample(n, generator=sample_generators(args.seed, n, start), return_latents=True)
            images.append(x)
            latents.append(z)
            bar.update(n)
    images = torch.cat(images)
    write_images(images, out, args.format, args.nrow)
    if latents_out is not None:
        spiking = latents[0].dim() == 3  # FSVAE: [T, n, latent] spikes; ANN VAE: [n, latent]
        z = torch.cat(latents, dim=1 if spiking else 0).cpu().numpy()
        save_npy(latents_out, z.astype(np.uint8 if spiking else np.float32))
    print(f"wrote {len(images)} images to {out}" + (f" and latents to {latents_out}" if latents_out else ""))
    return 0


if __name__ == "__main__":
    from ._malloc import run_cli
    run_cli(main)
