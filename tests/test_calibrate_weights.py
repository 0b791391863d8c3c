"""benchmarks/calibrate_weights.py: a checkpoint with its decoder's tdBN statistics re-estimated on
prior samples, every weight and every other statistic kept bit for bit."""
import importlib.util
from pathlib import Path

import torch
from safetensors.torch import load_file

from fsvae_sj import zoo
from fsvae_sj.calibration import calibrate_decoder
from fsvae_sj.hub import read_metadata

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("calibrate_weights", ROOT / "benchmarks" / "calibrate_weights.py")
calibrate_weights = importlib.util.module_from_spec(spec)
spec.loader.exec_module(calibrate_weights)


def test_only_the_decoder_statistics_change_and_they_are_calibrate_decoders(tmp_path):
    src, out = ROOT / "zoo" / "mnist.safetensors", tmp_path / "cal.safetensors"
    assert calibrate_weights.main([str(src), str(out), "--n", "8"]) == 0
    got, before = load_file(str(out)), load_file(str(src))
    want = calibrate_decoder(zoo.load(src), n=8).state_dict()
    assert set(got) == set(before)
    decoder = ("decoder_input.", "decoder.", "final_layer.")
    moved = {k for k in got if not torch.equal(got[k], before[k])}
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    assert moved and all(k.startswith(decoder) and k.endswith(statistics) for k in moved)
    assert any(k.endswith("running_var") for k in moved)
    assert all(torch.equal(got[k], want[k]) for k in got)
    assert read_metadata(out)[1]["calibrated_decoder_on_prior_samples"] == 8
    assert read_metadata(out)[0] == read_metadata(src)[0]
