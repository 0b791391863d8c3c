"""Write the uniform average of checkpoints of one architecture (a "model soup"): every floating-point
tensor, tdBN running statistics included, is the mean of the files'; integer buffers are the first file's.

    python benchmarks/average_weights.py OUT.safetensors A.safetensors B.safetensors [...]

Meant for runs branched from one state (their frozen parts are equal, so only what they trained is
averaged). Prints which tensors differ between the files, then the SHA-256 of the written file. The
metadata are the first file's, with ``averaged_from`` naming the files. Used in benchmarks/RESULTS.md
("What the samples lack now").
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="where to write the average (atomically)")
    p.add_argument("weights", type=Path, nargs="+", help="two or more .safetensors checkpoints")
    args = p.parse_args(argv)
    if len(args.weights) < 2:
        p.error("give at least two checkpoints to average")
    from fsvae_sj import zoo
    from fsvae_sj.hub import read_metadata, save_model
    models = [zoo.load(w) for w in args.weights]
    states = [m.state_dict() for m in models]
    if any(s.keys() != states[0].keys() for s in states[1:]):
        p.error("the checkpoints hold different tensors: not one architecture")
    averaged = {k: torch.stack([s[k] for s in states]).mean(0) if v.is_floating_point() else v
                for k, v in states[0].items()}
    differ = [k for k, v in states[0].items() if not all(torch.equal(v, s[k]) for s in states[1:])]
    print(f"{len(differ)} of {len(averaged)} tensors differ between the files:", ", ".join(differ))
    models[0].load_state_dict(averaged)
    extra = dict(read_metadata(args.weights[0])[1], averaged_from=",".join(map(str, args.weights)))
    print(save_model(models[0], args.out, extra=extra), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
