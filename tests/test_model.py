"""FSVAE model: shapes, input checks, sampling loops, seeds, training step, configs."""
import pytest
import torch

from fsvae_sj import ANNVAE, ANNVAEConfig, ConfigError, FSVAE, FSVAEConfig, fsvae_large, save_model, zoo
from fsvae_sj.hub.checkpoint import CheckpointError
from fsvae_sj.models.losses import fsvae_loss


def images(n, cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, cfg.in_channels, cfg.image_size, cfg.image_size, generator=g) * 2 - 1


def active(cfg, seed=0):
    """An eval-mode model whose tdBN affine/statistics put every layer near threshold."""
    from conftest import near_threshold
    torch.manual_seed(seed)
    return near_threshold(FSVAE(cfg), seed, bias=0.4).eval()


def test_parameter_counts_match_the_authors():
    assert sum(p.numel() for p in FSVAE().parameters()) == 4_053_601
    assert sum(p.numel() for p in fsvae_large().parameters()) == 6_681_571


def test_fsvae_large_old_spelling_warns_and_builds_the_same():
    from fsvae_sj import FSVAELarge
    with pytest.warns(DeprecationWarning, match="fsvae_large"):
        m = FSVAELarge()
    assert type(m) is FSVAE and m.config == FSVAEConfig.large()


def test_forward_shapes_and_gradient_reaches_encoder(tiny_cfg):
    m = FSVAE(tiny_cfg).train()
    x = images(5, tiny_cfg)
    out = m(x, scheduled_p=0.5, generator=torch.Generator().manual_seed(0))
    T, L, k = tiny_cfg.n_steps, tiny_cfg.latent_dim, tiny_cfg.k
    assert out.x_recon.shape == x.shape
    assert out.q_out.shape == out.p_out.shape == (T, 5, L, k)
    assert out.z.shape == (T, 5, L)
    assert set(out.z.unique().tolist()) <= {0.0, 1.0}
    assert out.x_recon.abs().max() <= 1
    loss = fsvae_loss(x, out.x_recon, out.q_out, out.p_out)["loss"]
    loss.backward()
    grads = {n: p.grad for n, p in m.named_parameters()}
    assert grads["encoder.0.layer.weight"] is not None and grads["encoder.0.layer.weight"].abs().sum() > 0
    assert grads["posterior.layers.0.layer.weight"].abs().sum() > 0
    assert grads["prior.layers.2.bn.weight"].abs().sum() > 0


def test_z_is_the_posterior_spike_at_the_chosen_index(tiny_cfg):
    m = FSVAE(tiny_cfg).train()
    out = m(images(3, tiny_cfg), generator=torch.Generator().manual_seed(3))
    T, L, k = tiny_cfg.n_steps, tiny_cfg.latent_dim, tiny_cfg.k
    # the posterior draws its choices first, one [N, latent] index tensor per step, in step order
    replay = torch.Generator().manual_seed(3)
    idx = torch.stack([torch.randint(0, k, (3, L), generator=replay) for _ in range(T)])
    assert torch.equal(out.z, out.q_out.gather(-1, idx.unsqueeze(-1)).squeeze(-1))
    # the check can fail: the k spikes of a channel often disagree, so another index gives another z
    assert float((out.q_out.amax(-1) != out.q_out.amin(-1)).float().mean()) > 0.2
    wrong = out.q_out.gather(-1, ((idx + 1) % k).unsqueeze(-1)).squeeze(-1)
    assert not torch.equal(out.z, wrong)


def test_training_prefix_loop_updates_running_stats_per_prefix(tiny_cfg):
    m = FSVAE(tiny_cfg).train()
    m(images(4, tiny_cfg), generator=torch.Generator().manual_seed(0))
    T = tiny_cfg.n_steps
    # posterior: T-1 prefix runs + 1 full pass; prior (no scheduled sampling): 1; encoder: 1
    assert int(m.posterior.layers[0].bn.num_batches_tracked) == T
    assert int(m.prior.layers[0].bn.num_batches_tracked) == 1
    assert int(m.encoder[0].bn.num_batches_tracked) == 1


def test_incremental_and_prefix_loops_give_identical_spikes(tiny_cfg):
    m = active(tiny_cfg)
    x = images(6, tiny_cfg, seed=9)
    for what in ("sample", "reconstruct"):
        res = {}
        for loop in ("incremental", "prefix"):
            m.set_loop(loop)
            if what == "sample":
                res[loop] = m.sample(6, seed=11, return_latents=True)
            else:
                o = m(x, generator=torch.Generator().manual_seed(5))
                res[loop] = (o.x_recon, o.z, o.q_out)
        assert all(torch.equal(a, b) for a, b in zip(res["incremental"], res["prefix"])), what
        assert 0.05 < res["prefix"][1].mean() < 0.95, what


def _alive(cfg, seed=0):
    from conftest import make_alive
    torch.manual_seed(seed)
    m = make_alive(FSVAE(cfg), images(16, cfg, seed=seed + 100))
    # the test model's output depends on z: otherwise image comparisons below prove nothing
    z = m.sample(4, seed=0, return_latents=True)[1]
    assert (m.decode(z) - m.decode(torch.zeros_like(z))).abs().max() > 0.5
    return m


@pytest.mark.parametrize("arch", ["fsvae", "ann"])
def test_image_i_depends_only_on_seed_and_i(tiny_cfg, arch):
    from fsvae_sj.seeding import sample_generators
    if arch == "fsvae":
        m = _alive(tiny_cfg)
    else:
        torch.manual_seed(0)
        m = ANNVAE(ANNVAEConfig(in_channels=1, image_size=8, hidden_dims=(4, 8), latent_dim=6)).eval()
    one, z1 = m.sample(1, seed=7, return_latents=True)
    many, z8 = m.sample(8, seed=7, return_latents=True)
    tail, zt = m.sample(4, generator=sample_generators(7, 4, start=4), return_latents=True)
    first = (lambda z: z[:, :1]) if arch == "fsvae" else (lambda z: z[:1])
    last = (lambda z: z[:, 4:]) if arch == "fsvae" else (lambda z: z[4:])
    assert torch.equal(z1, first(z8)) and torch.equal(zt, last(z8))   # the draws: exactly
    # the images: up to the conv kernels' batch-size-dependent rounding
    assert torch.allclose(one[0], many[0], atol=1e-5) and torch.allclose(tail, many[4:], atol=1e-5)
    assert torch.equal(many, m.sample(8, generator=sample_generators(7, 8), return_latents=True)[0])
    other, z_other = m.sample(8, seed=8, return_latents=True)
    assert not torch.equal(z_other, z8) and (other - many).abs().max() > 0.1
    assert (many[0] - many[1]).abs().max() > 0.1   # samples of one call differ from each other
    with pytest.raises(ValueError, match="one per sample"):
        m.sample(3, generator=sample_generators(7, 2))
    with pytest.raises(ValueError, match="either generator or seed"):
        m.sample(3, seed=1, generator=torch.Generator())


def test_reconstruction_depends_on_the_input_not_on_the_batch(tiny_cfg):
    m = _alive(tiny_cfg)
    x = images(6, tiny_cfg, seed=3)
    full = m.reconstruct(x, seed=0)
    assert torch.allclose(m.reconstruct(x[:2], seed=0), full[:2], atol=1e-5)
    assert (full[0] - full[1]).abs().max() > 0.1
    assert (m.reconstruct(x.flip(0), seed=0) - full.flip(0)).abs().max() > 0.1   # draws follow the position


def test_bad_input_messages(tiny_cfg):
    m = FSVAE(tiny_cfg).eval()
    with pytest.raises(ValueError, match=r"expected images of shape \[N, 1, 8, 8\], got \(2, 3, 8, 8\)"):
        m.encode(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\[N, 1, 8, 8\]"):
        m.encode(torch.zeros(2, 1, 16, 16))
    with pytest.raises(ValueError, match="only 0 and 1"):
        m.decode(torch.full((4, 2, 6), 0.5))
    with pytest.raises(ValueError, match=r"\[T=4, N, 6\]"):
        m.decode(torch.zeros(3, 2, 6))
    with pytest.raises(ValueError, match="n must be >= 1"):
        m.sample(0)
    with pytest.raises(ConfigError, match="n_steps"):
        FSVAEConfig(n_steps=0)
    with pytest.raises(ConfigError, match="k must be"):
        FSVAEConfig(k=0)
    with pytest.raises(ConfigError, match="image_size 28"):
        FSVAEConfig(image_size=28)
    with pytest.raises(ConfigError, match="unknown field"):
        FSVAEConfig.from_dict({"latent": 3})
    with pytest.raises(RuntimeError, match="eval"):
        FSVAE(tiny_cfg).train().sample(2)


def test_any_channel_count_and_t1():
    cfg = FSVAEConfig(in_channels=3, image_size=8, hidden_dims=(4, 4), latent_dim=4, k=2, n_steps=1)
    m = FSVAE(cfg)
    out = m(torch.zeros(2, 3, 8, 8))
    assert out.x_recon.shape == (2, 3, 8, 8) and out.z.shape == (1, 2, 4)
    assert m.eval().sample(2).shape == (2, 3, 8, 8)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_config_round_trip(tmp_path, suffix):
    cfg = FSVAEConfig.large(surrogate="paper", surrogate_a=0.3)
    cfg.save(tmp_path / f"c{suffix}")
    assert FSVAEConfig.load(tmp_path / f"c{suffix}") == cfg
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot parse"):
        FSVAEConfig.load(tmp_path / "bad.json")


def test_save_load_round_trip_and_corrupt_file(tmp_path, tiny_cfg):
    m = active(tiny_cfg)
    digest = save_model(m, tmp_path / "m.safetensors")
    assert len(digest) == 64
    m2 = zoo.load(tmp_path / "m.safetensors")
    assert m2.config == m.config
    a, b = m.state_dict(), m2.state_dict()   # every weight and tdBN statistic, bit for bit
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    assert any(k.endswith("running_var") for k in a)
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        zoo.load(tmp_path / "cut.safetensors")
    with pytest.raises(zoo.ZooError, match="no file at"):
        zoo.load(tmp_path / "missing.safetensors")


def test_load_model_is_a_deprecated_spelling_of_zoo_load(tmp_path, tiny_cfg):
    from fsvae_sj import load_model
    save_model(active(tiny_cfg), tmp_path / "m.safetensors")
    with pytest.warns(DeprecationWarning, match=r"zoo\.load"):
        old = load_model(tmp_path / "m.safetensors")
    new = zoo.load(tmp_path / "m.safetensors")
    assert old.weights_source == new.weights_source and all(
        torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values()))


def test_ann_vae_baseline(tmp_path):
    cfg = ANNVAEConfig()
    m = ANNVAE(cfg)
    x = torch.zeros(2, 1, 32, 32)
    recon, mu, lv = m(x, generator=torch.Generator().manual_seed(0))
    assert recon.shape == x.shape and mu.shape == (2, 128)
    m.eval()
    save_model(m, tmp_path / "ann.safetensors")
    m2 = zoo.load(tmp_path / "ann.safetensors")
    assert isinstance(m2, ANNVAE)
    a, b = m.state_dict(), m2.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
