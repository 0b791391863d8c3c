"""benchmarks/average_weights.py: the uniform average of checkpoints, tensor by tensor."""
import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fsvae_sj.hub import read_metadata

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("average_weights", ROOT / "benchmarks" / "average_weights.py")
average_weights = importlib.util.module_from_spec(spec)
spec.loader.exec_module(average_weights)


def test_the_average_is_each_float_tensors_mean_and_the_first_files_metadata(tmp_path):
    a, b = ROOT / "zoo" / "mnist.safetensors", ROOT / "zoo" / "fashion-mnist.safetensors"
    out = tmp_path / "avg.safetensors"
    assert average_weights.main([str(out), str(a), str(b)]) == 0
    got, wa, wb = load_file(str(out)), load_file(str(a)), load_file(str(b))
    assert set(got) == set(wa)
    for k, v in got.items():
        want = (wa[k] + wb[k]) / 2 if v.is_floating_point() else wa[k]
        assert torch.allclose(v, want, rtol=0, atol=1e-6), k
    assert not torch.equal(got["prior.layers.0.layer.weight"], wa["prior.layers.0.layer.weight"])
    assert read_metadata(out)[0] == read_metadata(a)[0]
    assert read_metadata(out)[1]["averaged_from"] == f"{a},{b}"


def test_one_checkpoint_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        average_weights.main([str(tmp_path / "avg.safetensors"), str(ROOT / "zoo" / "mnist.safetensors")])
    assert not (tmp_path / "avg.safetensors").exists()
