"""Model configurations: dataclasses that round-trip through JSON and YAML."""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError, warn
from ..files import atomic_write_text
from ..spiking.surrogate import PRESETS


def _coerce(cls, data: dict[str, Any]):
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s) {unknown}; valid fields: {sorted(known)}")
    return cls(**data)


def _typed(owner: str, name: str, value, hint):
    """``value`` as a field of type ``hint`` holds it (an int for a float field becomes a float,
    a list for a tuple a tuple), else ConfigError naming the field, the value and its type."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is bool:
        ok, want = isinstance(value, bool), "true or false"
    elif hint is int:
        ok, want = number and isinstance(value, int), "an integer"
    elif hint is float:
        ok, want = number and math.isfinite(value), "a finite number"
        value = float(value) if ok else value
    elif hint is str:
        ok, want = isinstance(value, str), "a string"
    elif typing.get_origin(hint) is tuple:
        ok, want = (isinstance(value, (list, tuple)) and
                    all(isinstance(v, int) and not isinstance(v, bool) for v in value)), "a list of integers"
        value = tuple(value) if ok else value
    else:
        raise TypeError(f"{owner}.{name}: no check for fields of type {hint}")   # a new field's type: add it here
    if not ok:
        raise ConfigError(f"{owner} field {name} must be {want}, got {value!r} ({type(value).__name__})")
    return value


def parse_file(path: str | os.PathLike) -> Any:
    """The JSON or YAML (by suffix) content of ``path``; YAML numbers as YAML 1.2 reads them
    (``1e-3`` is a float, where PyYAML's YAML 1.1 makes it a string). Raises ConfigError
    naming the file when it cannot be read or parsed."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror if isinstance(e, OSError) else e}") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml
            return yaml.load(text, Loader=_yaml_loader())
        return json.loads(text)
    except Exception as e:  # the parser's own message says where
        raise ConfigError(f"cannot parse config {path}: {e}") from e


@functools.cache
def _yaml_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        pass
    # YAML 1.2's floats without a dot (1e-3, 5E+4); the safe loader's other resolvers stay
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
                                 list("-+0123456789"))
    return Loader


class _Serialisable:
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        return _coerce(cls, data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON or YAML (by suffix), atomically."""
        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            import yaml
            text = yaml.safe_dump(self.to_dict(), sort_keys=True)
        else:
            text = self.to_json() + "\n"
        atomic_write_text(path, text)

    @classmethod
    def load(cls, path: str | os.PathLike):
        """The config a JSON or YAML file holds (:func:`parse_file`); ConfigError naming the file
        and the field for anything else."""
        data = parse_file(path)
        try:
            return cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    def _check_types(self) -> None:
        """Every field of the annotated type (the first check of ``__post_init__``, before any range)."""
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            object.__setattr__(self, f.name, _typed(type(self).__name__, f.name, getattr(self, f.name), hints[f.name]))


@dataclass(frozen=True)
class FSVAEConfig(_Serialisable):
    """Architecture and neuron settings of an FSVAE (defaults: the paper's 32x32 model)."""

    in_channels: int = 1
    image_size: int = 32
    hidden_dims: tuple[int, ...] = (32, 64, 128, 256)
    latent_dim: int = 128
    k: int = 20
    n_steps: int = 16
    v_threshold: float = 0.2
    decay: float = 0.25
    surrogate: str = "code"
    surrogate_a: float | None = None
    readout_decay: float = 0.8
    lif_impl: str = "exact"
    arch: str = field(default="fsvae")

    def __post_init__(self):
        self._check_types()

        def need(cond, msg):
            if not cond:
                raise ConfigError(msg)
        need(self.arch == "fsvae", f"FSVAEConfig.arch must be 'fsvae', got {self.arch!r}")
        need(self.in_channels >= 1, f"in_channels must be >= 1, got {self.in_channels}")
        need(self.n_steps >= 1, f"n_steps (T) must be >= 1, got {self.n_steps}")
        need(self.k >= 1, f"k must be >= 1, got {self.k}")
        need(self.latent_dim >= 1, f"latent_dim must be >= 1, got {self.latent_dim}")
        need(len(self.hidden_dims) >= 1 and all(h >= 1 for h in self.hidden_dims),
             f"hidden_dims must be positive, got {self.hidden_dims}")
        need(self.image_size == 2 * 2 ** len(self.hidden_dims),
             f"image_size {self.image_size} does not fit {len(self.hidden_dims)} stride-2 layers "
             f"ending at 2x2: expected {2 * 2 ** len(self.hidden_dims)}")
        need(self.surrogate in PRESETS, f"surrogate must be one of {PRESETS}, got {self.surrogate!r}")
        need(self.surrogate_a is None or self.surrogate_a > 0, f"surrogate_a must be > 0, got {self.surrogate_a}")
        need(0 < self.decay < 1, f"decay must be in (0, 1), got {self.decay}")
        need(self.v_threshold > 0, f"v_threshold must be > 0, got {self.v_threshold}")
        need(0 < self.readout_decay <= 1, f"readout_decay must be in (0, 1], got {self.readout_decay}")
        from ..spiking.lif import IMPLS
        need(self.lif_impl in IMPLS, f"lif_impl must be one of {IMPLS}, got {self.lif_impl!r}")

    @classmethod
    def large(cls, **overrides) -> "FSVAEConfig":
        """The authors' ``FSVAELarge`` (64x64, five encoder stages), e.g. for CelebA."""
        base = dict(in_channels=3, image_size=64, hidden_dims=(32, 64, 128, 256, 512))
        return cls(**{**base, **overrides})

    @classmethod
    def for_images(cls, in_channels: int, image_size: int, **neuron) -> "FSVAEConfig":
        """The paper's model for images ``[in_channels, image_size, image_size]``: the authors'
        five-stage ``FSVAELarge`` at 64x64, the four-stage FSVAE otherwise; ``neuron``: n_steps,
        surrogate, surrogate_a (the training recipe's)."""
        if image_size == 64:
            return cls.large(in_channels=in_channels, **neuron)
        return cls(in_channels=in_channels, image_size=image_size, **neuron)


@dataclass(frozen=True)
class ANNVAEConfig(_Serialisable):
    """The paper's ANN baseline: same conv stack, BatchNorm + LeakyReLU, Gaussian latent."""

    in_channels: int = 1
    image_size: int = 32
    hidden_dims: tuple[int, ...] = (32, 64, 128, 256)
    latent_dim: int = 128
    arch: str = field(default="ann-vae")

    def __post_init__(self):
        self._check_types()
        if self.arch != "ann-vae":
            raise ConfigError(f"ANNVAEConfig.arch must be 'ann-vae', got {self.arch!r}")
        if self.image_size != 2 * 2 ** len(self.hidden_dims):
            raise ConfigError(f"image_size {self.image_size} does not fit hidden_dims {self.hidden_dims}")
        if self.in_channels < 1 or self.latent_dim < 1 or not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ConfigError(f"in_channels, latent_dim and hidden_dims must be >= 1, got {self.in_channels}, "
                              f"{self.latent_dim}, {self.hidden_dims}")

    @classmethod
    def for_images(cls, in_channels: int, image_size: int) -> "ANNVAEConfig":
        """The paper's baseline for images ``[in_channels, image_size, image_size]``."""
        return cls(in_channels=in_channels, image_size=image_size)


def resolve(cls, config, overrides: dict):
    """``config`` (or the class's defaults) with keyword ``overrides`` applied and validated."""
    cfg = config if config is not None else cls()
    return cls.from_dict({**cfg.to_dict(), **overrides}) if overrides else cfg


def check_image_batch(x, cfg, dtype=None) -> None:
    """Images must be ``[N, in_channels, image_size, image_size]``, floating point of the
    model's ``dtype``, finite, in [-1, 1]. Raises ValueError naming what is expected; warns
    when a batch looks like [0, 1] images (no value below 0)."""
    want = (cfg.in_channels, cfg.image_size, cfg.image_size)
    if x.dim() != 4 or tuple(x.shape[1:]) != want:
        raise InputError(f"expected images of shape [N, {want[0]}, {want[1]}, {want[2]}], got {tuple(x.shape)}")
    if not x.is_floating_point() or (dtype is not None and x.dtype != dtype):
        raise InputError(f"expected {dtype or 'floating-point'} images in [-1, 1], got dtype {x.dtype} "
                         f"(uint8 images: x.float() / 127.5 - 1; or convert the model with .to(dtype))")
    lo, hi = x.aminmax() if x.numel() else (x.new_zeros(()), x.new_zeros(()))
    if not bool(x.isfinite().all()):
        raise InputError("images contain NaN or infinite values; expected finite values in [-1, 1]")
    if lo < -1 - 1e-3 or hi > 1 + 1e-3:
        raise InputError(f"images range over [{float(lo):.3g}, {float(hi):.3g}]; expected [-1, 1] "
                         f"(from [0, 255]: x / 127.5 - 1; from [0, 1]: x * 2 - 1)")
    if x.shape[0] > 1 and lo >= 0:
        warn("no pixel is below 0: these look like [0, 1] images, but the model expects [-1, 1] (x * 2 - 1)")
