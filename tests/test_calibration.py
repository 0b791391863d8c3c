"""Generation-time statistics: the decoder's tdBN statistics re-estimated on the prior's spikes."""
import pytest
import torch

from fsvae_sj.calibration import calibrate_decoder, decoder_parts
from fsvae_sj.models.config import FSVAEConfig
from fsvae_sj.models.fsvae import FSVAE
from fsvae_sj.seeding import sample_generators
from fsvae_sj.spiking.tdbn import TdBN


def small_model(seed=0):
    torch.manual_seed(seed)
    m = FSVAE(FSVAEConfig(hidden_dims=(8, 16), latent_dim=8, k=4, n_steps=4, image_size=8))
    # running statistics far from what the prior's spikes give, so that a re-estimate shows
    for bn in m.modules():
        if isinstance(bn, TdBN):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    return m.eval()


def test_only_the_decoders_statistics_change():
    m = small_model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    calibrate_decoder(m, n=12, batch_size=4)
    dec = {id(b) for p in decoder_parts(m) for b in p.modules() if isinstance(b, TdBN)}
    dec_keys = {f"{name}.{s}" for name, b in m.named_modules() if id(b) in dec
                for s in ("running_mean", "running_var", "num_batches_tracked")}
    after = m.state_dict()
    for k, v in before.items():
        if k in dec_keys:
            if not k.endswith("num_batches_tracked"):
                assert not torch.equal(after[k], v), k
        else:
            assert torch.equal(after[k], v), k   # weights, the prior's and the encoder's statistics: bit for bit
    assert not m.training and all(not p.training for p in decoder_parts(m))
    assert all(b.momentum == 0.1 for b in m.modules() if isinstance(b, TdBN))


def test_statistics_are_the_exact_average_over_batches_of_the_priors_spikes():
    m = small_model()
    bn = m.decoder_input.bn
    captured = []
    # the decoder's first tdBN sees decoder_input.layer(z): its per-batch statistics, by hand
    for start in range(0, 12, 4):
        z, _ = m.prior.generate(4, m.config.n_steps, sample_generators(7, 4, start=start))
        y = m.decoder_input.layer(z.flatten(0, 1)).view(z.shape[0] * z.shape[1], -1)
        captured.append((y.double().mean(0), y.double().var(0, unbiased=True)))
    calibrate_decoder(m, n=12, batch_size=4, seed=7)
    mean = torch.stack([c[0] for c in captured]).mean(0)
    var = torch.stack([c[1] for c in captured]).mean(0)
    assert torch.allclose(bn.running_mean.double(), mean, atol=1e-5)
    assert torch.allclose(bn.running_var.double(), var, rtol=1e-4, atol=1e-6)


def test_samples_change_and_calibrating_twice_gives_the_same_model():
    a, b = small_model(), small_model()
    x0 = a.sample(6, seed=0)
    calibrate_decoder(a, n=8, batch_size=4)
    calibrate_decoder(b, n=8, batch_size=4)
    calibrate_decoder(b, n=8, batch_size=4)   # exact averages: no memory of the previous statistics
    assert not torch.equal(a.sample(6, seed=0), x0)
    assert torch.equal(a.sample(6, seed=0), b.sample(6, seed=0))


@pytest.mark.parametrize("n,batch", [(1, 4), (8, 1)])
def test_refuses_too_few_samples(n, batch):
    with pytest.raises(ValueError, match="n >= 2 and batch_size >= 2"):
        calibrate_decoder(small_model(), n=n, batch_size=batch)
