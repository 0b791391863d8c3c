"""GPU paths (run by benchmarks/gpu.sh on a CUDA machine; skipped elsewhere)."""
import pytest
import torch

from fsvae_sj import FSVAE, FSVAEConfig
from fsvae_sj.spiking import sj
from fsvae_sj.spiking.lif import LIF

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_fused_spikingjelly_path_matches_exact_on_cuda():
    g = torch.Generator(device="cuda").manual_seed(0)
    x = (torch.randn(16, 64, 512, generator=g, device="cuda") * 0.3).requires_grad_()
    w = torch.randn(x.shape, generator=g, device="cuda")
    exact, fused = LIF().cuda().train(), LIF(impl="spikingjelly").cuda().train()
    assert sj.spikingjelly_kernel(x, True) in ("cupy", "flexsn-triton")
    s1, s2 = exact(x), fused(x)
    # fused kernels charge v - v / tau and fire at >=: spikes may differ at the threshold
    assert (s1 != s2).float().mean() < 1e-4
    (g1,) = torch.autograd.grad((s1 * w).sum(), x)
    (g2,) = torch.autograd.grad((s2 * w).sum(), x)
    # BPTT couples a neuron's steps: compare the gradients of neurons whose spike trains agree
    same = (s1 == s2).all(0)
    assert same.float().mean() > 0.99
    torch.testing.assert_close(g1[:, same], g2[:, same], rtol=1e-4, atol=1e-5)


def test_model_train_step_and_seeded_sampling_on_cuda():
    m = FSVAE(FSVAEConfig(lif_impl="spikingjelly")).cuda()
    x = torch.rand(8, 1, 32, 32, device="cuda") * 2 - 1
    out = m(x, 0.1, torch.Generator(device="cuda").manual_seed(0))
    out.x_recon.mean().backward()
    m.eval()
    a, za = m.sample(4, seed=0, return_latents=True)
    b, zb = m.sample(4, seed=0, return_latents=True)
    assert torch.equal(a, b) and torch.equal(za, zb)


def test_compiled_kernels_on_cuda_agree_with_the_eager_modules():
    """The training default (LIF and tdBN + LIF on torch.compile'd kernels: Triton on CUDA)
    against the eager modules, same weights and batch: losses to float rounding, and nearly all
    latent spikes of a seeded sample equal (Triton may round a division differently)."""
    from conftest import make_alive
    from fsvae_sj.models.losses import fsvae_loss
    from fsvae_sj.spiking.lif import use_fused_kernels

    torch.manual_seed(0)
    x = torch.rand(16, 1, 32, 32, device="cuda") * 2 - 1
    m = make_alive(FSVAE(FSVAEConfig()).cuda(), x)
    losses, zs = [], []
    for fused in (False, True):
        use_fused_kernels(m, fused).train()
        state = {k: v.clone() for k, v in m.state_dict().items()}
        out = m(x, 0.0, torch.Generator(device="cuda").manual_seed(1))
        loss = fsvae_loss(x, out.x_recon, out.q_out, out.p_out)["loss"]
        loss.backward()
        losses.append(float(loss))
        m.load_state_dict(state)
        m.eval()
        with torch.no_grad():
            zs.append(m.sample(8, seed=0, return_latents=True)[1])
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)
    assert (zs[0] == zs[1]).float().mean() > 0.99
