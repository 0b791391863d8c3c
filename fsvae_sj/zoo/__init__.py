"""Pretrained models: ``zoo.load("fashion-mnist")``, ``zoo.list_models()``, model cards.

Entries are immutable :class:`Weights` records (torchvision-style) read from the
JSON files in the repository's ``zoo/`` folder, plus the authors' CelebA model.
Files are found, in order, in ``zoo/`` beside the package (a clone), in the
cache (argument > ``$FSVAE_SJ_HOME`` > ``$TORCH_HOME/fsvae_sj`` >
``~/.cache/torch/fsvae_sj``), or downloaded from the entry's URLs into the cache
(temporary file, size + hash check, atomic rename, under a file lock).
``FSVAE_SJ_OFFLINE=1`` (read at call time) never touches the network.

    python -m fsvae_sj.zoo list | info NAME | download NAME | verify
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import torch

from .io import CheckpointError, atomic_write_json, atomic_write_text, load_model, sha256_file

def _zoo_dir() -> Path:
    """The copy a wheel installs in the package, else ``zoo/`` of a clone (editable install).
    (Never a ``zoo`` folder that merely sits beside an installed package.)"""
    installed = Path(__file__).resolve().parent / "zoo_files"
    return installed if installed.is_dir() else Path(__file__).resolve().parent.parent / "zoo"


ZOO_DIR = _zoo_dir()
DEFAULT = "fashion-mnist"

FSVAE_CITATION = ("Kamata, Mukuta, Harada. Fully Spiking Variational Autoencoder. AAAI 2022. arXiv:2110.00375")
SJ_CITATION = ("Fang et al. SpikingJelly: An open-source machine learning infrastructure platform for "
               "spike-based intelligence. Science Advances 9(40), 2023")


class ZooError(RuntimeError):
    pass


@dataclass(frozen=True)
class Weights:
    """One zoo entry. ``source_format`` is ``"fsvae-sj"`` (our safetensors) or
    ``"authors"`` (their .pth, verified by ``git_blob`` and converted on load)."""

    name: str
    version: str
    file_name: str
    sha256: str | None
    size: int | None
    arch_config: MappingProxyType
    dataset: str
    split: str
    transforms: str
    license_weights: str
    license_data: str
    aliases: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    source_format: str = "fsvae-sj"
    git_blob: str | None = None
    num_params: int | None = None
    metrics: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    eval_protocol: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    recipe: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    notes: str = ""
    citation: tuple[str, ...] = (FSVAE_CITATION, SJ_CITATION)

    @classmethod
    def from_json(cls, data: dict) -> "Weights":
        d = dict(data)
        for k in ("arch_config", "metrics", "eval_protocol", "recipe"):
            d[k] = MappingProxyType(dict(d.get(k, {})))
        for k in ("aliases", "urls", "citation"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

    def to_json(self) -> dict:
        out = {}
        for k in self.__dataclass_fields__:
            v = getattr(self, k)
            out[k] = dict(v) if isinstance(v, MappingProxyType) else list(v) if isinstance(v, tuple) else v
        return out

    def card(self) -> str:
        """A markdown model card generated from the entry."""
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

- Architecture: `{dict(self.arch_config)}`
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
        arch_config=MappingProxyType({"arch": "fsvae", "in_channels": 3, "image_size": 64,
                                      "hidden_dims": [32, 64, 128, 256, 512], "latent_dim": 128, "k": 20,
                                      "n_steps": 16}),
        dataset="CelebA", split="train (authors)", transforms="RandomHorizontalFlip, CenterCrop(148), Resize(64), [-1, 1]",
        license_weights="MIT (c) 2021 Hiromichi Kamata (upstream repository)",
        license_data="CelebA: non-commercial research purposes only",
        urls=("https://github.com/kamata1729/FullySpikingVAE/raw/ffadb3d4bf4fe02927acb241ac11e6ad693c22dc/"
              "demo_checkpoint/fsvae_celeba_demo.pth",),
        source_format="authors", git_blob="a9455f1d8e3a5fe6fccccb3596f980f5bf6099c8", num_params=6_681_571,
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
            entries.append(Weights.from_json(json.loads(p.read_text())))
    reg = {}
    for e in entries:
        for key in (e.name, *e.aliases):
            reg[key] = e
    return reg


def list_models() -> list[str]:
    return sorted({w.name for w in _registry().values()})


def get_weights(name: str) -> Weights:
    reg = _registry()
    if name == "DEFAULT":
        name = DEFAULT
    if name not in reg:
        raise ZooError(f"unknown model {name!r}; valid names: {', '.join(list_models())} (or a path to a .safetensors file)")
    return reg[name]


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    if cache is not None:
        return Path(cache)
    if os.environ.get("FSVAE_SJ_HOME"):
        return Path(os.environ["FSVAE_SJ_HOME"])
    torch_home = os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")
    return Path(torch_home) / "fsvae_sj"


def is_offline(offline: bool | None) -> bool:
    return offline if offline is not None else os.environ.get("FSVAE_SJ_OFFLINE", "") not in ("", "0")


def git_blob_id(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _verify(w: Weights, path: Path) -> str | None:
    """None if ``path`` is the entry's file, else what is wrong."""
    size = path.stat().st_size
    if w.size is not None and size != w.size:
        return f"size {size} bytes, expected {w.size}"
    if w.git_blob is not None:
        got = git_blob_id(path)
        if got != w.git_blob:
            return f"git blob {got}, expected {w.git_blob}"
    if w.sha256 is not None:
        got = sha256_file(path)
        if got != w.sha256:
            return f"SHA-256 {got}, expected {w.sha256}"
    return None


def _placement_help(w: Weights, target: Path) -> str:
    url = w.urls[0] if w.urls else "(no download address: it ships in the repository's zoo/)"
    return (f"Download {url} by hand and place it at {target} (it is checked against "
            f"{'git blob ' + w.git_blob if w.git_blob else 'SHA-256 ' + str(w.sha256)} before use).")


def fetch(w: Weights, cache: str | os.PathLike | None = None, offline: bool | None = None) -> Path:
    """A verified local copy of the entry's file."""
    local = ZOO_DIR / w.file_name
    if local.is_file():
        problem = _verify(w, local)
        if problem:
            raise ZooError(f"{local} is corrupt ({problem}); restore it with `git checkout -- zoo/{w.file_name}`")
        return local
    target = cache_dir(cache) / w.file_name
    if target.is_file():
        problem = _verify(w, target)
        if problem is None:
            return target
        again = "Delete it to download again. " if w.urls else ""
        raise ZooError(f"cached file {target} is corrupt or truncated ({problem}); it was not loaded. "
                       + again + _placement_help(w, target))
    if not w.urls:
        raise ZooError(f"{w.name}: not in the zoo folder {ZOO_DIR} nor in the cache {target}, and it has no "
                       f"download address. " + _placement_help(w, target))
    if is_offline(offline):
        raise ZooError(f"{w.name}: not in the repository's zoo/ nor in the cache {target}, and offline mode is on "
                       f"(FSVAE_SJ_OFFLINE=1 or offline=True). " + _placement_help(w, target))
    return _download(w, target)


def _download(w: Weights, target: Path) -> Path:
    from filelock import FileLock
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = Path(str(target) + ".lock")
    try:
        with FileLock(str(lock)):
            return _download_locked(w, target)
    finally:
        lock.unlink(missing_ok=True)   # nothing left behind in the cache


def _download_locked(w: Weights, target: Path) -> Path:
    from tqdm import tqdm
    if target.is_file() and _verify(w, target) is None:  # another process finished it
        return target
    errors = []
    for url in w.urls:
        tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
        try:
            with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
                total = int(r.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=w.file_name) as bar:
                    for block in iter(lambda: r.read(1 << 20), b""):
                        f.write(block)
                        bar.update(len(block))
            problem = _verify(w, tmp)
            if problem:
                errors.append(f"{url}: {problem}")
                continue
            os.replace(tmp, target)
            return target
        except OSError as e:
            errors.append(f"{url}: {e}")
        finally:
            tmp.unlink(missing_ok=True)
    raise ZooError(f"could not fetch {w.name}: " + "; ".join(errors) + ". " + _placement_help(w, target))


def load(name_or_path: str | os.PathLike = DEFAULT, *, device: str | torch.device | None = None,
         cache_dir: str | os.PathLike | None = None, offline: bool | None = None) -> torch.nn.Module:
    """A ready model in eval mode, by zoo name or from a local checkpoint path."""
    device = device or "cpu"
    p = Path(name_or_path)
    if p.suffix in (".safetensors", ".pth", ".pt") or p.is_file():
        if not p.is_file():
            raise ZooError(f"no file at {p}")
        return load_model(p, device)
    w = get_weights(str(name_or_path))
    path = fetch(w, cache_dir, offline)
    if w.source_format == "authors":
        # The converted file is derived from the verified source: it is used only while it
        # records that source's identity, else it is rebuilt.
        converted = path.with_name(path.stem + ".fsvae-sj.safetensors")
        if _derived_from(converted) != w.git_blob:
            from .config import FSVAEConfig
            from .convert import load_authors_checkpoint
            from .io import save_model
            model = load_authors_checkpoint(path, FSVAEConfig.from_dict(dict(w.arch_config)))
            save_model(model, converted, extra={"source": w.urls[0] if w.urls else w.file_name,
                                                "git_blob": w.git_blob})
            return model.to(device).eval()
        path = converted
    try:
        model = load_model(path, device)
    except CheckpointError as e:
        raise ZooError(f"{w.name}: {e}") from e
    return model


def _derived_from(converted: Path) -> str | None:
    """The source git blob a converted checkpoint records (None if absent or unreadable)."""
    from .io import read_checkpoint
    if not converted.is_file():
        return None
    try:
        return read_checkpoint(converted)[2].get("git_blob")
    except CheckpointError:
        return None


def weights_of(model_or_name: str | os.PathLike) -> tuple[str, str]:
    """(path, SHA-256) of the file a name or path resolves to, for provenance lines."""
    p = Path(model_or_name)
    if p.is_file():
        return str(p), sha256_file(p)
    w = get_weights(str(model_or_name))
    f = ZOO_DIR / w.file_name
    if not f.is_file():
        f = cache_dir() / w.file_name
    return str(f), (w.sha256 or (sha256_file(f) if f.is_file() else "unknown"))


class PublishRefused(ZooError):
    """``zoo publish`` found weights that must not become a zoo entry."""


# A model whose seeded samples do not vary is dead: an untrained or few-step FSVAE never
# fires in eval mode and gives one constant image (std 0.0 across samples). Trained
# models measured here give 0.2 or more; the floor sits far below that and far above 0.
MIN_SAMPLE_STD = 0.05


def sample_spread(model, n: int = 64, seed: int = 0) -> float:
    """Mean over pixels of the std across ``n`` seeded samples (0 for a constant generator)."""
    with torch.no_grad():
        x = model.sample(n, seed=seed)
    return float(x.float().std(0).mean())


def _checkpoint_of(src: Path) -> Path:
    """The file ``publish`` takes from a run folder: the best evaluated weights if kept."""
    if src.is_dir():
        for name in ("best.safetensors", "model.safetensors"):
            if (src / name).is_file():
                return src / name
        raise ZooError(f"{src} holds no best.safetensors nor model.safetensors")
    if not src.is_file():
        raise ZooError(f"no run folder or checkpoint at {src}")
    return src


def publish(src: Path, name: str, dataset: str | None = None, num_samples: int = 5000, seed: int = 0,
            version: str | None = None, notes: str = "", force: bool = False) -> Weights:
    """Maintainers: put trained weights into ``zoo/`` with a measured card.

    ``src`` is a run folder (its ``best.safetensors``, else ``model.safetensors``) or a
    checkpoint file. Refuses (:class:`PublishRefused`) non-finite weights, a generator
    whose 64 seeded samples do not vary (mean per-pixel std < ``MIN_SAMPLE_STD``), and,
    unless ``force``, an AE Frechet distance worse than the entry it would replace.
    Measures recon MSE on the whole test set and AE Frechet on ``num_samples`` samples
    (seed ``seed``) with :func:`fsvae_sj.evaluate.evaluate`, then copies the file and writes
    ``zoo/<name>.json`` and ``zoo/<name>.md`` (the learning curve and budget come from the
    checkpoint's metadata, written by ``fsvae_sj.train``).
    """
    import shutil

    from .evaluate import PAPER_TABLE1, evaluate
    from .io import read_checkpoint
    run = Path(src) if Path(src).is_dir() else None
    src = _checkpoint_of(Path(src))
    cfg, state, extra = read_checkpoint(src)
    # The learning curve and budget: the run's latest save knows more than its best one.
    log = read_checkpoint(run / "model.safetensors")[2] if run and (run / "model.safetensors").is_file() else extra
    bad = [k for k, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise PublishRefused(f"{src} has non-finite weights ({', '.join(bad[:4])}); not published")
    tcfg = extra.get("train_config", {})
    dataset = dataset or tcfg.get("dataset")
    if not dataset:
        raise ZooError(f"{src} does not say its dataset; pass --dataset")
    model = load_model(src)
    spread = sample_spread(model)
    if spread < MIN_SAMPLE_STD:
        raise PublishRefused(f"{src}: its 64 seeded samples hardly vary (mean per-pixel std {spread:.4f} < "
                             f"{MIN_SAMPLE_STD}): the generator is dead (untrained or too few steps); not published")
    res = evaluate(model, dataset, ("recon", "afd"), num_samples=num_samples, seed=seed)
    old_path = ZOO_DIR / f"{name}.json"
    if old_path.is_file() and not force and res["afd"] is not None:
        old = _current_afd(Weights.from_json(json.loads(old_path.read_text())), dataset, num_samples, seed,
                           res["protocol"]["images"])
        if old is not None and res["afd"] > old:
            raise PublishRefused(f"{src}: AE Frechet {res['afd']:.3f} is worse than the current {name} entry's "
                                 f"{old:.3f} ({res['protocol']['images']}); not published (--force to replace it "
                                 f"anyway)")
    dest = ZOO_DIR / f"{name}.safetensors"
    ZOO_DIR.mkdir(exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    arch = cfg.get("arch", "fsvae")
    history = log.get("history") or []
    evals = log.get("evals") or []
    epoch, step = int(extra.get("epoch", 0)), int(extra.get("step", 0))
    cpu_h = round(float(extra.get("cpu_seconds", 0.0)) / 3600, 3)
    paper = PAPER_TABLE1.get((dataset, arch))
    per_epoch = [float(r["cpu_hours"]) - float(p["cpu_hours"]) for p, r in zip(history, history[1:])
                 if r.get("cpu_hours") not in (None, "") and p.get("cpu_hours") not in (None, "")]
    recipe = {
        "by": "fsvae-sj (python -m fsvae_sj.train)", "train_config": tcfg,
        "weights": extra.get("weights", "raw") + (" (exponential moving average)" if extra.get("weights") == "ema"
                                                  else ""),
        "epochs completed": epoch, "steps into the current epoch": step,
        "cpu_hours": cpu_h,
        "cpu_hours of the whole run so far": round(float(log.get("cpu_seconds", 0.0)) / 3600, 3),
        "batch size": tcfg.get("batch_size"),
        "cpu_hours (how)": "CPU time of the training process (all its threads); the warm-start folders' "
                           "hours before per-process accounting are their wall time x 1 thread (an upper bound)",
        "hardware": "2-core x86-64 CPU, one thread per run, two runs sharing the machine, no GPU",
        "provenance": extra.get("provenance") or [],
        "per-epoch log": history,
        "evaluations": evals,
    }
    if per_epoch and paper:
        recipe["projection: the paper's budget"] = (
            f"150 epochs at the last measured {per_epoch[-1]:.2f} CPU-hours per epoch: about "
            f"{150 * per_epoch[-1]:.0f} CPU-hours on this machine")
    if paper:
        recipe["projection: the paper's AE Frechet"] = afd_projection(evals, paper["autoencoder_frechet"])
    metrics = {"recon_mse": round(res["recon_mse"], 5), "autoencoder_frechet": round(res["afd"], 3),
               "inception_score": None, "fid": None, "sample_spread": round(spread, 4)}
    w = Weights(
        name=name, version=version or f"e{epoch}s{step}",
        file_name=dest.name, sha256=sha256_file(dest), size=dest.stat().st_size,
        arch_config=MappingProxyType(cfg), dataset=dataset, split="train (60,000 images)",
        transforms="ToTensor, bilinear resize 28->32, 2x - 1 (range [-1, 1])",
        license_weights="MIT (fsvae-sj)",
        license_data={"mnist": "MNIST: CC BY-SA 3.0 (Y. LeCun, C. Cortes)",
                      "fashion-mnist": "Fashion-MNIST: MIT (Zalando Research)"}.get(dataset, "see the dataset"),
        num_params=sum(t.numel() for k, t in state.items() if not k.endswith(
            ("running_mean", "running_var", "num_batches_tracked"))),
        metrics=MappingProxyType(metrics),
        eval_protocol=MappingProxyType({**res["protocol"], **{f"note {k}": v for k, v in res["notes"].items()},
                                        "sample_spread": "mean per-pixel std across 64 samples, seed 0",
                                        "inception_score/fid": "not measured: Inception weights cannot be "
                                                               "downloaded on the training machine",
                                        "paper (Table 1, the authors' numbers)": paper or "no row",
                                        "library versions": res["versions"]}),
        recipe=MappingProxyType(recipe),
        notes=notes or _default_notes("FSVAE" if arch == "fsvae" else "ANN VAE", dataset, tcfg, epoch, step,
                                      cpu_h, extra, paper, metrics))
    atomic_write_json(ZOO_DIR / f"{name}.json", w.to_json())
    atomic_write_text(ZOO_DIR / f"{name}.md", w.card())
    return w


def afd_projection(evals: list[dict], target: float) -> str:
    """CPU-hours at which a power law fitted to the best AE Frechet distance so far (raw or EMA,
    per evaluation) against CPU-hours reaches ``target``: an extrapolation, stated as one."""
    import math
    points, best = [], math.inf
    for r in evals:
        vals = [float(r[k]) for k in ("afd", "ema_afd") if r.get(k) not in (None, "")]
        hours = float(r["cpu_hours"]) if r.get("cpu_hours") not in (None, "") else 0.0
        if vals and hours > 0:   # a log-log fit: logged hours of 0 (rounded) carry no information
            best = min(best, *vals)
            if best > 0:
                points.append((math.log(hours), math.log(best)))
    if len(points) < 3:
        return "not enough evaluations to fit"
    n = len(points)
    mx, my = sum(p[0] for p in points) / n, sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    slope = sum((p[0] - mx) * (p[1] - my) for p in points) / sxx if sxx else 0.0
    hours = [math.exp(p[0]) for p in points]
    span = f"{n} evaluations between {min(hours):.2f} and {max(hours):.2f} CPU-hours"
    if slope >= 0:
        return f"none: the best AE Frechet distance did not fall over the {span}"
    at = math.exp(mx + (math.log(target) - my) / slope)
    return (f"about {at:.0f} CPU-hours to reach {target} (best AE Frechet ~ CPU-hours^{slope:.2f}, fitted to "
            f"the {span}; an extrapolation far beyond the data, not a promise)")


def _current_afd(w: Weights, dataset: str, num_samples: int, seed: int, protocol: str) -> float | None:
    """The AE Frechet distance of the entry being replaced, under the new measurement's protocol:
    its card's number if measured the same way, else measured again (the distance is biased by
    the sample count, so numbers of different protocols do not compare)."""
    from .evaluate import afd_score, generate
    if w.eval_protocol.get("images") == protocol:
        return w.metrics.get("autoencoder_frechet")
    path = ZOO_DIR / w.file_name
    if not path.is_file():
        return None
    return afd_score(generate(load_model(path), num_samples, seed), dataset)


def _default_notes(arch, dataset, tcfg, epoch, step, cpu_h, extra, paper, metrics) -> str:
    warm = [p for p in extra.get("provenance") or [] if "warm" in p.get("event", "")]
    lines = [f"{arch} trained by this project on {dataset}: {epoch} epochs and {step} steps of batch "
             f"{tcfg.get('batch_size')} (the paper: 150 epochs of batch 250), {cpu_h} CPU-hours on a 2-core CPU. "
             f"A SHORT budget: the metrics below are ours, measured with fsvae_sj.evaluate."]
    if extra.get("weights") == "ema":
        lines.append(f"The published weights are the exponential moving average (decay {tcfg.get('ema_decay')}) "
                     f"of the training weights, chosen because its AE Frechet distance was lower.")
    if warm:
        lines.append("Training continued from earlier runs: " + "; ".join(
            f"{p['from']} at epoch {p['epoch']} step {p['step']} (optimiser restarted)" for p in warm) + ".")
    if paper:
        lines.append(f"Paper (Table 1): recon MSE {paper['recon_mse']}, AE Frechet {paper['autoencoder_frechet']}; "
                     f"here: recon MSE {metrics['recon_mse']}, AE Frechet {metrics['autoencoder_frechet']}.")
    return "\n\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fsvae_sj.zoo", description="The fsvae-sj model zoo.")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="names, datasets and headline metrics")
    i = sub.add_parser("info", help="the model card of NAME")
    i.add_argument("name")
    d = sub.add_parser("download", help="fetch and verify NAME into the cache")
    d.add_argument("name")
    sub.add_parser("verify", help="check every locally present zoo file against its hash")
    pub = sub.add_parser("publish", help="(maintainers) evaluate a training run and put it into zoo/")
    pub.add_argument("run", type=Path, help="a run folder (its best.safetensors, else model.safetensors) or a "
                                            "checkpoint file")
    pub.add_argument("--name", required=True)
    pub.add_argument("--dataset", help="(default: the checkpoint's training dataset)")
    pub.add_argument("--num-samples", type=int, default=5000, help="samples for the AE Frechet distance (seed 0)")
    pub.add_argument("--force", action="store_true",
                     help="replace the entry even if its AE Frechet distance is better than the new one's")
    pub.add_argument("--notes-file", type=Path, help="markdown for the card's introduction (replaces the default)")
    args = p.parse_args(argv)
    try:
        if args.cmd == "list":
            for n in list_models():
                w = get_weights(n)
                print(f"{n:18s} {w.dataset:14s} {dict(w.metrics)}")
        elif args.cmd == "info":
            print(get_weights(args.name).card())
        elif args.cmd == "publish":
            notes = args.notes_file.read_text().strip() if args.notes_file else ""
            w = publish(args.run, args.name, args.dataset, args.num_samples, notes=notes, force=args.force)
            print(f"published {w.name}: {dict(w.metrics)}")
        elif args.cmd == "download":
            print(fetch(get_weights(args.name)))
        else:
            bad = 0
            for n in list_models():
                w = get_weights(n)
                for f in (ZOO_DIR / w.file_name, cache_dir() / w.file_name):
                    if f.is_file():
                        problem = _verify(w, f)
                        bad += problem is not None
                        print(f"{n}: {f}: {'OK' if problem is None else 'BAD ' + problem}")
                        break
                else:
                    print(f"{n}: not present locally")
            return 1 if bad else 0
    except ZooError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from ._malloc import run_cli
    run_cli(main)
