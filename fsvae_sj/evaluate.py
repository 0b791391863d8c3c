"""``python -m fsvae_sj.evaluate`` (``fsvae-evaluate``): the paper's Table 1 columns for a model.

    python -m fsvae_sj.evaluate --model fashion-mnist --dataset fashion-mnist \
        --metrics recon,afd -n 5000 --seed 0 -o out.json
    python -m fsvae_sj.evaluate --dataset fashion-mnist --real --metrics afd -o out.json

The metrics and their protocols are :mod:`fsvae_sj.metrics`.
"""
from __future__ import annotations

from . import _cli
from .datasets import DATASETS, canonical
from .metrics import METRICS, evaluate
from .spiking.lif import use_fused_kernels


def build_parser():
    p = _cli.parser("evaluate", "Report the paper's Table 1 columns for a model or for real test images.",
                    _cli.model_flag(default=None, without="required unless --real"),
                    _cli.count_flag(5000, "generated samples", "--num-samples"),
                    _cli.seed_flag(), _cli.output_flag("write the result here as JSON, atomically (default: "
                                                       "printed only)", "--json"),
                    _cli.device_flag(), _cli.fused_lif_flag(default=True), _cli.data_root_flag(),
                    _cli.cross_dataset_flag())
    p.add_argument("--dataset", required=True,
                   help=f"the test set and reference statistics to score against: one of {', '.join(DATASETS)} "
                        f"(required)")
    p.add_argument("--metrics", default="recon,afd",
                   help=f"comma-separated subset of {','.join(METRICS)} (default recon,afd)")
    p.add_argument("--real", action="store_true",
                   help="score the real test images instead of samples (default: score --model's samples)")
    p.add_argument("--download", action="store_true",
                   help="download the test set with torchvision if missing (default: never download)")
    return p


@_cli.command
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = _cli.writable(args.out, "--out") if args.out else None   # before the work, not after it
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    model = own = None
    if not args.real:
        if not args.model:
            raise _cli.UsageError("give --model NAME|PATH, or --real to score real test images")
        model = use_fused_kernels(_cli.load_model(args.model, _cli.resolve_device(args.device)), args.fused_lif)
        own = _cli.check_dataset(args.model, model, canonical(args.dataset), args.cross_dataset)
    res = evaluate(model, args.dataset, metrics, args.num, args.seed, args.real, args.data_root,
                   download=args.download, progress=True)
    res["model"] = args.model
    res["model_dataset"] = own   # what the model was trained on (None: not recorded), beside res["dataset"]
    for key in ("recon_mse", "afd", "inception_score", "fid"):
        val = res[key]
        shown = f"{val:.4f}" if isinstance(val, float) else "n/a"
        print(f"{key:16s} {shown:>10s}  {res['protocol'].get(key) or res['notes'].get(key, 'not requested')}")
    _cli.write_json(out, res)
    return 0


cli = _cli.entry_point(main)

if __name__ == "__main__":
    cli()
