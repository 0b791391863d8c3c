"""benchmarks/gpu_stage.py: what travels to the GPU unpacks to the same bytes, in a form fsvae_sj reads;
what comes back is checked against the device's limits; a staging is put back whole."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from fsvae_sj import datasets

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("gpu_stage", ROOT / "benchmarks" / "gpu_stage.py")
gpu_stage = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_stage)


@pytest.mark.parametrize("codec", ["xz", "shuffle4+xz"])
@pytest.mark.parametrize("size", [0, 1, 7, 4096 + 3])
def test_packed_bytes_unpack_to_the_same_bytes(codec, size):
    raw = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert gpu_stage.unpack_bytes(gpu_stage.pack(raw, codec), codec, size) == raw


def test_shuffle_puts_each_byte_of_a_float_in_its_own_plane():
    raw = np.array([1.0, -2.0], "<f4").tobytes()   # 00 00 80 3f | 00 00 00 c0
    assert gpu_stage.shuffle4(raw) == bytes([0, 0, 0, 0, 0x80, 0, 0x3F, 0xC0])


def test_idx_files_are_read_back_by_the_library(tmp_path):
    x = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    y = np.array([7, 0, 9])
    for stem, a in zip(gpu_stage.IDX["test"], (x, y)):
        (tmp_path / stem).write_bytes(gpu_stage.idx_bytes(a))
    got_x, got_y, _ = datasets.load_raw("mnist", "test", root=tmp_path)
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)


def test_the_run_keeps_code_and_registry_but_not_the_autoencoders_or_weights():
    assert gpu_stage.kept("fsvae_sj/spiking/lif.py") and gpu_stage.kept("zoo/mnist.json")
    assert gpu_stage.kept("benchmarks/gpu_train.sh") and gpu_stage.kept("fsvae_sj/assets/afd/mnist_test_64.npz")
    for path in ("fsvae_sj/assets/afd/mnist_64.pth", "zoo/mnist.safetensors", "tests/data/x.pt.gz",
                 "notebooks/zoo_tour.ipynb", "benchmarks/run.py", "README.md"):
        assert not gpu_stage.kept(path), path


def _write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def test_check_out_names_each_broken_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_stage, "BACK_FILE_SIZE", 100)
    monkeypatch.setattr(gpu_stage, "BACK_TOTAL", 1000)
    _write(tmp_path / "a" / "ema.safetensors", 100)
    _write(tmp_path / "log.txt", 10)
    assert gpu_stage.check_out(tmp_path) == []
    _write(tmp_path / "a" / "b" / "c" / "deep.txt", 1)
    _write(tmp_path / "a" / "big.bin", 101)
    _write(tmp_path / "odd name.txt", 1)
    problems = gpu_stage.check_out(tmp_path)
    assert any(p.startswith("a/b/c/deep.txt: more than 2 folders") for p in problems)
    assert any(p.startswith("a/big.bin: ") and "over" in p for p in problems)
    assert any(p.startswith("odd name.txt: a name") for p in problems)
    for i in range(8):
        _write(tmp_path / f"f{i}", 100)
    problems = gpu_stage.check_out(tmp_path)
    assert "13 files, over 8" in problems
    assert any(" in all, over " in p for p in problems)


def test_restore_puts_back_what_was_moved_aside(tmp_path):
    _write(tmp_path / ".gpu-aside" / "tests" / "data" / "f.gz", 5)      # moved aside by a staging
    _write(tmp_path / ".gpu-aside" / "zoo" / "mnist.safetensors", 3)    # unpacked into the checkout again
    _write(tmp_path / "zoo" / "mnist.safetensors", 3)
    gpu_stage.restore(tmp_path)
    assert (tmp_path / "tests" / "data" / "f.gz").read_bytes() == b"xxxxx"
    assert not (tmp_path / ".gpu-aside").exists()


def test_restore_never_overwrites_a_file_made_since(tmp_path):
    _write(tmp_path / ".gpu-aside" / "notes.md", 5)
    (tmp_path / "notes.md").write_text("new")
    with pytest.raises(gpu_stage.StageError, match="1 stay in"):
        gpu_stage.restore(tmp_path)
    assert (tmp_path / "notes.md").read_text() == "new"
    assert (tmp_path / ".gpu-aside" / "notes.md").read_bytes() == b"xxxxx"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads Linux /proc")
def test_stage_refuses_while_a_training_run_could_evaluate(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    # stands in for `python -m fsvae_sj.train ...`: the same word in its command line
    run = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "fsvae_sj.train"])
    try:
        assert run.pid in gpu_stage.running_evaluators()
        with pytest.raises(gpu_stage.StageError, match=f"kill -STOP .*{run.pid}"):
            gpu_stage.stage(tmp_path, 1000, 575)
        assert not (tmp_path / gpu_stage.CARRY).exists()   # refused before building anything
        os.kill(run.pid, signal.SIGSTOP)   # a paused run reads nothing: the remedy the message gives
        for _ in range(100):
            if run.pid not in gpu_stage.running_evaluators():
                break
            time.sleep(0.05)
        assert run.pid not in gpu_stage.running_evaluators()
    finally:
        run.kill()
        run.wait()
