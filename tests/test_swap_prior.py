"""benchmarks/swap_prior.py: one FSVAE's prior put into another, everything else kept bit for bit."""
import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("swap_prior", ROOT / "benchmarks" / "swap_prior.py")
swap_prior = importlib.util.module_from_spec(spec)
spec.loader.exec_module(swap_prior)


def test_the_prior_comes_from_the_second_file_and_the_rest_from_the_first(tmp_path):
    body, prior, out = ROOT / "zoo" / "mnist.safetensors", ROOT / "zoo" / "fashion-mnist.safetensors", tmp_path / "o"
    assert swap_prior.main([str(body), str(prior), str(out)]) == 0
    got, b, p = load_file(str(out)), load_file(str(body)), load_file(str(prior))
    assert set(got) == set(b)
    names = [k for k in got if k.startswith("prior.")]
    assert names and any(k.endswith("running_mean") for k in names)
    for k in got:
        want = p[k] if k.startswith("prior.") else b[k]
        assert torch.equal(got[k], want), k
    assert any(not torch.equal(p[k], b[k]) for k in names)   # the two priors differ: the swap is seen
    with safe_open(str(out), "pt") as f, safe_open(str(body), "pt") as g:
        assert f.metadata() == g.metadata()


def test_a_prior_of_another_architecture_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="does not fit"):
        swap_prior.main([str(ROOT / "zoo" / "mnist.safetensors"), str(ROOT / "zoo" / "mnist-ann.safetensors"),
                         str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()
