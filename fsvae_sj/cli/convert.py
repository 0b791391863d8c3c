"""``python -m fsvae_sj.convert`` (``fsvae-convert``): the authors' checkpoints to our format.

    python -m fsvae_sj.convert SRC.pth DST.safetensors
    python -m fsvae_sj.convert --check-fixture tests/data/parity_fsvae_large.pt.gz

The layout knowledge is :mod:`fsvae_sj.authors`.
"""
from __future__ import annotations

import os

from . import common
from ..zoo.authors import check_fixture, load_authors_checkpoint
from ..hub import save_model


def build_parser():
    p = common.parser("convert", "Convert the FSVAE authors' checkpoints (time-last Conv3d state_dicts) to "
                               "fsvae-sj's safetensors format, or check our port against a parity fixture made "
                               "with their code. Exit status 1: the fixture check failed.")
    p.add_argument("src", nargs="?", help="the authors' checkpoint (.pth state_dict, optionally gzip'd)")
    p.add_argument("dst", nargs="?", help="output file (safetensors with the model config in its metadata)")
    p.add_argument("--check-fixture", metavar="FILE",
                   help="instead of converting: run encoder, posterior, prior and decoder on the fixture's "
                        "inputs; exit 0 only if spikes match exactly and decoded images within 1e-5 (default: "
                        "convert SRC to DST)")
    return p


@common.command
def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.check_fixture:
        ok, lines = check_fixture(args.check_fixture)
        print("\n".join(lines))
        return 0 if ok else 1
    if not (args.src and args.dst):
        p.error("give SRC and DST, or --check-fixture FILE")
    common.writable(args.dst, "DST", "model.safetensors")   # before reading and converting
    model = load_authors_checkpoint(args.src)
    digest = save_model(model, args.dst, extra={"source": os.path.basename(args.src)})
    print(f"wrote {args.dst} ({model.config.hidden_dims}, sha256 {digest})")
    return 0


cli = common.entry_point(main)

if __name__ == "__main__":
    cli()
