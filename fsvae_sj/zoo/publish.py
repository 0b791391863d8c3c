"""Maintainers: put a training run into the zoo with a measured card (``python -m fsvae_sj.zoo publish``).

A library module above the zoo and the metrics: it reads the run's checkpoint, refuses weights
that must not become an entry, measures them with the cards' protocol and writes
``zoo/<name>.safetensors``, ``.json`` and ``.md`` (with its learning-curve PNG, :func:`write_card`).
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
from pathlib import Path
from types import MappingProxyType

import matplotlib.pyplot as plt
import torch

from .. import viz, zoo
from ..hub import entries, read_checkpoint
from .loading import load_file
from ..datasets import DATASETS, canonical
from ..files import remove_stale_temporaries, written_together
from ..locks import claim_folder
from ..metrics import PAPER_TABLE1, afd_score, evaluate, generate


class PublishRefused(zoo.ZooError):
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
        raise zoo.ZooError(f"{src} holds no best.safetensors nor model.safetensors")
    if not src.is_file():
        raise zoo.ZooError(f"no run folder or checkpoint at {src}")
    return src


def publish(src: Path, name: str, dataset: str | None = None, num_samples: int = 5000, seed: int = 0,
            version: str | None = None, notes: str = "", force: bool = False,
            hardware: str | None = None) -> zoo.Weights:
    """Maintainers: put trained weights into ``zoo/`` with a measured card.

    ``src`` is a run folder (its ``best.safetensors``, else ``model.safetensors``) or a
    checkpoint file. Refuses (:class:`PublishRefused`) non-finite weights, a generator
    whose 64 seeded samples do not vary (mean per-pixel std < ``MIN_SAMPLE_STD``), and,
    unless ``force``, an AE Frechet distance worse than the entry it would replace.
    Measures recon MSE on the whole test set and AE Frechet on ``num_samples`` samples
    (seed ``seed``) with :func:`fsvae_sj.evaluate.evaluate`, then writes ``zoo/<name>.safetensors``,
    ``.md`` and ``.json`` all or nothing (a full disk leaves the zoo as it was), holding the zoo
    folder against other publishers (the learning curve and budget come from the checkpoint's
    metadata, written by ``fsvae_sj.train``). ``hardware``: the card's hardware line, for checkpoints
    made before runs recorded theirs (default: :func:`hardware_line` of the provenance).
    """
    zoo.check_entry_name(name, "--name")   # it becomes zoo/NAME.*: checked before any work
    folder = entries.ZOO_DIR if entries.ZOO_DIR.is_dir() else entries.ZOO_DIR.parent
    if not (folder.is_dir() and os.access(folder, os.W_OK)):
        raise zoo.ZooError(f"cannot write the zoo folder {entries.ZOO_DIR}; publish from a clone whose zoo/ is writable")
    run = Path(src) if Path(src).is_dir() else None
    src = _checkpoint_of(Path(src))
    _say(f"checking {src}: finite weights, a generator that varies (64 seeded samples)")
    cfg, state, extra = read_checkpoint(src)
    # The learning curve and budget: the run's latest save knows more than its best one.
    log = read_checkpoint(run / "model.safetensors")[2] if run and (run / "model.safetensors").is_file() else extra
    bad = [k for k, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise PublishRefused(f"{src} has non-finite weights ({', '.join(bad[:4])}); not published")
    tcfg = extra.get("train_config", {})
    dataset = dataset or tcfg.get("dataset")
    if not dataset:
        raise zoo.ZooError(f"{src} does not say its dataset; pass --dataset")
    if tcfg.get("dataset") and canonical(dataset) != canonical(tcfg["dataset"]):
        raise PublishRefused(f"{src} was trained on {tcfg['dataset']}, not {dataset}: its card would name the wrong "
                             f"data; publish it without --dataset")
    model = load_file(src)
    spread = sample_spread(model)
    if spread < MIN_SAMPLE_STD:
        raise PublishRefused(f"{src}: its 64 seeded samples hardly vary (mean per-pixel std {spread:.4f} < "
                             f"{MIN_SAMPLE_STD}): the generator is dead (untrained or too few steps); not published")
    _say(f"measuring: AE Frechet of {num_samples} samples, recon MSE over the {dataset} test set")
    res = evaluate(model, dataset, ("recon", "afd"), num_samples=num_samples, seed=seed, progress=True)
    data = src.read_bytes()   # the bytes published are the bytes hashed
    dest = entries.ZOO_DIR / f"{name}.safetensors"
    arch = cfg.get("arch", "fsvae")
    history = log.get("history") or []
    evals = log.get("evals") or []
    epoch, step = int(extra.get("epoch", 0)), int(extra.get("step", 0))
    cpu_h = round(float(extra.get("cpu_seconds", 0.0)) / 3600, 3)
    paper = PAPER_TABLE1.get((dataset, arch))
    per_epoch = full_epoch_hours(history)
    recipe = {
        "by": "fsvae-sj (python -m fsvae_sj.train)", "train_config": tcfg,
        "weights": WEIGHTS_LABELS.get(extra.get("weights", "raw"), extra.get("weights", "raw")).format(
            n=tcfg.get("calibrate_decoder")),
        "epochs completed": epoch, "steps into the current epoch": step,
        "cpu_hours": cpu_h,
        "cpu_hours of the whole run so far": round(float(log.get("cpu_seconds", 0.0)) / 3600, 3),
        "batch size": tcfg.get("batch_size"),
        "cpu_hours (how)": "CPU time of the training process (all its threads); the warm-start folders' "
                           "hours before per-process accounting are their wall time x 1 thread (an upper bound)",
        "hardware": hardware or hardware_line(extra.get("provenance") or []),
        "provenance": extra.get("provenance") or [],
        "per-epoch log": history,
        "evaluations": evals,
    }
    if per_epoch and paper:
        recipe["projection: the paper's budget"] = (
            f"150 epochs at the last measured {per_epoch[-1]:.2f} CPU-hours per epoch of full training: about "
            f"{150 * per_epoch[-1]:.0f} CPU-hours on this machine")
    if paper:
        recipe["projection: the paper's AE Frechet"] = afd_projection(evals, paper["autoencoder_frechet"])
    metrics = {"recon_mse": round(res["recon_mse"], 5), "autoencoder_frechet": round(res["afd"], 3),
               "inception_score": None, "fid": None, "sample_spread": round(spread, 4)}
    w = zoo.Weights(
        name=name, version=version or f"e{epoch}s{step}",
        file_name=dest.name, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
        dataset=dataset, split="train (60,000 images)",
        transforms=DATASETS[canonical(dataset)].transforms,
        license_weights="MIT (fsvae-sj)",
        license_data=DATASETS[canonical(dataset)].license,
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
    cards = card_files(w, arch=cfg)   # the architecture as its file states it: the file is not in place yet
    entries.ZOO_DIR.mkdir(exist_ok=True)
    with claim_folder(entries.ZOO_DIR, "a zoo publish"):   # one publisher at a time: the comparison holds until written
        old_path = entries.ZOO_DIR / f"{name}.json"
        if old_path.is_file() and not force and res["afd"] is not None:
            _say(f"comparing with the current {name} entry")
            old = _current_afd(zoo.read_entry(old_path), dataset, num_samples, seed,
                               res["protocol"]["images"])
            if old is not None and res["afd"] > old:
                raise PublishRefused(f"{src}: AE Frechet {res['afd']:.3f} is worse than the current {name} entry's "
                                     f"{old:.3f} ({res['protocol']['images']}); not published (--force to replace it "
                                     f"anyway)")
        remove_stale_temporaries(entries.ZOO_DIR)   # of a publish killed midway
        _say(f"writing {dest}, .md and .json")
        with written_together() as put:   # all or nothing; the JSON, which lists the entry, last
            put(dest, data)
            for file_name, content in cards.items():
                put(entries.ZOO_DIR / file_name, content)
            put(old_path, (json.dumps(w.to_json(), indent=2) + "\n").encode())
    return w


def write_card(w: zoo.Weights, folder: Path | None = None) -> Path:
    """Write the entry's card ``<folder>/<name>.md`` and, if it has one (:attr:`zoo.Weights.curve_file`),
    the learning-curve PNG the card embeds (:func:`card_files`), both or neither. ``folder`` defaults
    to the zoo's. For a shipped entry: ``write_card(zoo.get_weights("mnist"))``. Returns the card's path."""
    folder = Path(folder) if folder is not None else entries.ZOO_DIR
    with written_together() as put:
        for file_name, content in card_files(w).items():
            put(folder / file_name, content)
    return folder / f"{w.name}.md"


def card_files(w: zoo.Weights, arch: dict | None = None) -> dict[str, bytes]:
    """File name -> content of the entry's card (``arch`` as in :meth:`zoo.Weights.card`) and, if it
    has one, its learning-curve PNG, drawn from the entry's recorded evaluations and per-epoch log
    only (nothing is measured; :func:`fsvae_sj.viz.learning_curve`)."""
    files = {}
    if w.curve_file:
        fig = learning_curve_of(w)
        try:
            buf = io.BytesIO()
            fig.savefig(buf, format="png", bbox_inches="tight")   # as viz.save writes it
            files[w.curve_file] = buf.getvalue()
        finally:
            plt.close(fig)
    files[f"{w.name}.md"] = w.card(arch).encode()
    return files


def learning_curve_of(w: zoo.Weights, dpi: int = 80):
    """The figure of ``w``'s learning curve (:func:`fsvae_sj.viz.learning_curve`): its evaluations and
    per-epoch log, its own measurement as the published point and the paper's Table 1 row if any."""
    tcfg = w.recipe.get("train_config") or {}
    paper = w.eval_protocol.get("paper (Table 1, the authors' numbers)")
    published = {"cpu_hours": w.recipe.get("cpu_hours"), **w.metrics} if w.recipe.get("cpu_hours") else None
    during = (f"AE Frechet of {tcfg['eval_samples']:,} samples (seed 0)" if tcfg.get("eval_samples")
              else "AE Frechet") + \
        (f", recon MSE on {tcfg['limit_test']:,} test images" if tcfg.get("limit_test") else ", test recon MSE")
    return viz.learning_curve(w.recipe.get("evaluations") or [], w.recipe.get("per-epoch log") or [],
                              title=f"{w.name} (v{w.version}): learning curve\nduring training: {during}; "
                                    f"star: the card's own measurement",
                              published=published, paper=paper if isinstance(paper, dict) else None, dpi=dpi)


# How the card names the weights of a run's checkpoint (its metadata's "weights").
WEIGHTS_LABELS = {"raw": "raw", "ema": "ema (exponential moving average)",
                  "ema-calibrated": "ema (exponential moving average), decoder tdBN statistics re-estimated on "
                                    "{n} prior samples"}


def _say(phase: str) -> None:
    """A phase of the work, on stdout (progress bars and errors go to stderr): publishing takes
    minutes, mostly in sampling and reconstruction."""
    print(f"publish: {phase}", flush=True)


def full_epoch_hours(history: list[dict]) -> list[float]:
    """CPU-hours of each whole epoch of full training in a per-epoch log (``log.csv`` rows): rows one
    epoch after the row before, whose epoch trained both the reconstruction and the prior-posterior term.
    A stage's epochs (prior or decoder alone, another batch size) and rows further apart are not the
    paper's epochs, so they are left out."""
    def has(row, key):
        return row.get(key) not in (None, "")
    return [float(r["cpu_hours"]) - float(p["cpu_hours"]) for p, r in zip(history, history[1:])
            if has(p, "cpu_hours") and has(r, "cpu_hours") and int(r["epoch"]) == int(p["epoch"]) + 1
            and has(r, "train_recon") and has(r, "train_distance")]


def afd_projection(evals: list[dict], target: float) -> str:
    """CPU-hours at which a power law fitted to the best AE Frechet distance so far (raw or EMA,
    per evaluation) against CPU-hours reaches ``target``: an extrapolation, stated as one."""
    points, best = [], math.inf
    for r in evals:
        vals = [float(r[k]) for k in ("afd", "ema_afd", "emacal_afd") if r.get(k) not in (None, "")]
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


CPU_RUNS = "2-core x86-64 CPU, one thread per run, two runs sharing the machine"


def hardware_line(provenance: list) -> str:
    """The card's hardware line from the provenance's ``hardware`` events (the training loop records one
    when a run starts or moves); steps before the first were this project's CPU runs."""
    moves = [p for p in provenance if p.get("event") == "hardware"]
    if not moves:
        return f"{CPU_RUNS}, no GPU"
    gpu = "" if any(not p["hardware"].startswith("cpu") for p in moves) else ", no GPU"
    return f"{CPU_RUNS} unless recorded; recorded: " + "; ".join(
        f"{p['hardware']} from epoch {p['epoch']} step {p['step']}" for p in moves) + gpu


def _current_afd(w: zoo.Weights, dataset: str, num_samples: int, seed: int, protocol: str) -> float | None:
    """The AE Frechet distance of the entry being replaced, under the new measurement's protocol:
    its card's number if measured the same way, else measured again (the distance is biased by
    the sample count, so numbers of different protocols do not compare)."""
    if w.eval_protocol.get("images") == protocol:
        return w.metrics.get("autoencoder_frechet")
    path = entries.ZOO_DIR / w.file_name
    if not path.is_file():
        return None
    return afd_score(generate(load_file(path), num_samples, seed, progress=True), dataset)


def _default_notes(arch, dataset, tcfg, epoch, step, cpu_h, extra, paper, metrics) -> str:
    warm = [p for p in extra.get("provenance") or [] if "warm" in p.get("event", "")]
    lines = [f"{arch} trained by this project on {dataset}: {epoch} epochs and {step} steps of batch "
             f"{tcfg.get('batch_size')} (the paper: 150 epochs of batch 250), {cpu_h} CPU-hours on a 2-core CPU. "
             f"A SHORT budget: the metrics below are ours, measured with fsvae_sj.evaluate."]
    if extra.get("weights") in ("ema", "ema-calibrated"):
        lines.append(f"The published weights are the exponential moving average (decay {tcfg.get('ema_decay')}) "
                     f"of the training weights, chosen by the AE Frechet distance to the training images' "
                     f"statistics (the validation number; the card reports the test number).")
    if extra.get("weights") == "ema-calibrated":
        lines.append(f"Its decoder's tdBN statistics were re-estimated on {tcfg.get('calibrate_decoder')} of the "
                     f"prior's own samples (fsvae_sj.calibration.calibrate_decoder): the decoder is normalised "
                     f"for the spikes it decodes when generating, not for the posterior's it was trained on.")
    if warm:
        lines.append("Training continued from earlier runs: " + "; ".join(
            f"{p['from']} at epoch {p['epoch']} step {p['step']} (optimiser restarted)" for p in warm) + ".")
    if paper:
        lines.append(f"Paper (Table 1): recon MSE {paper['recon_mse']}, AE Frechet {paper['autoencoder_frechet']}; "
                     f"here: recon MSE {metrics['recon_mse']}, AE Frechet {metrics['autoencoder_frechet']}.")
    return "\n\n".join(lines)
