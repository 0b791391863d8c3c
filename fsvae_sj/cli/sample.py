"""``python -m fsvae_sj.sample`` (``fsvae-sample``): images from a zoo model or a checkpoint.

    python -m fsvae_sj.sample -n 64                       # grid PNG from the default zoo model
    python -m fsvae_sj.sample -n 5000 --model fashion-mnist --seed 0 -o s.npy
"""
from __future__ import annotations

import torch

from . import common
from ..seeding import sample_generators


def build_parser():
    p = common.parser("sample", "Generate images with a pretrained FSVAE (or ANN VAE) from the zoo. The images go "
                              "to the output batch by batch, so the memory needed does not grow with -n: "
                              + common.BATCH_MEMORY + ".",
                    common.model_flag(), common.count_flag(64, "images"), common.seed_flag(),
                    common.output_flag("output file (default: samples.png / samples.npy)"),
                    common.image_flags(), common.device_flag())
    p.add_argument("--save-latents", metavar="FILE",
                   help="also save the latents as .npy: FSVAE spike trains [T, n, latent] uint8, ANN VAE "
                        "z [n, latent] float32 (default: not saved)")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


@common.command
def main(argv=None) -> int:
    args = parse_args(argv)
    out = common.check_image_args(args, "samples")
    latents_out = common.check_output(args.save_latents, "npy", "latents") if args.save_latents else None
    model = common.load_and_report(args.model, common.resolve_device(args.device))

    from tqdm import tqdm
    latents = []   # kept only for --save-latents, compactly: uint8 spikes (FSVAE) or float32 (ANN VAE)
    # The images go to the output batch by batch: memory grows with --batch-size, not with -n.
    with tqdm(total=args.num, unit="img", disable=args.num <= args.batch_size) as bar, \
            common.image_sink(out, args.format, args.num, args.nrow) as put:
        for start in range(0, args.num, args.batch_size):
            n = min(args.batch_size, args.num - start)
            # image i depends on (seed, i) only: any --batch-size gives the same images
            x, z = model.sample(n, generator=sample_generators(args.seed, n, start), return_latents=True)
            put(x)
            if latents_out is not None:
                latents.append(z.cpu().to(torch.uint8 if z.dim() == 3 else torch.float32))
            del x, z
            bar.update(n)
    if latents_out is not None:
        spiking = latents[0].dim() == 3  # FSVAE: [T, n, latent] spikes; ANN VAE: [n, latent]
        common.save_npy(latents_out, torch.cat(latents, dim=1 if spiking else 0).numpy())
    print(f"wrote {args.num} images to {out}" + (f" and latents to {latents_out}" if latents_out else ""))
    return 0


cli = common.entry_point(main)

if __name__ == "__main__":
    cli()
