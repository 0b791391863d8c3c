"""Progress that survives a machine (--init-from, EMA through resume) and the publish guard."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fsvae_sj import FSVAE, zoo
from fsvae_sj import datasets as data
from fsvae_sj.files import sha256_file
from fsvae_sj.zoo import publish
from fsvae_sj.hub.checkpoint import read_checkpoint, save_model
from fsvae_sj.cli.train import main
from fsvae_sj.training import EXIT_STOPPED
from fsvae_sj.training.state import RunState, hardware_label, record_hardware

from conftest import assert_refused, make_alive

pytestmark = pytest.mark.skipif(not data.DEBIAN_FASHION.is_dir(),
                                reason="apt-get install dataset-fashion-mnist (done by .ci/run)")
TINY = ["--dataset", "fashion-mnist", "--limit-train", "48", "--limit-test", "16", "--batch-size", "8",
        "--epochs", "2", "--n-steps", "2", "--save-every", "2", "--no-progress", "--eval-samples", "40",
        "--fused-lif", "false"]   # the loop, not the kernels (compiled ones: test_train_parity)
SHIPPED = Path(__file__).resolve().parent.parent / "zoo"


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A finished two-epoch run with an EMA: the starting point of the warm-start tests."""
    run = tmp_path_factory.mktemp("src") / "run"
    assert main(["--out", str(run), "--ema-decay", "0.5"] + TINY) == 0
    return run


def test_init_from_file_carries_weights_budget_and_curve_and_restarts_the_optimiser(source, tmp_path):
    src = source / "model.safetensors"
    _, src_state, src_extra = read_checkpoint(src)
    run = tmp_path / "warm"
    assert main(["--out", str(run), "--init-from", str(src), "--max-steps", "0", "--epochs", "3", "--no-progress", "--fused-lif", "false"]) == EXIT_STOPPED
    # before any step: weights and tdBN running statistics are the source's, bit for bit
    assert any(k.endswith("running_var") for k in src_state)
    assert same(load_file(str(run / "model.safetensors")), src_state)
    st = torch.load(run / "state.pt", weights_only=True)
    assert (st["epoch"], st["step"]) == (2, 0)
    assert st["optimizer"]["state"] == {}   # restarted: no Adam moments carried over
    rs = json.loads(st["run_state"])
    assert rs["history"] == src_extra["history"] and len(rs["history"]) == 2
    # carried over, plus this process's own set-up time
    assert src_extra["cpu_seconds"] <= rs["cpu_seconds"] < src_extra["cpu_seconds"] + 60
    assert rs["provenance"][-1]["event"] == "warm start, optimiser restarted"
    assert rs["provenance"][-1]["from"] == str(src)
    # where the steps ran (a card's hardware line comes from these): recorded by the source run; the
    # warm start runs on the same hardware and adds none
    assert [p["hardware"] for p in rs["provenance"] if p["event"] == "hardware"] == [hardware_label("cpu")]
    before = rs["provenance"]
    assert json.loads((run / "train_config.json").read_text())["limit_train"] == 48   # the source's recipe
    # the third epoch runs its 6 steps and only those, and moves the weights
    assert main(["--out", str(run), "--no-progress", "--fused-lif", "false"]) == 0
    st = torch.load(run / "state.pt", weights_only=True)
    assert (st["epoch"], st["step"]) == (3, 0)
    assert len(json.loads(st["run_state"])["history"]) == 3
    # resumed on the same hardware: nothing more recorded
    assert json.loads(st["run_state"])["provenance"] == before
    after = load_file(str(run / "model.safetensors"))
    assert not same(after, src_state)


@pytest.mark.one_generation
def test_init_from_a_zoo_name(source, tmp_path, monkeypatch, zoo_dir):
    zoo_dir()
    _, _, extra = read_checkpoint(source / "model.safetensors")
    model = make_alive(zoo.load(source / "model.safetensors"), torch.rand(8, 1, 32, 32) * 2 - 1)
    save_model(model, tmp_path / "alive.safetensors", extra=extra)
    publish.publish(tmp_path / "alive.safetensors", "tiny", num_samples=40)
    run = tmp_path / "warm"
    assert main(["--out", str(run), "--init-from", "tiny", "--max-steps", "0", "--epochs", "3"]) == EXIT_STOPPED
    published = load_file(str(tmp_path / "zoo" / "tiny.safetensors"))
    assert same(load_file(str(run / "model.safetensors")), published)
    prov = json.loads(torch.load(run / "state.pt", weights_only=True)["run_state"])["provenance"]
    assert prov[-1]["from"] == "tiny" and prov[-1]["sha256"] == zoo.get_weights("tiny").sha256


@pytest.mark.parametrize("flag,value,field", [("--lr", "0.1", "lr"), ("--batch-size", "4", "batch_size"),
                                              ("--surrogate", "paper", "surrogate")])
def test_resume_refuses_a_changed_recipe_and_names_the_field(source, tmp_path, flag, value, field, capsys):
    import shutil
    run = tmp_path / "r"
    shutil.copytree(source, run)
    assert_refused(main(["--out", str(run), flag, value]), capsys, rf"another training config: {field} \(")


@pytest.mark.one_generation
def test_resume_may_extend_epochs_and_ema_survives_a_stop_exactly(tmp_path):
    # one run straight through three epochs; another stopped twice and extended from 2 to 3 epochs
    assert main(["--out", str(tmp_path / "a"), "--ema-decay", "0.5"] + TINY + ["--epochs", "3"]) == 0
    b = tmp_path / "b"
    assert main(["--out", str(b), "--ema-decay", "0.5", "--max-steps", "5"] + TINY) == EXIT_STOPPED
    assert main(["--out", str(b), "--no-progress", "--fused-lif", "false"]) == 0
    assert main(["--out", str(b), "--epochs", "3", "--max-steps", "3", "--no-progress", "--fused-lif", "false"]) == EXIT_STOPPED
    assert torch.load(b / "state.pt", weights_only=True)["step"] == 3
    assert main(["--out", str(b), "--no-progress", "--fused-lif", "false"]) == 0
    for f in ("model.safetensors", "ema.safetensors"):
        assert same(load_file(str(tmp_path / "a" / f)), load_file(str(b / f))), f
    raw, ema = load_file(str(b / "model.safetensors")), load_file(str(b / "ema.safetensors"))
    assert not same(raw, ema)   # the average is not a copy of the weights


def test_ema_is_the_exponential_average_of_the_weights(tmp_path, monkeypatch):
    """decay d: ema_0 = the initial weights, ema_n = d ema_(n-1) + (1 - d) w_n, buffers included."""
    import fsvae_sj.training as tr
    seen = []
    real_save = tr.loop.save_state

    def spy(run, model, *rest):
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return real_save(run, model, *rest)
    monkeypatch.setattr(tr.loop, "save_state", spy)
    # save_every 1: the weights after each of the epoch's 6 steps are seen (then a final save)
    assert main(["--out", str(tmp_path), "--ema-decay", "0.75"] + TINY + ["--epochs", "1", "--save-every", "1"]) == 0
    init = tr.build(tr.TrainConfig(dataset="fashion-mnist", n_steps=2))
    ema = {k: v.double() for k, v in init.state_dict().items() if v.is_floating_point()}
    for w in seen[:6]:
        for k in ema:
            ema[k] = 0.75 * ema[k] + 0.25 * w[k].double()
    got = load_file(str(tmp_path / "ema.safetensors"))
    for k in ("encoder.0.layer.weight", "encoder.0.bn.running_var"):
        assert torch.allclose(got[k].double(), ema[k], rtol=1e-5, atol=1e-6), k
        assert not torch.allclose(got[k], seen[5][k]), k


def test_best_checkpoint_is_chosen_by_the_validation_number(source):
    """The lowest AE Frechet to the TRAINING images' statistics over raw and EMA weights of every
    evaluation; its test number is recorded beside, not used to choose."""
    assert len((source / "evals.csv").read_text().splitlines()) == 3   # header + two epoch ends
    _, _, extra = read_checkpoint(source / "best.safetensors")
    cands = [(float(e[p + "val_afd"]), float(e[p + "afd"])) for e in extra["evals"] for p in ("", "ema_")]
    val, test = min(cands)
    assert extra["val_afd_at_save"] == pytest.approx(val, abs=1e-3)
    assert extra["afd_at_save"] == pytest.approx(test, abs=1e-3)
    assert all(v != t for v, t in cands)   # two references, two numbers
    assert extra["weights"] in ("raw", "ema")


# -- the publish guard ------------------------------------------------------------------------
def test_publish_refuses_a_dead_generator(tmp_path, monkeypatch, zoo_dir):
    zoo_dir()
    torch.manual_seed(0)
    save_model(FSVAE().eval(), tmp_path / "fresh.safetensors", extra={"train_config": {"dataset": "fashion-mnist"}})
    assert publish.sample_spread(zoo.load(tmp_path / "fresh.safetensors")) < publish.MIN_SAMPLE_STD
    with pytest.raises(publish.PublishRefused, match="hardly vary"):
        publish.publish(tmp_path / "fresh.safetensors", "dead", num_samples=40)
    assert not (tmp_path / "zoo" / "dead.safetensors").exists()


def test_publish_refuses_non_finite_weights(source, tmp_path, monkeypatch, zoo_dir):
    zoo_dir()
    _, _, extra = read_checkpoint(source / "model.safetensors")
    model = make_alive(zoo.load(source / "model.safetensors"), torch.rand(8, 1, 32, 32) * 2 - 1)
    assert publish.sample_spread(model) > publish.MIN_SAMPLE_STD   # only the NaN can stop it
    with torch.no_grad():
        model.decoder_input.layer.weight[0, 0] = float("nan")
    save_model(model, tmp_path / "nan.safetensors", extra=extra)
    with pytest.raises(publish.PublishRefused, match="non-finite.*decoder_input.layer.weight"):
        publish.publish(tmp_path / "nan.safetensors", "nan", num_samples=40)
    from fsvae_sj.cli.zoo import main as zoo_main
    assert zoo_main(["publish", str(tmp_path / "nan.safetensors"), "--name", "nan"]) == 2


@pytest.mark.one_generation
def test_publish_refuses_a_worse_afd_unless_forced(tmp_path, monkeypatch, zoo_dir):
    """The shipped ANN baseline against a 12-step ANN: the guard keeps whichever scores better."""
    zoo_dir()
    weak = tmp_path / "weak"
    assert main(["--out", str(weak), "--model", "ann-vae", "--lr", "0.01", "--eval-samples", "0"] + TINY) == 0
    assert publish.sample_spread(zoo.load(weak / "model.safetensors")) > publish.MIN_SAMPLE_STD   # alive, only worse
    good = publish.publish(SHIPPED / "fashion-mnist-ann.safetensors", "ann", dataset="fashion-mnist", num_samples=300)
    with pytest.raises(publish.PublishRefused, match="is worse than the current ann entry's"):
        publish.publish(weak, "ann", num_samples=300)
    assert zoo.get_weights("ann").sha256 == good.sha256
    forced = publish.publish(weak, "ann", num_samples=300, force=True)
    assert forced.metrics["autoencoder_frechet"] > good.metrics["autoencoder_frechet"]
    assert zoo.get_weights("ann").sha256 == forced.sha256 == sha256_file(tmp_path / "zoo" / "ann.safetensors")


def test_init_from_an_epoch_end_checkpoint_starts_the_next_epoch(source, tmp_path):
    _, _, extra = read_checkpoint(source / "best.safetensors")
    assert extra["step"] == 6   # saved by an epoch-end evaluation, before the epoch counter moved
    run = tmp_path / "w"
    assert main(["--out", str(run), "--init-from", str(source / "best.safetensors"), "--max-steps", "0",
                 "--epochs", "3", "--no-progress", "--fused-lif", "false"]) == EXIT_STOPPED
    st = torch.load(run / "state.pt", weights_only=True)
    assert (st["epoch"], st["step"]) == (extra["epoch"] + 1, 0)


def test_a_config_file_sets_only_what_it_states(tmp_path, capsys):
    from fsvae_sj.cli.train import parse_args, requested
    from fsvae_sj.training import resolve_config
    (tmp_path / "c.json").write_text('{"epochs": 3}')
    args = parse_args(["--out", str(tmp_path / "r"), "--recipe", "zoo-short",
                       "--config", str(tmp_path / "c.json"), "--dataset", "fashion"])
    cfg, _ = resolve_config(tmp_path / "r", requested(args))
    assert (cfg.epochs, cfg.batch_size, cfg.ema_decay, cfg.lr) == (3, 64, 0.999, 1e-3)
    assert cfg.dataset == "fashion-mnist"   # aliases are stored by their canonical name
    (tmp_path / "bad.json").write_text('{"epochz": 3}')
    assert_refused(main(["--out", str(tmp_path / "r"), "--config", str(tmp_path / "bad.json")]), capsys, "unknown field")
    for flags, msg in [(["--ema-decay", "1"], "ema_decay must be in"), (["--eval-samples", "1"], "eval_samples"),
                       (["--lr-schedule", "linear"], "lr_schedule")]:
        assert_refused(main(["--out", str(tmp_path / "r")] + TINY + flags), capsys, msg)
    assert not (tmp_path / "r").exists()


def test_afd_projection_recovers_a_power_law():
    rows = [{"cpu_hours": h, "afd": 100 * h ** -0.5, "ema_afd": ""} for h in (1, 2, 4, 8)]
    text = publish.afd_projection(rows, 10.0)
    assert text.startswith("about 100 CPU-hours") and "^-0.50" in text
    flat = [{"cpu_hours": h, "afd": 50.0} for h in (1, 2, 3)]
    assert publish.afd_projection(flat, 10.0).startswith("none")
    assert publish.afd_projection(rows[:2], 10.0) == "not enough evaluations to fit"
    # hours logged as 0 (rounded, a tiny run) are left out, not a math error
    assert publish.afd_projection([{"cpu_hours": 0.0, "afd": 9.0}] + rows, 10.0) == text


def test_the_budget_projection_counts_whole_epochs_of_full_training_only():
    full = {"train_recon": 0.05, "train_distance": 0.006}
    history = [{"epoch": 0, "cpu_hours": 0.5, **full},
               {"epoch": 1, "cpu_hours": 1.1, **full},                   # a whole epoch of full training: 0.6
               {"epoch": 2, "cpu_hours": 1.3, "train_distance": 0.006},  # a prior stage's epoch: left out
               {"epoch": 3, "cpu_hours": 1.9, **full},                   # full again, after the stage: 0.6
               {"epoch": 5, "cpu_hours": 3.5, **full},                   # two epochs apart: left out
               {"epoch": 6, "cpu_hours": 3.6, "train_recon": 0.05, "train_distance": ""}]   # decoder stage
    assert publish.full_epoch_hours(history) == pytest.approx([0.6, 0.6])
    assert publish.full_epoch_hours(history[:1]) == []


def test_the_cards_hardware_line_names_the_steps_a_gpu_ran():
    rs = RunState(epoch=13, step=145, cpu_seconds=7200.0)
    assert publish.hardware_line(rs.provenance) == publish.CPU_RUNS + ", no GPU"   # runs that recorded none
    record_hardware(rs, "cpu (x86_64, 16 cores)")
    record_hardware(rs, "cpu (x86_64, 16 cores)")   # a resume on the same machine adds nothing
    line = publish.hardware_line(rs.provenance)   # another CPU than the project's: said as recorded
    assert line.endswith("recorded: cpu (x86_64, 16 cores) from epoch 13 step 145, no GPU")
    rs.epoch, rs.step = 14, 0
    record_hardware(rs, "cuda (NVIDIA H200)")
    rs.epoch = 18
    record_hardware(rs, "cpu (x86_64, 16 cores)")
    assert [(p["hardware"], p["epoch"], p["step"]) for p in rs.provenance] == [
        ("cpu (x86_64, 16 cores)", 13, 145), ("cuda (NVIDIA H200)", 14, 0), ("cpu (x86_64, 16 cores)", 18, 0)]
    line = publish.hardware_line(rs.provenance)
    assert "no GPU" not in line and "cuda (NVIDIA H200) from epoch 14 step 0" in line
    assert rs.provenance[0]["cpu_hours"] == 2.0
