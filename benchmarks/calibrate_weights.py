"""Write a copy of a checkpoint with its decoder's tdBN statistics re-estimated on the prior's own
samples (:func:`fsvae_sj.calibration.calibrate_decoder`, streams of seed 1, not the evaluation's 0);
every weight and every other statistic unchanged. What ``train --calibrate-decoder N`` scores as
"EMA calibrated", for a file a run has already written.

    python benchmarks/calibrate_weights.py RUN/ema.safetensors OUT.safetensors [--n 2000]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", type=Path, help="a .safetensors checkpoint of an FSVAE")
    p.add_argument("out", type=Path, help="where to write the calibrated copy (atomically)")
    p.add_argument("--n", type=int, default=2000, help="prior samples the statistics are averaged over (default 2000)")
    args = p.parse_args(argv)
    from fsvae_sj import zoo
    from fsvae_sj.calibration import calibrate_decoder
    from fsvae_sj.hub import read_metadata, save_model
    model = calibrate_decoder(zoo.load(args.weights), n=args.n)
    extra = dict(read_metadata(args.weights)[1], calibrated_decoder_on_prior_samples=args.n)
    print(save_model(model, args.out, extra=extra), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
