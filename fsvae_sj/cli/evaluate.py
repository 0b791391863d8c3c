"""``python -m fsvae_sj.evaluate`` (``fsvae-evaluate``): the paper's Table 1 columns for a model.

    python -m fsvae_sj.evaluate --model fashion-mnist --dataset fashion-mnist \
        --metrics recon,afd -n 5000 --seed 0 -o out.json
    python -m fsvae_sj.evaluate --dataset fashion-mnist --real --metrics afd -o out.json

The metrics and their protocols are :mod:`fsvae_sj.metrics`.
"""
from __future__ import annotations

from . import common
from ..datasets import DATASETS, canonical
from ..metrics import METRICS, evaluate
from ..spiking.lif import use_fused_kernels


def build_parser():
    p = common.parser("evaluate", "Report the paper's Table 1 columns for a model or for real test images.",
                    common.model_flag(default=None, without="required unless --real"),
                    common.count_flag(5000, "generated samples", "--num-samples"),
                    common.seed_flag(), common.output_flag("write the result here as JSON, atomically (default: "
                                                       "printed only)", "--json"),
                    common.device_flag(), common.fused_lif_flag(default=True), common.data_root_flag(),
                    common.cross_dataset_flag())
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


@common.command
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = common.writable(args.out, "--out") if args.out else None   # before the work, not after it
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    model = own = None
    if not args.real:
        if not args.model:
            raise common.UsageError("give --model NAME|PATH, or --real to score real test images")
        model = use_fused_kernels(common.load_and_report(args.model, common.resolve_device(args.device)), args.fused_lif)
        own = common.check_dataset(args.model, model, canonical(args.dataset), args.cross_dataset)
    res = evaluate(model, args.dataset, metrics, args.num, args.seed, args.real, args.data_root,
                   download=args.download, progress=True)
    res["model"] = args.model
    res["model_dataset"] = own   # what the model was trained on (None: not recorded), beside res["dataset"]
    for key in ("recon_mse", "afd", "afd_val", "inception_score", "fid"):
        val = res[key]
        shown = f"{val:.4f}" if isinstance(val, float) else "n/a"
        print(f"{key:16s} {shown:>10s}  {res['protocol'].get(key) or res['notes'].get(key, 'not requested')}")
    common.write_json(out, res)
    return 0


cli = common.entry_point(main)

if __name__ == "__main__":
    cli()
