"""The zoo's entries: immutable :class:`Weights` records (torchvision-style) read from the JSON files
in the repository's ``zoo/`` folder (:data:`ZOO_DIR`), plus the authors' CelebA model; names, and
what a name or a path means. A model's architecture is stored once: in its safetensors file's
metadata (the JSON describes the entry, not the model), or, for the authors' .pth, which carries
none, in the entry as the plain config dict the converter builds (``FSVAEConfig.large()``'s,
held as data: this wing knows no model class; tests/test_zoo_cli.py pins the two equal).
"""
from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from ..errors import FsvaeError
from .checkpoint import CheckpointError, read_config

_PACKAGE = Path(__file__).resolve().parent.parent


def _zoo_dir() -> Path:
    """The copy a wheel installs in the package, else ``zoo/`` of a clone (editable install).
    (Never a ``zoo`` folder that merely sits beside an installed package.)"""
    installed = _PACKAGE / "zoo_files"
    return installed if installed.is_dir() else _PACKAGE.parent / "zoo"


ZOO_DIR = _zoo_dir()
DEFAULT = "fashion-mnist"

FSVAE_CITATION = ("Kamata, Mukuta, Harada. Fully Spiking Variational Autoencoder. AAAI 2022. arXiv:2110.00375")
SJ_CITATION = ("Fang et al. SpikingJelly: An open-source machine learning infrastructure platform for "
               "spike-based intelligence. Science Advances 9(40), 2023")


class ZooError(FsvaeError, RuntimeError):
    """An unknown name, a file that is missing, corrupt or cannot be fetched."""


# What may name an entry: it becomes file names (zoo/NAME.json, .md, .safetensors) and must never
# look like a path (no separator, no dot): ``load`` tells names and paths apart by that alone.
_ENTRY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def looks_like_path(name_or_path: str | os.PathLike) -> bool:
    """Whether ``load`` and every ``--model``/``--init-from`` take ``name_or_path`` as a file: a
    ``Path``, or a string with a folder separator or a suffix (``./mnist``, ``m.safetensors``).
    Anything else is a zoo name, even when a file of that name sits in the working folder (model
    hubs resolve names the same way: a name never silently means a local file)."""
    if isinstance(name_or_path, os.PathLike):
        return True
    s = str(name_or_path)
    return any(sep and sep in s for sep in (os.sep, os.altsep, "/")) or Path(s).suffix != ""


def check_entry_name(name: str, what: str = "entry name") -> str:
    """``name`` if it can name a zoo entry (letters, digits, ``-`` and ``_``; it becomes file names), else
    :class:`ZooError` saying why."""
    if not isinstance(name, str) or not _ENTRY_NAME.fullmatch(name) or name == "DEFAULT":
        raise ZooError(f"{what} {name!r} cannot name a zoo entry: use letters, digits, '-' and '_' (no folder "
                       f"separator, '.' or '..'; not DEFAULT), since it becomes the file names zoo/NAME.*")
    return name


def check_file_name(name: str, what: str = "file_name") -> str:
    """``name`` if it is a plain file name (no folder part, not hidden, not ``..``), else ZooError."""
    if not isinstance(name, str) or not name or Path(name).name != name or name.startswith(".") or \
            any(sep and sep in name for sep in (os.sep, os.altsep, "/", "\\")):
        raise ZooError(f"{what} {name!r} must be a plain file name (no folder separator, not hidden, not '..'): "
                       f"it is joined to the zoo and cache folders")
    return name


@dataclass(frozen=True)
class Weights:
    """One zoo entry. ``source_format`` is ``"fsvae-sj"`` (our safetensors) or
    ``"authors"`` (their .pth, verified by ``git_blob`` and converted on load).

    ``config``: the architecture of a file that does not carry one (the authors' .pth), as the
    plain dict a header of ours holds (kept read-only); None for our safetensors, whose header
    holds it (:meth:`architecture` reads it)."""

    name: str
    version: str
    file_name: str
    sha256: str | None
    size: int | None
    dataset: str
    split: str
    transforms: str
    license_weights: str
    license_data: str
    aliases: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    source_format: str = "fsvae-sj"
    git_blob: str | None = None
    config: Mapping | None = None
    num_params: int | None = None
    metrics: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    eval_protocol: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    recipe: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    notes: str = ""
    citation: tuple[str, ...] = (FSVAE_CITATION, SJ_CITATION)

    def __post_init__(self):
        # What becomes a path or decides what is trusted is checked; the card's prose is not.
        check_entry_name(self.name, "name")
        for a in self.aliases:
            check_entry_name(a, "alias")
        check_file_name(self.file_name)
        for key, digits in (("sha256", 64), ("git_blob", 40)):
            v = getattr(self, key)
            if v is not None and not (isinstance(v, str) and re.fullmatch(f"[0-9a-f]{{{digits}}}", v)):
                raise ZooError(f"{key} must be {digits} lowercase hex digits or null, got {v!r}")
        if self.size is not None and not (isinstance(self.size, int) and self.size >= 0):
            raise ZooError(f"size must be a byte count >= 0 or null, got {self.size!r}")
        if self.source_format not in ("fsvae-sj", "authors"):
            raise ZooError(f"source_format must be 'fsvae-sj' or 'authors', got {self.source_format!r}")
        if self.config is not None:
            if not isinstance(self.config, Mapping):
                raise ZooError(f"config must be a mapping (a model config as a dict) or null, got {self.config!r}")
            object.__setattr__(self, "config", MappingProxyType(copy.deepcopy(dict(self.config))))

    @classmethod
    def from_json(cls, data: dict) -> "Weights":
        """The entry a zoo JSON file holds; ZooError for unknown fields and bad values."""
        if not isinstance(data, dict):
            raise ZooError(f"expected a JSON object, got {type(data).__name__}")
        d = dict(data)
        # Entries written before the config was stored once repeat the weights file's config
        # here; the file is the source of truth, so the copy is ignored.
        d.pop("arch_config", None)
        for k in ("metrics", "eval_protocol", "recipe"):
            d[k] = MappingProxyType(dict(d.get(k, {})))
        for k in ("aliases", "urls", "citation"):
            if k in d:
                d[k] = tuple(d[k])
        unknown = sorted(set(d) - set(cls.__dataclass_fields__) - {"config"})
        if unknown or "config" in d:
            raise ZooError(f"unknown field(s) {unknown or ['config']}; valid: {sorted(cls.__dataclass_fields__)}")
        try:
            return cls(**d)
        except TypeError as e:   # a required field missing
            raise ZooError(str(e)) from None

    def to_json(self) -> dict:
        out = {}
        for k in self.__dataclass_fields__:
            if k == "config":   # never written to JSON: it lives in the weights file or in code
                continue
            v = getattr(self, k)
            out[k] = dict(v) if isinstance(v, MappingProxyType) else list(v) if isinstance(v, tuple) else v
        return out

    def architecture(self, cache: str | os.PathLike | None = None) -> dict | None:
        """The model config as a dict: the entry's own ``config``, else the one in the header of
        its local weights file (metadata only, no weights read); None before it is downloaded."""
        if self.config is not None:
            return copy.deepcopy(dict(self.config))
        for f in (ZOO_DIR / self.file_name, cache_dir(cache) / self.file_name):
            if f.is_file():
                try:
                    return read_config(f)
                except CheckpointError:
                    return None
        return None

    @property
    def curve_file(self) -> str | None:
        """``<name>_curve.png``, the learning-curve picture beside the card, for an entry whose recipe
        records evaluations during training (drawn by :func:`fsvae_sj.zoo.publish.write_card`); else None."""
        return f"{self.name}_curve.png" if self.recipe.get("evaluations") else None

    def card(self, arch: dict | None = None) -> str:
        """A markdown model card generated from the entry (embedding :attr:`curve_file` if any);
        ``arch``: the architecture to show (default :meth:`architecture`; publishing gives its file's
        before the file is in place)."""
        arch = arch if arch is not None else self.architecture()
        curve = (f"\n![learning curve: AE Frechet distance and test recon MSE against CPU-hours]({self.curve_file})\n"
                 if self.curve_file else "")
        m = "\n".join(f"| {k} | {v} |" for k, v in self.metrics.items()) or "| (none measured) | |"
        proto = "\n".join(f"- {k}: {v}" for k, v in self.eval_protocol.items())
        tables = {"per-epoch log": "Learning curve (per epoch)",
                  "evaluations": "Evaluations during training (AE Frechet of the run's eval_samples samples, seed 0)"}
        recipe = "\n".join(f"- {k}: {v}" for k, v in self.recipe.items() if k not in tables)
        for key, title in tables.items():
            if key in self.recipe or key == "per-epoch log":
                recipe += "\n\n" + _markdown_table(self.recipe.get(key) or [], title)
        return f"""# {self.name} (v{self.version})

{self.notes}
{curve}
- Architecture: `{arch if arch is not None else 'recorded in the weights file (not present locally)'}`
- Parameters: {self.num_params if self.num_params is not None else 'see arch'}
- File: `{self.file_name}`, {self.size if self.size else 'size unknown'} bytes, SHA-256 `{self.sha256 or 'computed on first download'}`
{f'- Upstream git blob: `{self.git_blob}`' if self.git_blob else ''}
- Sources: {', '.join(self.urls) if self.urls else "shipped in this repository's zoo/"}
- Data: {self.dataset}, {self.split} split; transforms: {self.transforms}
- Licence of the weights: {self.license_weights}; of the data: {self.license_data}

## Metrics

| metric | value |
| --- | --- |
{m}

Protocol:
{proto}

## Training recipe and budget
{recipe}

## Citation
{chr(10).join('- ' + c for c in self.citation)}
"""


def _markdown_table(rows: list[dict], title: str) -> str:
    if not rows:
        return f"{title}: no epoch completed yet."
    first = ("epoch", "step", "global_step", "scheduled_p", "cpu_hours")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    keys = [k for k in first if k in keys] + [k for k in keys if k not in first]
    lines = [f"{title}:", "", "| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def _builtin_entries() -> list[Weights]:
    celeba = Weights(
        name="celeba", version="authors-ffadb3d", file_name="fsvae_celeba_demo.pth", sha256=None, size=None,
        dataset="CelebA", split="train (authors)", transforms="RandomHorizontalFlip, CenterCrop(148), Resize(64), [-1, 1]",
        license_weights="MIT (c) 2021 Hiromichi Kamata (upstream repository)",
        license_data="CelebA: non-commercial research purposes only",
        urls=("https://github.com/kamata1729/FullySpikingVAE/raw/ffadb3d4bf4fe02927acb241ac11e6ad693c22dc/"
              "demo_checkpoint/fsvae_celeba_demo.pth",),
        source_format="authors", git_blob="a9455f1d8e3a5fe6fccccb3596f980f5bf6099c8",
        # the authors' FSVAELarge as the converter builds it: FSVAEConfig.large().to_dict()
        config={"in_channels": 3, "image_size": 64, "hidden_dims": [32, 64, 128, 256, 512], "latent_dim": 128,
                "k": 20, "n_steps": 16, "v_threshold": 0.2, "decay": 0.25, "surrogate": "code", "surrogate_a": None,
                "readout_decay": 0.8, "lif_impl": "exact", "arch": "fsvae"},
        num_params=6_681_571,
        metrics=MappingProxyType({"recon_mse": 0.051, "inception_score": 3.697, "fid": 101.6,
                                  "autoencoder_frechet": 112.9}),
        eval_protocol=MappingProxyType({"source": "the AUTHORS' numbers (paper Table 1), not measured by us",
                                        "fid": "clean-fid, 5,000 samples", "is": "10 batches of 256 samples"}),
        recipe=MappingProxyType({"by": "the authors", "epochs": 150, "batch": 250, "T": 16}),
        notes="The authors' own CelebA weights (FSVAELarge), converted on load to fsvae-sj's time-first model.")
    return [celeba]


def _registry() -> dict[str, Weights]:
    entries = _builtin_entries()
    if ZOO_DIR.is_dir():
        for p in sorted(ZOO_DIR.glob("*.json")):
            entries.append(read_entry(p))
    reg = {}
    for e in entries:
        for key in (e.name, *e.aliases):
            reg[key] = e
    return reg


def read_entry(path: Path) -> Weights:
    """The entry of one zoo JSON file; ZooError naming the file and the field for anything else."""
    try:
        return Weights.from_json(json.loads(path.read_text()))
    except (ValueError, ZooError) as e:   # bad JSON, or a field
        raise ZooError(f"zoo entry {path}: {e}") from None


def list_models() -> list[str]:
    return sorted({w.name for w in _registry().values()})


def get_weights(name: str) -> Weights:
    reg = _registry()
    if name == "DEFAULT":
        name = DEFAULT
    if name not in reg:
        local = (f"; there is a file {name!r} in this folder: give it as a path, ./{name}"
                 if Path(name).is_file() else "")
        raise ZooError(f"unknown model {name!r}; valid names: {', '.join(list_models())} (or a path to a "
                       f".safetensors file: a separator or a suffix, e.g. ./NAME){local}")
    return reg[name]


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    if cache is not None:
        return Path(cache)
    if os.environ.get("FSVAE_SJ_HOME"):
        return Path(os.environ["FSVAE_SJ_HOME"])
    torch_home = os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")
    return Path(torch_home) / "fsvae_sj"
