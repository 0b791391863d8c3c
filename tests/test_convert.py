"""The authors' checkpoints: parity fixture and every way a checkpoint can be wrong."""
import gzip
import io

import pytest
import torch

from fsvae_sj import FSVAEConfig
from fsvae_sj.zoo.authors import convert_state_dict, load_authors_checkpoint
from fsvae_sj import zoo
from fsvae_sj.hub.checkpoint import CheckpointError
from fsvae_sj.cli.convert import main


@pytest.fixture(scope="module")
def authors_sd(fixture_path=None):
    import os
    path = os.path.join(os.path.dirname(__file__), "data", "parity_fsvae_large.pt.gz")
    fx = torch.load(io.BytesIO(gzip.open(path).read()), weights_only=True)
    return torch.load(io.BytesIO(fx["checkpoint_bytes"]), weights_only=True)


def test_fixture_check_cli_passes(fixture_path, capsys):
    assert main(["--check-fixture", fixture_path]) == 0
    out = capsys.readouterr().out
    assert "encoder_spikes  (16, 4, 128): 0 of 8192 spikes differ" in out
    assert "posterior_out   (16, 4, 2560): 0 of 163840" in out
    assert "prior_out       (16, 4, 2560): 0 of 163840" in out
    assert out.strip().endswith("PASS")


def test_convert_cli_writes_our_format(tmp_path, authors_sd):
    src = tmp_path / "authors.pth"
    torch.save(authors_sd, src)
    assert main([str(src), str(tmp_path / "ours.safetensors")]) == 0
    ours = zoo.load(tmp_path / "ours.safetensors")
    ref = load_authors_checkpoint(src)
    assert ours.config == ref.config == FSVAEConfig.large()
    _, converted = convert_state_dict(authors_sd)
    a, b = ours.state_dict(), ref.state_dict()
    assert a.keys() == b.keys() == converted.keys()
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], converted[k]) for k in a)
    # every learned tensor of the authors' file arrives, by value (the converter renames, never
    # alters; the three constants it checks and drops are rebuilt from the config)
    from fsvae_sj.models.authors import _CONSTANT_KEYS
    values = sorted(float(t.double().sum()) for k, t in authors_sd.items()
                    if t.is_floating_point() and k not in _CONSTANT_KEYS)
    assert values == sorted(float(t.double().sum()) for t in converted.values() if t.is_floating_point())


def test_missing_unexpected_and_misshaped_keys(authors_sd):
    sd = dict(authors_sd)
    del sd["decoder.1.bn.running_var"]
    with pytest.raises(CheckpointError, match=r"missing keys \['decoder.1.bn.running_var'\]"):
        load_authors_checkpoint(sd)
    sd = dict(authors_sd, **{"decoder.9.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="unexpected keys"):
        load_authors_checkpoint(sd)
    sd = dict(authors_sd, **{"decoder.1.bias": torch.zeros(7)})
    with pytest.raises(CheckpointError, match=r"decoder.1.layer.bias: checkpoint \(7,\) vs model \(128,\)"):
        load_authors_checkpoint(sd)
    sd = dict(authors_sd, **{"encoder.1.weight": torch.zeros(64, 32, 3, 3, 2)})
    with pytest.raises(CheckpointError, match="time depth 1"):
        load_authors_checkpoint(sd)


def test_other_architecture_is_refused(authors_sd):
    with pytest.raises(CheckpointError, match=r"another architecture: .*image_size: expected 32, checkpoint has 64"):
        convert_state_dict(authors_sd, FSVAEConfig(in_channels=3))
    with pytest.raises(CheckpointError, match="not an FSVAE checkpoint"):
        load_authors_checkpoint({"foo": torch.zeros(1)})


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "x.pth").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_authors_checkpoint(tmp_path / "x.pth")
