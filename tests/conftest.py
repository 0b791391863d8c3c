import os
import re

import pytest
import torch

from fsvae_sj import FSVAEConfig

DATA = os.path.join(os.path.dirname(__file__), "data")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test, excluded by default (-m slow to run)")
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    # CI sets this: tests that need the offline datasets must run there, not skip quietly
    if os.environ.get("FSVAE_SJ_REQUIRE_DATA") == "1":
        from fsvae_sj import datasets as data
        if not data.DEBIAN_FASHION.is_dir():
            raise pytest.UsageError("FSVAE_SJ_REQUIRE_DATA=1 but Debian's FashionMNIST is missing "
                                    "(apt-get install dataset-fashion-mnist)")
        try:
            data.load_raw("mnist", "test")
        except data.DataNotFound as e:
            raise pytest.UsageError(f"FSVAE_SJ_REQUIRE_DATA=1 but MNIST is missing: {e}") from e


@pytest.fixture
def tiny_cfg():
    """An FSVAE small enough for the CPU test suite: 8x8 images, 2 stages, T=4."""
    return FSVAEConfig(in_channels=1, image_size=8, hidden_dims=(4, 8), latent_dim=6, k=3, n_steps=4)


@pytest.fixture
def zoo_dir(monkeypatch, tmp_path):
    """``zoo_dir(folder=None)`` points the zoo at ``folder`` (default ``tmp_path / "zoo"``, not made)
    for this test and returns it: the one place tests move the zoo's folder (``hub.entries.ZOO_DIR``,
    where the library reads it, and its re-export ``zoo.ZOO_DIR``)."""
    from pathlib import Path

    from fsvae_sj import hub, zoo

    def point(folder=None):
        folder = tmp_path / "zoo" if folder is None else Path(folder)
        monkeypatch.setattr(hub.entries, "ZOO_DIR", folder)
        monkeypatch.setattr(zoo, "ZOO_DIR", folder)
        return folder
    return point


@pytest.fixture
def fixture_path():
    return os.path.join(DATA, "parity_fsvae_large.pt.gz")


def make_alive(model, x, seed: int = 0):
    """Set every tdBN's running statistics to those of one training-mode batch of ``x``.

    An untrained (or few-step) FSVAE is silent in eval mode: its running variance sits far
    above the batch variance, so no decoder neuron fires and every sample is one constant
    image. After this the eval-mode network fires as in training, so its output depends on
    z and on the input; tests that compare outputs must use such a model (and assert it)."""
    from fsvae_sj.spiking.tdbn import TdBN
    bns = [m for m in model.modules() if isinstance(m, TdBN)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(x, 0.0, torch.Generator().manual_seed(seed))
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    return model.eval()


def near_threshold(module, seed: int = 0, bias: float = 0.3):
    """Give every tdBN in ``module`` (in module order, one generator seeded ``seed``) an affine and
    running statistics that keep its neurons near threshold in eval mode, so that spikes are
    neither all 0 nor all 1 (a fresh model's prior is silent): weight U(0.5, 1.5), bias
    U(0, ``bias``), running mean N(0, 0.1^2), running variance U(0.5, 1.5). Returns ``module``."""
    from fsvae_sj.spiking.tdbn import TdBN
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (m for m in module.modules() if isinstance(m, TdBN)):
            n = bn.num_features
            bn.weight.copy_(torch.rand(n, generator=g) + 0.5)
            bn.bias.copy_(torch.rand(n, generator=g) * bias)
            bn.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            bn.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return module


def assert_refused(status, capsys, match: str) -> None:
    """A command refused its input in the one error style: exit status 2 and an ``error: ...``
    line on stderr matching ``match`` (a regex)."""
    err = capsys.readouterr().err
    assert status == 2 and re.search(match, err) and err.startswith("error: "), (status, err)
