"""The LIF node and the rectangle surrogate against the authors' equations."""
import pytest
import torch

from fsvae_sj.spiking import sj
from fsvae_sj.spiking.compiled import can_compile
from fsvae_sj.spiking.lif import LIF
from fsvae_sj.spiking.surrogate import Rect, RectSpike


class _AuthorsSpike(torch.autograd.Function):
    """The authors' SpikeAct written out: u > V_th forward, 1[|u| < 0.5] backward."""

    @staticmethod
    def forward(ctx, u):
        ctx.save_for_backward(u)
        return (u > 0.2).float()

    @staticmethod
    def backward(ctx, g):
        (u,) = ctx.saved_tensors
        return g * (u.abs() < 0.5).float()


def authors_lif(x):
    """The authors' loop (time-first here): u = 0.25 * u * (1 - o) + x."""
    u = torch.zeros_like(x[0])
    o = torch.zeros_like(x[0])
    out = []
    for x_t in x:
        u = 0.25 * u * (1 - o) + x_t
        o = _AuthorsSpike.apply(u)
        out.append(o)
    return torch.stack(out)


def inputs(seed=0, shape=(16, 6, 40)):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * 0.3).requires_grad_()


@pytest.mark.parametrize("impl", ["exact", "spikingjelly"])
def test_spikes_and_gradients_match_authors_equations(impl):
    x = inputs()
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    ref = authors_lif(x)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), x)
    ours = LIF(impl=impl)(x)
    (g_ours,) = torch.autograd.grad((ours * w).sum(), x)
    assert torch.equal(ours, ref)
    assert 0.05 < ref.mean() < 0.5  # the check exercises both firing and silence
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-5)


def authors_charges(x):
    """The authors' membrane u_t = 0.25 * u_{t-1} * (1 - o_{t-1}) + x_t of every step, before
    the reset (``[T, ...]``), in float32."""
    u = torch.zeros_like(x[0])
    o = torch.zeros_like(x[0])
    us = []
    for x_t in x:
        u = 0.25 * u * (1 - o) + x_t
        o = (u > 0.2).float()
        us.append(u)
    return torch.stack(us)


def authors_membrane(x):
    """The authors' membrane after the last step (reset applied), in float32."""
    u = authors_charges(x)[-1]
    return u * (1 - (u > 0.2).float())


def test_exact_charge_is_bitwise_the_authors():
    # 0.25 * u is exact in float32; SpikingJelly's v - v / tau (tau = 4/3) is not. On random
    # inputs the two charge formulas give different floats for many elements, so comparing
    # bit for bit tells them apart; ours must match the authors' on every element.
    x = torch.randn(16, 64, 512, generator=torch.Generator().manual_seed(0)) * 0.15 + 0.08
    lif = LIF()
    spikes = lif(x)
    assert torch.equal(spikes, authors_lif(x))
    assert torch.equal(lif.v, authors_membrane(x))
    u, other = torch.zeros_like(x[0]), torch.zeros_like(x[0])
    for x_t in x:   # the charge written SpikingJelly's way, same reset
        h = u - u / (1.0 / 0.75) + x_t
        u = h * (h <= 0.2).float()
        other = u
    differs = float((other != authors_membrane(x)).float().mean())
    assert differs > 0.05, differs   # the input exercises the rounding difference


def test_store_v_seq_keeps_the_authors_charged_membrane():
    x = torch.randn(16, 8, 96, generator=torch.Generator().manual_seed(5)) * 0.15 + 0.08
    lif = LIF(store_v_seq=True)
    spikes = lif(x)
    assert 0.05 < float(spikes.mean()) < 0.5
    assert lif.v_seq.shape == x.shape and torch.equal(lif.v_seq, authors_charges(x))
    assert torch.equal(lif.v, authors_membrane(x))
    lif.reset()
    assert lif.v_seq is None
    off = LIF()
    off(x)
    assert getattr(off, "v_seq", None) is None  # off by default: nothing kept


def test_store_v_seq_on_spikingjelly_route_is_its_own():
    """SpikingJelly's store_v_seq on its route: the membrane after the reset (its convention)."""
    x = inputs().detach()
    lif = LIF(impl="spikingjelly", store_v_seq=True)
    spikes = lif(x)
    h = authors_charges(x)
    assert lif.v_seq.shape == x.shape
    torch.testing.assert_close(lif.v_seq, h * (1 - spikes), rtol=0, atol=1e-6)


def test_fires_strictly_above_threshold():
    x = torch.tensor([[0.2], [0.2 + 1e-6]], dtype=torch.float32).view(2, 1, 1)
    assert LIF()(x).flatten().tolist() == [0.0, 1.0]


def test_hard_reset_to_zero_and_decay():
    x = torch.tensor([0.3, 0.1, 0.1, 0.1]).view(4, 1)
    lif = LIF()
    s = lif(x)
    # fires at t0 (0.3), resets; then 0.1, 0.125, 0.13125 never crosses 0.2
    assert s.flatten().tolist() == [1.0, 0.0, 0.0, 0.0]
    assert lif.v.item() == pytest.approx(0.25 * (0.25 * 0.1 + 0.1) + 0.1)


def test_state_carries_across_calls_like_one_sequence():
    x = inputs(shape=(16, 3, 20)).detach()
    whole = LIF()(x)
    lif = LIF()
    steps = torch.cat([lif(x[t:t + 1]) for t in range(16)])
    assert torch.equal(whole, steps)


@pytest.mark.parametrize("preset,a", [("code", None), ("paper", None), ("paper", 0.5), ("code", 0.4)])
def test_rect_surrogate_gradient_formula(preset, a):
    v_th = 0.2
    sg = Rect.preset(preset, v_th, a)
    width = sg.a
    assert width == (a or {"code": 1.0, "paper": 0.2}[preset]) and sg.alpha == 1.0 / width   # SpikingJelly's sharpness
    centre = 0.0 if preset == "code" else v_th
    u = torch.linspace(-1.5, 1.5, 3001)
    x = (u - v_th).requires_grad_()
    (g,) = torch.autograd.grad(sg(x).sum(), x)
    expected = ((u - centre).abs() < width / 2).float() / width
    # Points within float rounding of the rectangle's edges may fall either side.
    edge = ((u - centre).abs() - width / 2).abs() < 1e-5
    assert torch.equal(g[~edge], expected[~edge])
    assert torch.equal(sg(x.detach()), (x.detach() > 0).float())


def test_paper_preset_changes_lif_gradient_not_spikes():
    x = inputs()
    code = LIF()(x)
    paper = LIF(surrogate=Rect.preset("paper", 0.2))(x)
    assert torch.equal(code, paper)
    (gc,) = torch.autograd.grad(code.sum(), x)
    (gp,) = torch.autograd.grad(paper.sum(), x)
    assert not torch.allclose(gc, gp)


def test_bad_arguments():
    """Refused on purpose: FsvaeError subclasses (so the commands print them as one line), still ValueErrors."""
    from fsvae_sj.errors import ConfigError, InputError
    with pytest.raises(ConfigError, match="width a"):
        Rect(a=-1)
    with pytest.raises(ConfigError, match="decay"):
        LIF(decay=1.0)
    lif = LIF()
    lif(torch.zeros(2, 3, 4))
    with pytest.raises(InputError, match="reset_net"):
        lif(torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="width a"):
        Rect(a=0)
    with pytest.raises(ValueError, match="preset"):
        Rect.preset("nope", 0.2)
    with pytest.raises(ValueError, match="impl"):
        LIF(impl="cuda")
    with pytest.raises(ValueError, match="route 'cupy'"):
        LIF(route="cupy")
    with pytest.raises(ValueError, match="impl='spikingjelly' is route='spikingjelly'"):
        LIF(impl="spikingjelly", route="eager")


def test_one_visible_route():
    """``route`` among ``supported_routes``; the config's ``lif_impl`` spelling maps onto it."""
    from fsvae_sj.spiking.lif import use_fused_kernels
    assert LIF().supported_routes == ("eager", "compiled", "spikingjelly")
    assert [(n.route, n.impl) for n in (LIF(), LIF(impl="spikingjelly"), LIF(route="compiled"))] == \
        [("eager", "exact"), ("spikingjelly", "spikingjelly"), ("compiled", "exact")]
    lif = LIF()
    with pytest.raises(ValueError, match="route"):
        lif.route = "fused"
    assert lif.route == "eager" and "route=eager" in repr(lif)
    net = torch.nn.Sequential(LIF(), LIF(impl="spikingjelly"))
    assert [m.route for m in use_fused_kernels(net, can_compile(torch.device("cpu")))] == \
        ["compiled" if can_compile(torch.device("cpu")) else "eager", "spikingjelly"]


@pytest.mark.skipif(sj.LEGACY, reason="FlexSN exists only in SpikingJelly 2")
def test_flexsn_core_matches_exact_path():
    """SpikingJelly 2's fused route for the custom surrogate (Triton on CUDA); on the
    CPU FlexSN runs the same core in a torch loop, which is what is checked here."""
    x = inputs()
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    exact = LIF()
    flex = LIF(impl="spikingjelly")
    s_exact = exact(x)
    s_flex = flex._flexsn_forward(x)
    assert torch.equal(s_exact, s_flex)
    torch.testing.assert_close(flex.v, exact.v)
    (g1,) = torch.autograd.grad((s_exact * w).sum(), x)
    (g2,) = torch.autograd.grad((s_flex * w).sum(), x)
    torch.testing.assert_close(g1, g2, rtol=0, atol=1e-5)


@pytest.mark.skipif(sj.LEGACY, reason="FlexSN exists only in SpikingJelly 2")
def test_flexsn_route_stores_v_seq():
    x = inputs().detach()
    flex = LIF(impl="spikingjelly", store_v_seq=True)
    spikes = flex._flexsn_forward(x)
    assert flex.v_seq.shape == x.shape and torch.equal(flex.v_seq[-1], flex.v)
    torch.testing.assert_close(flex.v_seq, authors_charges(x) * (1 - spikes), rtol=0, atol=1e-6)


def _run_cuda_code(code: str, over_th: torch.Tensor) -> torch.Tensor:
    """Evaluate one line of the CuPy kernel's surrogate code with Python stand-ins for its
    operators (float: fabsf and the ternary; half2: the __h*2 intrinsics), elementwise."""
    import re
    lhs, rhs = code.rstrip(";").split(" = ", 1)
    rhs = re.sub(r"(\d)f\b", r"\1", rhs)   # 0.5f -> 0.5
    m = re.fullmatch(r"\((.*)\) \? (\S+) : (\S+)", rhs)
    if m:
        rhs = f"torch.where({m[1]}, torch.tensor({m[2]}), torch.tensor({m[3]}))"
    ops = {"torch": torch, "fabsf": torch.abs, "__habs2": torch.abs, "__float2half2_rn": lambda c: c,
           "__hsub2": lambda a, b: a - b, "__hmul2": lambda a, b: a * b,
           "__hlt2": lambda a, b: (a < b).float(), "__hgt2": lambda a, b: (a > b).float(), "over_th": over_th}
    return eval(rhs, ops)


@pytest.mark.parametrize("preset,a", [("code", None), ("paper", 0.5), ("paper", 0.2)])
@pytest.mark.parametrize("dtype", ["float", "half2"])
def test_cupy_surrogate_code_computes_the_cpu_gradient(preset, a, dtype):
    """The backward the CuPy kernel runs (text that only a GPU compiles) gives, point by point,
    the gradient the CPU path's autograd gives, on both sides of every window edge."""
    sg = Rect.preset(preset, 0.2, a)
    over_th = torch.linspace(-1.5, 1.5, 3001)
    x = over_th.clone().requires_grad_()
    sg(x).sum().backward()
    got = _run_cuda_code(sg.cuda_codes("grad_s_to_h", "over_th", dtype), over_th)
    assert torch.equal(got.float(), x.grad), dtype
    assert 0 < int((x.grad > 0).sum()) < len(over_th)   # the window is inside the range


@pytest.mark.skipif(not sj.LEGACY, reason="the CuPy kernel generator is in the legacy SpikingJelly")
def test_legacy_cupy_kernel_is_built_from_our_surrogate_code():
    from spikingjelly.activation_based.auto_cuda import neuron_kernel as nk
    sg = Rect.preset("code", 0.2)
    for dtype in ("float", "half2"):
        kernel = nk.LIFNodeBPTTKernel(decay_input=False, hard_reset=True, dtype=dtype,
                                      surrogate_function=sg.cuda_codes, detach_reset=False)
        assert sg.cuda_codes("grad_s_to_h", "over_th", dtype).split("=")[1].strip() in kernel.full_codes


def test_rect_spike_is_heaviside():
    x = torch.tensor([-1.0, 0.0, 1e-7, 1.0])
    assert RectSpike.apply(x, 1.0, 0.0).tolist() == [0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("preset,a", [("code", None), ("paper", 0.5)])
def test_surrogate_hooks_primitive_is_the_spiking_backward(preset, a):
    """SpikingJelly's hooks: ``forward`` is ``spiking_function`` (or ``primitive_function`` when
    not spiking) with the surrogate's parameters, and the primitive's derivative is the rectangle
    (SpikingJelly's ``check_manual_grad`` idea)."""
    sg = Rect.preset(preset, 0.2, a)
    x = torch.linspace(-1.5, 1.5, 3001).requires_grad_()
    (g_spike,) = torch.autograd.grad(Rect.spiking_function(x, *sg.params()).sum(), x)
    (g_prim,) = torch.autograd.grad(Rect.primitive_function(x, *sg.params()).sum(), x)
    alpha, offset = sg.params()
    edge = (((x.detach() - offset).abs() - alpha / 2).abs() < 1e-5)
    assert torch.equal(g_spike[~edge], g_prim[~edge]) and g_spike.sum() > 0
    assert torch.equal(sg(x), Rect.spiking_function(x, *sg.params()))
    sg.set_spiking_mode(False)
    assert torch.equal(sg(x), Rect.primitive_function(x, *sg.params()))


@pytest.mark.parametrize("layout", ["flat", "channels_last"])
def test_fused_kernels_equal_the_eager_ones(layout):
    """torch.compile'd LIF: spikes, membrane state and carried state bit for bit; gradients to rounding."""
    from fsvae_sj.spiking.lif import use_fused_kernels
    g = torch.Generator().manual_seed(3)
    if layout == "flat":
        x = torch.randn(16, 5, 70, generator=g) * 0.3
    else:  # as a channels-last conv output: [T, N, C, H, W] with N*C*H*W dense in NHWC order
        x = (torch.randn(16 * 3, 4, 5, 6, generator=g) * 0.3).contiguous(memory_format=torch.channels_last)
        x = x.view(16, 3, 4, 5, 6)
    runs = []
    for fused in (False, True):
        lif = use_fused_kernels(LIF(surrogate=Rect.preset("paper", 0.2, 0.5), store_v_seq=True), fused)
        assert lif.route == ("compiled" if fused else "eager")
        xi = x.clone().requires_grad_(True)
        first = lif(xi[:10])
        second = lif(xi[10:])  # the membrane carried across calls
        spikes = torch.cat([first, second])
        w = torch.randn(spikes.shape, generator=torch.Generator().manual_seed(4))
        ((spikes * w).sum() + lif.v.square().sum()).backward()
        runs.append((spikes.detach(), lif.v.detach(), xi.grad, lif.v_seq))
    (s0, v0, g0, h0), (s1, v1, g1, h1) = runs
    assert 0.05 < float(s0.mean()) < 0.5  # the inputs make neurons fire and stay silent
    assert torch.equal(s0, s1) and torch.equal(v0, v1) and s1.shape == x.shape
    assert torch.equal(h0, h1) and h1.shape == x[10:].shape  # store_v_seq: the last call's membranes
    assert g0.abs().sum() > 0 and torch.allclose(g0, g1, rtol=1e-6, atol=1e-7)
