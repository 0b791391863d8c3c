"""Training: exact resume, time budget, NaN stop, two-process Gloo DDP, TensorBoard events."""
import io
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from fsvae_sj import datasets as data
from fsvae_sj.files import sha256_file
from fsvae_sj.cli.train import main
from fsvae_sj.training import EXIT_STOPPED, TrainConfig, build, epoch_order, run_training

from conftest import assert_refused

pytestmark = pytest.mark.skipif(not data.DEBIAN_FASHION.is_dir(),
                                reason="apt-get install dataset-fashion-mnist (done by .ci/run)")
# The loop's tests run the eager LIF: the compiled kernels give the same spikes and gradients
# (test_neurons, test_tdbn_lif, test_train_parity) but cost each new process ~45 s of tracing
# even with inductor's cache warm. test_killed_process_resumes_from_last_save runs the users'
# default (compiled) route end to end.
TINY = ["--dataset", "fashion-mnist", "--limit-train", "48", "--limit-test", "16", "--batch-size", "8",
        "--epochs", "2", "--n-steps", "2", "--save-every", "2", "--no-progress", "--fused-lif", "false"]
# 120 steps: long enough that a signal sent after the first save lands mid-run
LONGER = TINY + ["--limit-train", "480", "--eval-samples", "0"]


def weights(run):
    return load_file(str(run / "model.safetensors"))


def position(run):
    st = torch.load(run / "state.pt", weights_only=True)
    return st["epoch"], st["step"]


def test_stop_anywhere_and_resume_gives_the_same_weights(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "a")] + TINY) == 0
    # stop mid-epoch (step 4 of 6), then resume twice more to the end
    assert main(["--out", str(tmp_path / "b"), "--max-steps", "4"] + TINY) == EXIT_STOPPED
    assert position(tmp_path / "b") == (0, 4)
    init = build(TrainConfig(dataset="fashion-mnist", n_steps=2)).state_dict()
    assert not torch.equal(weights(tmp_path / "b")["encoder.0.layer.weight"], init["encoder.0.layer.weight"])
    capsys.readouterr()
    assert main(["--out", str(tmp_path / "b"), "--max-steps", "5", "--no-progress", "--fused-lif", "false"]) == EXIT_STOPPED
    assert "resuming" in capsys.readouterr().out
    assert position(tmp_path / "b") == (1, 3)   # 4 + 5 steps; a restart would stand at (0, 5)
    assert main(["--out", str(tmp_path / "b"), "--no-progress", "--fused-lif", "false"]) == 0
    assert position(tmp_path / "b") == (2, 0)
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,scheduled_p,train_loss") and len(log) == 3
    # the epoch rows average all of each epoch's steps, across the stops
    import csv
    rows = {r: list(csv.DictReader(open(tmp_path / r / "log.csv"))) for r in ("a", "b")}
    for ra, rb in zip(rows["a"], rows["b"]):
        assert rb["train_steps_averaged"] == "6"
        assert {k: v for k, v in ra.items() if k.startswith("train_")} == \
               {k: v for k, v in rb.items() if k.startswith("train_")}
    assert (tmp_path / "b" / "sample_epoch001.png").is_file()


@pytest.mark.one_generation
def test_killed_process_resumes_from_last_save(tmp_path):
    """A SIGKILL mid-epoch loses at most save_every steps and still ends bit-identical."""
    args = LONGER + ["--fused-lif", "true"]   # the default route, compiled kernels included
    ref = tmp_path / "ref"
    assert main(["--out", str(ref)] + args) == 0
    run = tmp_path / "k"
    proc = subprocess.Popen([sys.executable, "-m", "fsvae_sj.train", "--out", str(run)] + args,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import time
    deadline = time.time() + 120
    while not (run / "state.pt").is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    alive = proc.poll() is None
    proc.kill()
    proc.wait()
    assert alive, "the training process died before its first save"
    assert (run / "state.pt").is_file(), "no save within 120 s"
    saved_at = position(run)
    assert saved_at < (2, 0)   # killed mid-run: the resume below has steps left to do
    assert main(["--out", str(run), "--no-progress"]) == 0
    a, b = weights(ref), weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_time_budget_stops_at_a_step_boundary(tmp_path):
    cfg = TrainConfig(dataset="fashion-mnist", limit_train=48, limit_test=16, batch_size=8, epochs=50, n_steps=2)
    out = run_training(cfg, tmp_path, time_budget=0.0, progress=False)
    assert out["status"] == "time_budget" and out["steps_run"] == 0
    assert (tmp_path / "state.pt").is_file()


def test_cpu_budget_counts_the_steps_cpu_time_and_stops_at_a_step_boundary(tmp_path, monkeypatch):
    import time
    clock = iter(range(0, 10_000, 3))   # every process_time() call: 3 CPU seconds later
    monkeypatch.setattr(time, "process_time", lambda: float(next(clock)))
    cfg = TrainConfig(dataset="fashion-mnist", limit_train=48, limit_test=16, batch_size=8, epochs=50, n_steps=2,
                      eval_samples=0)
    # each step costs 3 s: after 3 steps 9 s are used and a 4th would pass the budget of 11
    out = run_training(cfg, tmp_path, progress=False, cpu_budget=11.0)
    assert out["status"] == "cpu_budget" and out["steps_run"] == 3
    assert position(tmp_path) == (0, 3)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    assert main(["--out", str(tmp_path), "--max-steps", "2"] + TINY) == EXIT_STOPPED
    good = weights(tmp_path)
    from fsvae_sj import FSVAE
    real = FSVAE.loss

    def poisoned(*a, **k):
        out = real(*a, **k)
        out["loss"] = out["loss"] * float("nan")
        return out
    monkeypatch.setattr(FSVAE, "loss", poisoned)
    assert main(["--out", str(tmp_path), "--no-progress", "--fused-lif", "false"]) == 3
    assert "loss is nan" in capsys.readouterr().err
    after = weights(tmp_path)
    assert all(torch.equal(good[k], after[k]) for k in good)


def test_ann_baseline_trains_with_the_same_command(tmp_path):
    assert main(["--out", str(tmp_path), "--model", "ann-vae"] + TINY) == 0
    from fsvae_sj import ANNVAE, zoo
    assert isinstance(zoo.load(tmp_path / "model.safetensors"), ANNVAE)


def test_epoch_order_shards_are_disjoint_and_fixed():
    a = epoch_order(10, 0, 3, 0, 2)
    b = epoch_order(10, 0, 3, 1, 2)
    assert set(a.tolist()).isdisjoint(b.tolist()) and len(a) == len(b) == 5
    assert torch.equal(a, epoch_order(10, 0, 3, 0, 2))
    assert not torch.equal(epoch_order(10, 0, 4, 0, 1), epoch_order(10, 0, 3, 0, 1))


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(out, extra, expect=0):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "fsvae_sj.train", "--out", str(out)] + TINY + ["--epochs", "1"] + extra
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == (0 if expect == 0 else 1), r.stderr[-3000:]   # torchrun reports a rank's 75 as 1
    return r


@pytest.mark.one_generation
def test_two_gloo_processes_identical_weights_and_exact_resume(tmp_path, capsys):
    _torchrun(tmp_path / "a", [])
    rep = json.loads((tmp_path / "a" / "replicas.json").read_text())
    assert rep["world_size"] == 2 and len(set(rep["param_sha256"])) == 1
    assert json.loads((tmp_path / "a" / "train_config.json").read_text())["batch_size"] == 8
    # stop both ranks after one step, resume: the same weights as the uninterrupted run
    _torchrun(tmp_path / "b", ["--max-steps", "1"], expect=EXIT_STOPPED)
    assert position(tmp_path / "b") == (0, 1)
    # one process cannot take over two
    assert_refused(main(["--out", str(tmp_path / "b"), "--no-progress", "--fused-lif", "false"]), capsys, "written by 2 process")
    r = _torchrun(tmp_path / "b", [])
    assert "resuming" in r.stdout and position(tmp_path / "b") == (1, 0)
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.one_generation
def test_sigterm_stops_cleanly_at_a_step_boundary(tmp_path):
    import signal
    import time
    run = tmp_path / "t"
    proc = subprocess.Popen([sys.executable, "-m", "fsvae_sj.train", "--out", str(run)] + LONGER,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 120
    while not (run / "state.pt").is_file() and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the training process died before its first save"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_STOPPED
    assert "stopped by SIGTERM" in out
    assert position(run) < (2, 0)
    assert main(["--out", str(run), "--no-progress", "--fused-lif", "false"]) == 0
    ref = tmp_path / "ref"
    assert main(["--out", str(ref)] + LONGER) == 0
    a, b = weights(ref), weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.one_generation
def test_publish_measures_the_run_and_writes_its_learning_curve(tmp_path, monkeypatch, zoo_dir):
    from fsvae_sj import zoo
    from fsvae_sj.metrics import evaluate
    run = tmp_path / "run"
    # lr 0.01: 12 steps are enough for an ANN whose samples vary (the publish guard's floor)
    assert main(["--out", str(run), "--model", "ann-vae", "--lr", "0.01"] + TINY) == 0
    zoo_dir()
    (tmp_path / "notes.md").write_text("Study table goes here.\n")
    from fsvae_sj.cli.zoo import main as zoo_main
    assert zoo_main(["publish", str(run), "--name", "t", "--dataset", "fashion-mnist", "--num-samples", "50",
                     "--notes-file", str(tmp_path / "notes.md"), "--hardware", "an H200, then this CPU"]) == 0
    entry = json.loads((tmp_path / "zoo" / "t.json").read_text())
    assert entry["recipe"]["hardware"] == "an H200, then this CPU"   # the run's own record, overridden
    assert entry["sha256"] == sha256_file(tmp_path / "zoo" / "t.safetensors")
    # the card carries exactly what the evaluation protocol measures on the published file
    res = evaluate(zoo.load(tmp_path / "zoo" / "t.safetensors"), "fashion-mnist", num_samples=50, seed=0)
    assert entry["metrics"]["recon_mse"] == round(res["recon_mse"], 5)
    assert entry["metrics"]["autoencoder_frechet"] == round(res["afd"], 3)
    assert "all 10000 fashion-mnist test images" in entry["eval_protocol"]["recon_mse"]
    card = (tmp_path / "zoo" / "t.md").read_text()
    assert "Study table goes here." in card
    curve = card[card.index("Learning curve (per epoch):"):card.index("Evaluations during training")]
    rows = [ln.split(" | ") for ln in curve.splitlines() if ln.startswith("| ")]
    assert rows[0][:3] == ["| epoch", "global_step", "scheduled_p"] and [r[0] for r in rows[2:]] == ["| 0", "| 1"]
    log = (run / "log.csv").read_text().splitlines()
    assert len(log) == 3 and log[2].split(",")[0] == "1"
    # the run's end-of-epoch evaluations make the learning-curve picture the card embeds
    assert len(entry["recipe"]["evaluations"]) == 2
    assert "](t_curve.png)" in card and (tmp_path / "zoo" / "t_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_the_sigterm_handler_is_restored_after_training(tmp_path):
    import signal
    before = signal.getsignal(signal.SIGTERM)
    cfg = TrainConfig(dataset="fashion-mnist", limit_train=16, limit_test=8, batch_size=8, epochs=1, n_steps=2,
                      eval_samples=0)
    assert run_training(cfg, tmp_path, progress=False)["status"] == "finished"
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_calibrated_ema_is_a_candidate_measured_like_the_others(tmp_path):
    """--calibrate-decoder N: each evaluation also scores the EMA with its decoder's statistics
    re-estimated on N prior samples; re-doing that on the saved EMA gives the recorded numbers.
    From the zoo's weights (an untrained net's prior hardly spikes: every candidate draws alike)."""
    from fsvae_sj import zoo
    from fsvae_sj.calibration import calibrate_decoder
    from fsvae_sj.metrics import afd_scores, generate
    run = tmp_path / "r"
    assert main(["--out", str(run), "--init-from", "fashion-mnist", "--ema-decay", "0.5", "--calibrate-decoder", "8",
                 "--eval-samples", "50", "--eval-every", "1", "--max-steps", "1", "--limit-train", "24",
                 "--limit-test", "16", "--batch-size", "8", "--fused-lif", "false", "--no-progress"]) == EXIT_STOPPED
    ev = json.loads(torch.load(run / "state.pt", weights_only=True)["run_state"])["evals"][-1]
    ema = zoo.load(run / "ema.safetensors")
    cal = calibrate_decoder(zoo.load(run / "ema.safetensors"), n=8)
    got = afd_scores(generate(cal, 50, seed=0), "fashion-mnist")
    assert ev["emacal_afd"] == round(got["test"], 3) and ev["emacal_val_afd"] == round(got["train"], 3)
    assert ev["emacal_val_afd"] != ev["ema_val_afd"]
    assert not torch.equal(cal.decoder_input.bn.running_mean, ema.decoder_input.bn.running_mean)


@pytest.mark.one_generation
def test_tensorboard_events_mirror_the_csvs_across_a_kill_and_resume(tmp_path):
    """The run's TensorBoard events hold log.csv's and evals.csv's numbers and the epoch grids, at the
    global step, each step once, although a killed session logged steps its resume does again."""
    import csv
    import shutil
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    run = tmp_path / "r"
    args = ["--out", str(run), "--eval-every", "4", "--eval-samples", "0"] + TINY
    assert main(args + ["--max-steps", "4"]) == EXIT_STOPPED       # 6 steps per epoch: an evaluation at step 4
    shutil.copy(run / "state.pt", tmp_path / "state_at_4.pt")
    assert main(args + ["--max-steps", "3"]) == EXIT_STOPPED       # through the end of epoch 0 to step 7
    shutil.copy(tmp_path / "state_at_4.pt", run / "state.pt")     # as if killed after the save at step 4
    assert main(args) == 0
    events = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    for group, name in (("eval", "evals.csv"), ("epoch", "log.csv")):
        rows = list(csv.DictReader(open(run / name)))
        steps = [int(r["global_step"]) for r in rows]
        assert steps == ([4, 6, 8, 12] if group == "eval" else [6, 12])
        for column in ("test_recon_mse", "wall_seconds") + (("train_loss", "train_mean_q") if group == "epoch" else ()):
            logged = events.Scalars(f"{group}/{column}")
            assert [e.step for e in logged] == steps, column   # each step once: the killed session's are purged
            assert [e.value for e in logged] == pytest.approx([float(r[column]) for r in rows], rel=1e-6)
    from PIL import Image
    for name in ("sample", "recon"):
        images = events.Images(f"images/{name}")
        assert [e.step for e in images] == [6, 12]
        for epoch, logged in enumerate(images):   # the PNG the run wrote, pixel for pixel
            shown = Image.open(io.BytesIO(logged.encoded_image_string)).convert("RGB")
            written = Image.open(run / f"{name}_epoch{epoch:03d}.png").convert("RGB")
            assert shown.size == written.size and shown.tobytes() == written.tobytes()


def test_learning_rate_warmup_ramps_from_the_runs_first_step_then_follows_the_schedule():
    from fsvae_sj.training import learning_rate
    cfg = TrainConfig(lr=1e-3, lr_warmup_steps=3)
    assert [learning_rate(cfg, 100 + k, 100, 10_000) for k in range(5)] == pytest.approx(
        [0.25e-3, 0.5e-3, 0.75e-3, 1e-3, 1e-3])
    cos = TrainConfig(lr=1e-3, lr_warmup_steps=1, lr_schedule="cosine", lr_min_ratio=0.0, lr_decay_steps=4)
    # step k of the run: cosine (1 + cos(pi k / 4)) / 2 x 1e-3, halved at k = 0 by the ramp
    assert [learning_rate(cos, 10 + k, 10, 0) for k in range(5)] == pytest.approx(
        [0.5e-3, 0.853553e-3, 0.5e-3, 0.146447e-3, 0.0], abs=1e-9)
    with pytest.raises(ValueError, match="lr_warmup_steps"):
        TrainConfig(lr_warmup_steps=-1)


def test_a_branch_continues_the_source_exactly_and_starts_its_schedule_at_the_branch_point(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "a")] + TINY) == 0
    assert main(["--out", str(tmp_path / "src"), "--max-steps", "4"] + TINY) == EXIT_STOPPED
    # unchanged, a branch is a resume in another folder: optimiser moments, data order and RNG kept
    assert main(["--out", str(tmp_path / "same"), "--branch-from", str(tmp_path / "src"), "--no-progress", "--fused-lif", "false"]) == 0
    a, b = weights(tmp_path / "a"), weights(tmp_path / "same")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a cosine branch: its schedule counts from the branch point (global step 4)
    assert main(["--out", str(tmp_path / "cos"), "--branch-from", str(tmp_path / "src"), "--lr-schedule", "cosine",
                 "--lr-decay-steps", "4", "--lr-min-ratio", "0.25", "--max-steps", "2", "--no-progress", "--fused-lif", "false"]) \
        == EXIT_STOPPED
    st = torch.load(tmp_path / "cos" / "state.pt", weights_only=True)
    rs = json.loads(st["run_state"])
    assert rs["first_step"] == 4 and rs["provenance"][-1]["event"] == "branched, optimiser kept"
    assert rs["provenance"][-1]["changed"] == {"lr_decay_steps": 4, "lr_min_ratio": 0.25, "lr_schedule": "cosine"}
    # the second step of the branch (k = 1 of 4) used 1e-3 * (0.25 + 0.75 * (1 + cos(pi / 4)) / 2)
    lr = st["optimizer"]["param_groups"][0]["lr"]
    assert lr == pytest.approx(1e-3 * 8 / 250 * (0.25 + 0.375 * (1 + 2 ** -0.5)), rel=1e-9)
    assert position(tmp_path / "src") == (0, 4)   # the source is left as it was
    capsys.readouterr()
    # a branch may change only the schedule (and what a resume may change); never into a run that exists
    assert_refused(main(["--out", str(tmp_path / "x"), "--branch-from", str(tmp_path / "src"), "--batch-size", "4"]),
                   capsys, "batch_size")
    assert not (tmp_path / "x").exists()
    assert_refused(main(["--out", str(tmp_path / "cos"), "--branch-from", str(tmp_path / "src")]),
                   capsys, "exists")
    assert_refused(main(["--out", str(tmp_path / "y"), "--branch-from", str(tmp_path / "src"),
                         "--init-from", str(tmp_path / "src" / "model.safetensors")]), capsys, "exclude")
    assert_refused(main(["--out", str(tmp_path / "z"), "--branch-from", str(tmp_path / "nothing")]),
                   capsys, "no state.pt")


@pytest.mark.parametrize("stage_name, on", [("prior", []), ("prior-free", []),
                                            ("prior-free", ["--prior-free-on", "probabilities"]),
                                            ("prior-free", ["--prior-free-on", "images"])])
def test_the_prior_stages_train_the_prior_alone_and_resume_exactly(tmp_path, capsys, stage_name, on):
    import csv
    assert main(["--out", str(tmp_path / "src"), "--eval-samples", "0"] + TINY) == 0
    start = weights(tmp_path / "src")
    stage = ["--init-from", str(tmp_path / "src" / "model.safetensors"), "--stage", stage_name, *on, "--epochs", "4",
             "--ema-decay", "0.9", "--scheduled-start", "0.5", "--scheduled-end", "0.5", "--eval-samples", "40"]
    tiny = TINY[:TINY.index("--epochs")] + TINY[TINY.index("--epochs") + 2:]
    assert main(["--out", str(tmp_path / "a")] + tiny + stage) == 0
    assert "was made by the" not in capsys.readouterr().err   # --stage given: no note
    a, ema = weights(tmp_path / "a"), load_file(str(tmp_path / "a" / "ema.safetensors"))
    # every part but the prior bit-identical, tdBN statistics included, in the weights and their EMA
    # (whose integer batch counters the average rounds down whatever the stage); the prior's moved
    for k in start:
        if k.startswith("prior."):
            continue
        assert torch.equal(a[k], start[k]), k
        assert "num_batches_tracked" in k or torch.equal(ema[k], start[k]), k
    moved = [k for k in start if k.startswith("prior.") and not torch.equal(a[k], start[k])]
    assert any(k.endswith("layer.weight") for k in moved) and any(k.endswith("running_mean") for k in moved)
    st = torch.load(tmp_path / "a" / "state.pt", weights_only=True)
    n_prior = sum(1 for k in start if k.startswith("prior.") and "running" not in k and "num_batches" not in k)
    assert len(st["optimizer"]["param_groups"][0]["params"]) == n_prior   # the optimiser holds the prior only
    # the loss is the distance alone; reconstructions (encoder, posterior, decoder) never change
    rows = list(csv.DictReader(open(tmp_path / "a" / "log.csv")))   # the source's 2 epochs, then the stage's 2
    assert [r["epoch"] for r in rows] == ["0", "1", "2", "3"]
    assert all(r["train_loss"] == r["train_distance"] and not r["train_recon"] for r in rows[2:])
    assert rows[1]["train_recon"] and len({r["test_recon_mse"] for r in rows[1:]}) == 1
    # stopped and resumed, the same weights as uninterrupted
    assert main(["--out", str(tmp_path / "b"), "--max-steps", "7"] + tiny + stage) == EXIT_STOPPED
    assert main(["--out", str(tmp_path / "b"), "--no-progress", "--fused-lif", "false"]) == 0
    b = weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    capsys.readouterr()
    assert_refused(main(["--out", str(tmp_path / "c"), "--model", "ann-vae", "--stage", stage_name] + tiny), capsys,
                   "prior")
    assert_refused(main(["--out", str(tmp_path / "b"), "--stage", "full", "--no-progress", "--fused-lif", "false"]), capsys, "stage")
    # the staged weights continued with --init-from and no --stage: the whole model trains again
    assert main(["--out", str(tmp_path / "d"), "--init-from", str(tmp_path / "a" / "model.safetensors"),
                 "--max-steps", "1"] + tiny + ["--epochs", "5"]) == EXIT_STOPPED
    assert f"made by the {stage_name!r} stage; this run's stage is 'full'" in capsys.readouterr().err
    cfg = json.loads((tmp_path / "d" / "train_config.json").read_text())
    assert (cfg["stage"], cfg["prior_free_on"]) == ("full", "spikes") and cfg["ema_decay"] == 0.9   # the rest carried
    d = weights(tmp_path / "d")
    assert any(k.startswith("encoder.") and not torch.equal(d[k], a[k]) for k in a)


def _stage_from_a_trained_run(tmp_path, stage_name, extra=()):
    """A TINY run, then ``stage_name`` from its weights (``tmp_path/a``, 2 epochs, EMA 0.9), then the same
    stopped after 7 steps and resumed (``tmp_path/b``), which must end bit-identical to ``a``. Returns the
    source's weights, the stage's weights and EMA, its optimiser's parameter count and log rows."""
    import csv
    assert main(["--out", str(tmp_path / "src"), "--eval-samples", "0"] + TINY) == 0
    tiny = TINY[:TINY.index("--epochs")] + TINY[TINY.index("--epochs") + 2:]
    stage = ["--init-from", str(tmp_path / "src" / "model.safetensors"), "--stage", stage_name, "--epochs", "4",
             "--ema-decay", "0.9", "--eval-samples", "40", *extra]   # evaluations at a tenth of the cost
    assert main(["--out", str(tmp_path / "a")] + tiny + stage) == 0
    a = weights(tmp_path / "a")
    assert main(["--out", str(tmp_path / "b"), "--max-steps", "7"] + tiny + stage) == EXIT_STOPPED
    assert main(["--out", str(tmp_path / "b"), "--no-progress", "--fused-lif", "false"]) == 0
    b = weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    st = torch.load(tmp_path / "a" / "state.pt", weights_only=True)
    return (weights(tmp_path / "src"), a, load_file(str(tmp_path / "a" / "ema.safetensors")),
            len(st["optimizer"]["param_groups"][0]["params"]), list(csv.DictReader(open(tmp_path / "a" / "log.csv"))))


def _trained(state: dict) -> int:
    """How many tensors of ``state`` an optimiser holds (tdBN statistics are buffers)."""
    return sum(1 for k in state if "running" not in k and "num_batches" not in k)


def test_the_autoencoder_stage_keeps_the_prior_and_trains_the_rest_on_the_fsvae_loss(tmp_path):
    start, a, ema, n_opt, rows = _stage_from_a_trained_run(tmp_path, "autoencoder")
    # the prior bit-identical, tdBN statistics included, in the weights and their EMA
    for k in (k for k in start if k.startswith("prior.")):
        assert torch.equal(a[k], start[k]), k
        assert "num_batches_tracked" in k or torch.equal(ema[k], start[k]), k
    # encoder, posterior and decoder trained, their statistics too
    for part in ("encoder.", "posterior.", "decoder."):
        moved = [k for k in start if k.startswith(part) and not torch.equal(a[k], start[k])]
        assert any(k.endswith("weight") for k in moved) and any(k.endswith("running_mean") for k in moved), part
    assert n_opt == _trained({k: v for k, v in start.items() if not k.startswith("prior.")})   # all but the prior
    # the FSVAE loss: reconstruction plus the distance (rows 0-1: the source run's epochs)
    assert all(float(r["train_loss"]) == pytest.approx(float(r["train_recon"]) + float(r["train_distance"]), rel=1e-5)
               for r in rows[2:])


# the mix's own values are checked fast below; its resume (two more stage runs) only with -m slow
@pytest.mark.parametrize("extra", [(), pytest.param(("--decoder-prior-mix", "0.5"), marks=pytest.mark.slow)],
                         ids=["posterior", "prior-mix"])
def test_the_decoder_stage_keeps_the_latent_distribution_and_trains_the_decoder_on_the_reconstruction(tmp_path, extra):
    start, a, ema, n_opt, rows = _stage_from_a_trained_run(tmp_path, "decoder", extra)
    decoder = ("decoder_input.", "decoder.", "final_layer.")
    # encoder, posterior and prior bit-identical, tdBN statistics included, in the weights and their EMA
    for k in (k for k in start if not k.startswith(decoder)):
        assert torch.equal(a[k], start[k]), k
        assert "num_batches_tracked" in k or torch.equal(ema[k], start[k]), k
    # every part of the decoder trained, its statistics too
    for part in decoder:
        assert any(k.startswith(part) and k.endswith("weight") and not torch.equal(a[k], start[k]) for k in a), part
    assert any(k.startswith(decoder) and k.endswith("running_mean") and not torch.equal(a[k], start[k]) for k in a)
    assert n_opt == _trained({k: v for k, v in start.items() if k.startswith(decoder)})   # the decoder only
    # the loss is the reconstruction error alone: no prior-posterior term
    assert all(float(r["train_loss"]) == pytest.approx(float(r["train_recon"]), rel=1e-6) and r["train_distance"] == ""
               for r in rows[2:])
    with pytest.raises(ValueError, match="needs FSVAE's prior and posterior"):
        TrainConfig(model="ann-vae", stage="decoder")


def _tiny_firing_fsvae_in_stage(stage: str):
    """An untrained FSVAE (T = 4) in training mode with ``stage``'s frozen parts frozen, and 6 images.
    Untrained samplers and decoder barely fire (the prior never, on its first input of zeros; the
    decoder's images would be constant): shifted tdBN biases make every part fire."""
    from fsvae_sj import FSVAE, FSVAEConfig
    from fsvae_sj.training.config import frozen_parts
    torch.manual_seed(0)
    model = FSVAE(FSVAEConfig(n_steps=4)).train()
    for part in frozen_parts(model, stage):
        part.eval().requires_grad_(False)
    for bn in (m for m in model.modules() if hasattr(m, "num_batches_tracked")):
        bn.bias.data.normal_(0.2, 0.2)
    return model, torch.rand(6, 1, 32, 32) * 2 - 1


def test_the_decoder_stage_with_a_prior_mix_decodes_the_prior_teacher_forced_draws_in_that_share():
    import copy
    import torch.nn.functional as F
    from fsvae_sj.models.losses import LossSettings
    model, x = _tiny_firing_fsvae_in_stage("decoder")
    g = torch.Generator().manual_seed(1)
    z_q, _ = model._posterior_z(x, g)
    out = model.prior.teacher_forced(z_q)
    z_p = model.prior.teacher_forced_draw(z_q, torch.Generator().manual_seed(2))
    # step t's draw is one of the prior's k outputs given z_q[:t]: where all k agree it is their value,
    # where they differ both values are drawn
    grouped = out.view(*out.shape[:-1], model.config.latent_dim, model.config.k)
    agree = (grouped == grouped[..., :1]).all(-1)
    assert torch.equal(z_p[agree], grouped[..., 0][agree])
    assert set(z_p[~agree].unique().tolist()) == {0.0, 1.0}
    for t in range(z_q.shape[0]):   # causal: out[t] sees z_q before t only
        prefix = torch.cat([torch.zeros_like(z_q[:1]), z_q[:t]])
        torch.testing.assert_close(model.prior.run(prefix)[-1], out[t], rtol=0, atol=0)
    # a share of the latents replaced, with the sample size's tolerance
    mixed = model._mix_prior_draws(z_q, 0.5, torch.Generator().manual_seed(3))
    z_p3 = model.prior.teacher_forced_draw(z_q, torch.Generator().manual_seed(3))
    assert bool(((mixed == z_q) | (mixed == z_p3)).all())
    differ = z_q != z_p3
    n = int(differ.sum())
    assert n > 200
    assert abs(float((mixed[differ] == z_p3[differ]).float().mean()) - 0.5) < 4 * 0.5 / n ** 0.5
    # the loss: mix 1 decodes the prior's draws, mix 0 the posterior's z (the plain decoder stage)
    twin, third = copy.deepcopy(model), copy.deepcopy(model)
    loss1 = twin.loss(x, LossSettings(stage="decoder", decoder_prior_mix=1.0), torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    z, _ = model._posterior_z(x, g)
    assert torch.equal(loss1["recon"], F.mse_loss(model.decode(model.prior.teacher_forced_draw(z, g)), x))
    loss0 = third.loss(x, LossSettings(stage="decoder", decoder_prior_mix=0.0), torch.Generator().manual_seed(1))
    assert torch.equal(loss0["recon"], F.mse_loss(model.decode(z_q), x))
    assert not torch.equal(loss0["recon"], loss1["recon"])
    # the gradient reaches the decoder only
    loss1["loss"].backward()
    trained = {n for n, p in twin.named_parameters() if p.grad is not None}
    assert trained and all(n.startswith(("decoder_input.", "decoder.", "final_layer.")) for n in trained), trained
    with pytest.raises(ValueError, match="decoder stage only"):
        TrainConfig(decoder_prior_mix=0.5)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        TrainConfig(stage="decoder", decoder_prior_mix=1.5)


def test_recon_loss_l1_trains_the_decoder_on_the_mean_absolute_error():
    import copy
    import torch.nn.functional as F
    from fsvae_sj.models.losses import LossSettings, recon_error
    model, x = _tiny_firing_fsvae_in_stage("decoder")
    l1, mse = copy.deepcopy(model), copy.deepcopy(model)
    got = l1.loss(x, LossSettings(stage="decoder", recon_loss="l1"), torch.Generator().manual_seed(1))
    z, _ = model._posterior_z(x, torch.Generator().manual_seed(1))
    want = (model.decode(z) - x).abs().mean()
    assert torch.allclose(got["recon"], want, rtol=1e-6, atol=0) and torch.equal(got["loss"], got["recon"])
    ref = mse.loss(x, LossSettings(stage="decoder"), torch.Generator().manual_seed(1))
    assert torch.equal(ref["recon"], F.mse_loss(model.decode(z), x))
    # the gradient is the sign of the error, not the error: one pixel off by 0.5 gets -1 from both, off by 0.25 not
    a, b = torch.zeros(1, 1, 1, 1, requires_grad=True), torch.full((1, 1, 1, 1), 0.5)
    for kind in ("mse", "l1"):
        a.grad = None
        recon_error(a, b, kind).backward()
        assert a.grad.item() == -1.0
    a.grad = None
    recon_error(a, torch.full((1, 1, 1, 1), 0.25), "l1").backward()
    assert a.grad.item() == -1.0   # MSE's would be -0.5
    # the whole model's loss too, and the refusals
    full = _tiny_firing_fsvae_in_stage("full")[0]
    out = full.loss(x, LossSettings(recon_loss="l1"), torch.Generator().manual_seed(2))
    torch.testing.assert_close(out["loss"], out["recon"] + out["distance"], rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="unknown reconstruction loss"):
        recon_error(a, b, "huber")
    with pytest.raises(ValueError, match="recon_loss must be one of"):
        TrainConfig(recon_loss="huber")
    with pytest.raises(ValueError, match="stages with a reconstruction error"):
        TrainConfig(stage="prior-free", recon_loss="l1")
    with pytest.raises(ValueError, match="trains on MSE"):
        TrainConfig(model="ann-vae", recon_loss="l1")
    assert TrainConfig(stage="decoder", recon_loss="l1").loss_settings(0, 10).recon_loss == "l1"


def test_the_prior_loss_is_the_distance_term_of_the_fsvae_loss():
    from fsvae_sj.models.losses import fsvae_loss, prior_loss
    g = torch.Generator().manual_seed(0)
    q, p = torch.rand(4, 3, 8, 2, generator=g), torch.rand(4, 3, 8, 2, generator=g)
    x, xr = torch.rand(3, 1, 4, 4, generator=g), torch.rand(3, 1, 4, 4, generator=g)
    for distance, red in (("mmd", "mean"), ("mmd", "sum"), ("kld", "mean")):
        full, prior = fsvae_loss(x, xr, q, p, distance, mmd_reduction=red), prior_loss(q, p, distance, mmd_reduction=red)
        assert torch.equal(prior["distance"], full["distance"])
        assert torch.allclose(prior["loss"] + full["recon"], full["loss"], rtol=0, atol=1e-7)
    assert torch.allclose(prior_loss(q, p, "kld")["loss"], 1e-4 * prior_loss(q, p, "kld")["distance"])


def test_the_set_mmd_matches_its_formula_and_separates_distributions():
    from fsvae_sj.models.losses import latent_set_mmd, psp
    g = torch.Generator().manual_seed(0)
    z_p = (torch.rand(4, 5, 3, generator=g) < 0.3).float()
    z_q = (torch.rand(4, 6, 3, generator=g) < 0.3).float()
    # the estimator written out pair by pair (Gretton et al. 2012, eq. 3), median heuristic bandwidth
    a = [psp(z_p)[:, i].flatten() for i in range(5)]
    b = [psp(z_q)[:, j].flatten() for j in range(6)]
    vs = a + b
    d2 = torch.stack([torch.stack([((u - v) ** 2).sum() for v in vs]) for u in vs])
    h = d2[~torch.eye(11, dtype=torch.bool)].median()

    def kern(u, v):
        return sum(torch.exp(-((u - v) ** 2).sum() / (s * h)) for s in (0.5, 1.0, 2.0))
    want = (sum(kern(a[i], a[j]) for i in range(5) for j in range(5) if i != j) / 20
            + sum(kern(b[i], b[j]) for i in range(6) for j in range(6) if i != j) / 30
            - 2 * sum(kern(u, v) for u in a for v in b) / 30)
    assert torch.allclose(latent_set_mmd(z_p, z_q), want, atol=1e-5)
    # 64 trains against 64 of the same rate, and against 64 firing twice as often
    same = latent_set_mmd(*(torch.rand(2, 16, 64, 8, generator=g) < 0.2).float())
    other = latent_set_mmd((torch.rand(16, 64, 8, generator=g) < 0.2).float(),
                           (torch.rand(16, 64, 8, generator=g) < 0.4).float())
    assert abs(float(same)) < 0.02 < float(other)
    with pytest.raises(ValueError, match="at least 2"):
        latent_set_mmd(z_p[:, :1], z_q)


def test_the_free_running_stage_compares_trains_or_the_probabilities_they_are_drawn_from():
    import copy
    from fsvae_sj import FSVAE, FSVAEConfig
    from fsvae_sj.models.losses import LossSettings, latent_set_mmd
    from fsvae_sj.training import TrainConfig
    torch.manual_seed(0)
    model = FSVAE(FSVAEConfig(n_steps=4)).train()
    for part in (model.encoder, model.posterior, model.decoder):
        part.eval()
    # untrained samplers barely fire (the prior never, on its first input of zeros); tdBN shifts make them
    for bn in (m for part in (model.prior, model.posterior) for m in part.modules() if hasattr(m, "num_batches_tracked")):
        bn.bias.data.normal_(0.2, 0.2)
    x = torch.rand(6, 1, 32, 32) * 2 - 1
    # each call updates the prior's tdBN statistics: three copies of one state, the same draws
    twin, third = copy.deepcopy(model), copy.deepcopy(model)
    z_q, z_p = model.free_prior_forward(x, torch.Generator().manual_seed(1))
    pi_q, pi_p = twin.free_prior_forward(x, torch.Generator().manual_seed(1), on="probabilities")
    # the same draws: each chosen spike is one of the k spikes averaged into its probability
    assert pi_q.shape == z_q.shape == (4, 6, model.prior.latent_dim) and pi_p.shape == z_p.shape
    k = model.prior.k
    assert bool(((pi_q * k).round() == pi_q * k).all()) and not torch.equal(pi_p, z_p)
    assert bool(((z_p == 1) <= (pi_p > 0)).all() and ((z_p == 0) <= (pi_p < 1)).all())
    assert bool(((z_q == 1) <= (pi_q > 0)).all() and ((z_q == 0) <= (pi_q < 1)).all())
    assert pi_p.requires_grad and not pi_q.requires_grad
    # the stage's loss is the set MMD of the probabilities
    assert 0.05 < float(pi_q.mean()) < 0.95 and 0.05 < float(pi_p.detach().mean()) < 0.95
    loss = third.loss(x, LossSettings(stage="prior-free", prior_free_on="probabilities"),
                      torch.Generator().manual_seed(1))
    assert torch.equal(loss["loss"], latent_set_mmd(pi_p, pi_q))
    with pytest.raises(ValueError, match="probabilities"):
        model.free_prior_forward(x, on="rates")
    with pytest.raises(ValueError, match="prior-free stage only"):
        TrainConfig(prior_free_on="probabilities")
    with pytest.raises(ValueError, match="one of"):
        TrainConfig(stage="prior-free", prior_free_on="rates")


def test_the_free_running_stage_on_images_decodes_both_sets_and_trains_the_prior_through_the_decoder():
    import copy
    from fsvae_sj.models.losses import LossSettings, latent_set_mmd, psp, set_mmd
    model, x = _tiny_firing_fsvae_in_stage("prior-free")
    twin, third = copy.deepcopy(model), copy.deepcopy(model)
    z_q, z_p = model.free_prior_forward(x, torch.Generator().manual_seed(1))
    x_q, x_p = twin.free_prior_forward(x, torch.Generator().manual_seed(1), on="images")
    # the images are the frozen decoder's of the same draws: forward values exactly those of the trains
    assert x_q.shape == x_p.shape == x.shape and not x_q.requires_grad and x_p.requires_grad
    assert torch.equal(x_q, model.decode(z_q)) and torch.equal(x_p.detach(), model.decode(z_p))
    assert not torch.equal(x_q, x_p)
    loss = third.loss(x, LossSettings(stage="prior-free", prior_free_on="images"), torch.Generator().manual_seed(1))
    assert torch.equal(loss["loss"], set_mmd(x_p.flatten(1), x_q.flatten(1)))
    assert torch.equal(loss["mean_q"], x_q.mean())
    # the gradient reaches the prior's weights through the decoder, nothing else
    loss["loss"].backward()
    grads = {n: p.grad for n, p in third.named_parameters()}
    assert all(g is None for n, g in grads.items() if not n.startswith("prior.")), \
        [n for n, g in grads.items() if g is not None and not n.startswith("prior.")]
    assert sum(float(g.abs().sum()) for n, g in grads.items() if n.startswith("prior.") and g is not None) > 0
    # the latent MMD is the set MMD of the PSP-filtered trains, one flattened vector per image
    assert torch.equal(latent_set_mmd(z_p.detach(), z_q),
                       set_mmd(psp(z_p.detach()).transpose(0, 1).flatten(1), psp(z_q).transpose(0, 1).flatten(1)))


def test_the_free_running_stage_on_several_features_sums_their_mmds_of_one_draw():
    import copy
    from fsvae_sj.models.losses import LossSettings, latent_set_mmd, set_mmd
    from fsvae_sj.training import TrainConfig
    model, x = _tiny_firing_fsvae_in_stage("prior-free")
    copies = [copy.deepcopy(model) for _ in range(3)]
    x_q, x_p = model.free_prior_forward(x, torch.Generator().manual_seed(1), on="images")
    pi_q, pi_p = copies[0].free_prior_forward(x, torch.Generator().manual_seed(1), on="probabilities")
    # one draw, both features, in the order named: each as that feature alone gives it
    both = copies[1].free_prior_features(x, torch.Generator().manual_seed(1), on="probabilities+images")
    assert list(both) == ["probabilities", "images"]
    for (q, p), (q1, p1) in zip(both.values(), [(pi_q, pi_p), (x_q, x_p)]):
        assert torch.equal(q, q1) and torch.equal(p.detach(), p1.detach()) and p.requires_grad
    loss = copies[2].loss(x, LossSettings(stage="prior-free", prior_free_on="images+probabilities"),
                          torch.Generator().manual_seed(1))
    image_mmd, latent_mmd = set_mmd(x_p.flatten(1), x_q.flatten(1)), latent_set_mmd(pi_p, pi_q)
    assert float(image_mmd.detach()) != 0 and float(latent_mmd.detach()) != 0
    torch.testing.assert_close(loss["loss"], image_mmd + latent_mmd, rtol=1e-6, atol=0)
    assert torch.equal(loss["mean_q"], x_q.mean())            # the first feature named
    assert TrainConfig(stage="prior-free", prior_free_on="images+probabilities").prior_free_on == "images+probabilities"
    for bad in ("images+images", "images+rates", "images+", ""):
        with pytest.raises(ValueError, match="joined by"):
            TrainConfig(stage="prior-free", prior_free_on=bad)
    with pytest.raises(ValueError, match="one of"):
        model.free_prior_forward(x, on="images+probabilities")   # one feature here; several: free_prior_features


def test_the_prior_draws_freely_with_gradient_in_training_mode_only():
    from fsvae_sj import FSVAE, FSVAEConfig
    from fsvae_sj.errors import StateError
    torch.manual_seed(0)
    prior = FSVAE(FSVAEConfig(n_steps=4)).prior.train()
    bns = [m for m in prior.modules() if hasattr(m, "num_batches_tracked")]
    z, out = prior.free_running(3, 4, torch.Generator().manual_seed(0))
    # tdBN's running statistics took one update per layer, from the pass over all 4 steps (prefix
    # runs would add one per step, the first of them on a step of zeros alone)
    assert [int(m.num_batches_tracked) for m in bns] == [1, 1, 1]
    assert z.shape == (4, 3, prior.latent_dim) and out.shape == (4, 3, prior.latent_dim * prior.k)
    assert bool(((z == 0) | (z == 1)).all()) and z.requires_grad
    # the same draws give the same trains
    again, _ = prior.free_running(3, 4, torch.Generator().manual_seed(0))
    assert torch.equal(z, again)
    with pytest.raises(StateError, match="generate"):
        prior.eval().free_running(3, 4)


def test_the_free_running_stage_on_running_statistics_trains_the_function_that_samples():
    import copy
    from fsvae_sj.models.losses import latent_set_mmd
    from fsvae_sj.training import TrainConfig, frozen_statistics
    model, x = _tiny_firing_fsvae_in_stage("prior-free")
    reference = copy.deepcopy(model).eval()
    kept = frozen_statistics(model, TrainConfig(stage="prior-free", prior_statistics="running"))
    assert len(kept) == 3 and all(any(m is bn for m in model.prior.modules()) for bn in kept)
    assert frozen_statistics(model, TrainConfig(stage="prior-free")) == []
    for bn in kept:
        bn.eval()
    before = {k: v.clone() for k, v in model.prior.state_dict().items()}
    z_p, out_p = model.prior.free_running(6, 4, torch.Generator().manual_seed(1))
    # each module's mode as it was: the prior trains, its tdBN layers keep eval mode
    assert model.prior.training and all(not bn.training for bn in kept)
    assert all(m.training for m in model.prior.modules() if all(m is not bn for bn in kept))
    # the training pass is the sampler's own function: the trains and outputs that generate() draws
    z_g, out_g = reference.prior.generate(6, 4, torch.Generator().manual_seed(1))
    assert torch.equal(z_p.detach(), z_g) and torch.equal(out_p.detach(), out_g)
    assert 0.05 < float(z_g.mean()) < 0.95
    # the running statistics and batch counters stay bit for bit; the gradient reaches the weights and tdBN's gain
    assert all(torch.equal(v, before[k]) for k, v in model.prior.state_dict().items())
    _, out_q = model._posterior_z(x, torch.Generator().manual_seed(2))
    latent_set_mmd(model.prior.probs(out_p), model.posterior.probs(out_q)).backward()
    grads = {n: p.grad for n, p in model.prior.named_parameters()}
    assert all(g is not None and float(g.abs().sum()) > 0 for n, g in grads.items() if n.endswith("layer.weight"))
    assert any(g is not None and float(g.abs().sum()) > 0 for n, g in grads.items() if n.endswith("bn.weight"))
    model.prior.free_running(6, 4, torch.Generator().manual_seed(1))   # a second draw: still nothing moves
    assert all(torch.equal(v, before[k]) for k, v in model.prior.state_dict().items())
    # batch statistics (the default) update them, one update per layer
    for bn in kept:
        bn.train()
    model.prior.free_running(6, 4, torch.Generator().manual_seed(1))
    assert [int(bn.num_batches_tracked - before[n]) for n, bn in zip(
        [k for k in before if k.endswith("num_batches_tracked")], kept)] == [1, 1, 1]
    with pytest.raises(ValueError, match="prior-free stage only"):
        TrainConfig(prior_statistics="running")
    with pytest.raises(ValueError, match="one of"):
        TrainConfig(stage="prior-free", prior_statistics="frozen")


@pytest.mark.one_generation
def test_the_free_running_stage_on_running_statistics_keeps_them_through_evaluations_and_resumes_exactly(tmp_path):
    start, a, ema, n_opt, rows = _stage_from_a_trained_run(tmp_path, "prior-free", ("--prior-statistics", "running",
                                                                                 "--eval-every", "3"))
    # every tdBN statistic bit-identical (the prior's too), in the weights and their EMA; the prior's weights moved
    for k in start:
        if "running" in k or not k.startswith("prior."):
            assert torch.equal(a[k], start[k]), k
            assert "num_batches_tracked" in k or torch.equal(ema[k], start[k]), k
    assert all(not torch.equal(a[k], start[k]) for k in start if k.startswith("prior.") and k.endswith("layer.weight"))
    assert n_opt == _trained({k: v for k, v in start.items() if k.startswith("prior.")})
    assert all(r["train_loss"] == r["train_distance"] for r in rows[2:])
