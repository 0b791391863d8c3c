import os

import pytest
import torch

from fsvae_sj import FSVAEConfig

DATA = os.path.join(os.path.dirname(__file__), "data")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test, excluded by default (-m slow to run)")
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture
def tiny_cfg():
    """An FSVAE small enough for the CPU test suite: 8x8 images, 2 stages, T=4."""
    return FSVAEConfig(in_channels=1, image_size=8, hidden_dims=(4, 8), latent_dim=6, k=3, n_steps=4)


@pytest.fixture
def fixture_path():
    return os.path.join(DATA, "parity_fsvae_large.pt.gz")
