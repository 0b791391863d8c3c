"""``python -m fsvae_sj.zoo`` (``fsvae-zoo``): list, describe, download and verify zoo entries;
``publish`` (maintainers) puts a training run into ``zoo/`` (:mod:`fsvae_sj.publish`).
"""
from __future__ import annotations

from pathlib import Path

from .. import zoo
from ..hub import entries
from . import common

_ENTRY = "a zoo entry (python -m fsvae_sj.zoo list)"


def build_parser():
    p = common.parser("zoo", "The fsvae-sj model zoo. Exit status 1: verify found a corrupt file.")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="names, datasets and headline metrics")
    sub.add_parser("info", help="the model card of NAME").add_argument("name", help=_ENTRY)
    download = sub.add_parser("download", help="fetch and verify NAME into the cache ($FSVAE_SJ_HOME, else "
                                               "$TORCH_HOME/fsvae_sj, else ~/.cache/torch/fsvae_sj)")
    download.add_argument("name", help=_ENTRY)
    sub.add_parser("verify", help="check every locally present zoo file against its hash")
    pub = sub.add_parser("publish", help="(maintainers) evaluate a training run and put it into zoo/",
                         parents=[common.count_flag(5000, "samples for the AE Frechet distance (seed 0)",
                                                  "--num-samples")])
    pub.add_argument("run", type=Path, help="a run folder (its best.safetensors, else model.safetensors) or a "
                                            "checkpoint file")
    pub.add_argument("--name", required=True, help="the zoo entry to write or replace (required)")
    pub.add_argument("--dataset",
                     help="the dataset to measure on: " + common.data_help("the checkpoint's training dataset"))
    pub.add_argument("--force", action="store_true",
                     help="replace the entry even if its AE Frechet distance is better than the new one's")
    pub.add_argument("--notes-file", type=Path, metavar="FILE",
                     help="markdown for the card's introduction (default: the generated one)")
    pub.add_argument("--hardware", metavar="TEXT",
                     help="the card's hardware line, for checkpoints made before runs recorded the hardware "
                          "their steps ran on (default: from the checkpoint's provenance)")
    return p


@common.command
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "list":
        for n in zoo.list_models():
            w = zoo.get_weights(n)
            print(f"{n:18s} {w.dataset:14s} {dict(w.metrics)}")
    elif args.cmd == "info":
        print(zoo.get_weights(args.name).card())
    elif args.cmd == "publish":
        from ..zoo.publish import publish   # the metrics' imports are not needed by the other commands
        notes = common.read_text(args.notes_file, "--notes-file").strip() if args.notes_file else ""
        w = publish(args.run, args.name, args.dataset, args.num, notes=notes, force=args.force,
                    hardware=args.hardware)
        print(f"published {w.name}: {dict(w.metrics)}")
    elif args.cmd == "download":
        print(zoo.fetch(zoo.get_weights(args.name)))
    else:
        return _verify_all()
    return 0


def _verify_all() -> int:
    bad = 0
    for n in zoo.list_models():
        w = zoo.get_weights(n)
        for f in (entries.ZOO_DIR / w.file_name, zoo.cache_dir() / w.file_name):
            if f.is_file():
                problem = zoo.verify(w, f)
                bad += problem is not None
                print(f"{n}: {f}: {'OK' if problem is None else 'BAD ' + problem}")
                break
        else:
            print(f"{n}: not present locally")
    return 1 if bad else 0


cli = common.entry_point(main)

if __name__ == "__main__":
    cli()
