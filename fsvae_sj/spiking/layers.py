"""Time-first building blocks: a weight layer applied at every step, tdBN, LIF."""
from __future__ import annotations

import contextlib
import contextvars

import torch
import torch.nn.functional as F
from torch import nn

from . import fused_block
from .lif import LIF, lif_from_config, lif_step_
from .tdbn import TdBN


# A context variable, not a module global: a block's choice stays in its own thread or task.
_conv_format = contextvars.ContextVar("fsvae_sj_conv_format", default=torch.channels_last)


@contextlib.contextmanager
def conv_memory_format(fmt: torch.memory_format):
    """Run convolutions in ``fmt`` inside the block (benchmarks compare the two layouts)."""
    token = _conv_format.set(fmt)
    try:
        yield
    finally:
        _conv_format.reset(token)


def conv_input(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the memory format convolutions run in (channels-last unless a block says otherwise)."""
    return x.contiguous(memory_format=_conv_format.get())


def empty_for_conv(shape, like: torch.Tensor) -> torch.Tensor:
    """An uninitialised ``like``-typed tensor of ``shape`` in the memory format convolutions run in,
    with the format's own strides (a size-1 batch keeps them too: converting a computed tensor
    may leave ambiguous strides, and oneDNN then picks another algorithm, which rounds differently)."""
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=_conv_format.get())


def per_step(layer: nn.Module, x: torch.Tensor, spikes: bool = False) -> torch.Tensor:
    """Apply a stateless layer to every step of ``[T, N, ...]`` by folding T into the batch.

    Images go through convolutions channels-last: on CPU the (transposed)
    convolutions of FSVAE's decoder run 2-3x faster that way, and the
    elementwise tdBN/LIF work that follows does not care about the layout.
    ``spikes``: ``x`` should hold only 0 and 1; the layer then keeps it for backward as bool
    (:class:`_SavedAsBool`), a quarter of the memory of float32 (checked: other values stay float).
    """
    flat = x.flatten(0, 1)
    if flat.dim() == 4:
        flat = conv_input(flat)
    if spikes and torch.is_grad_enabled():
        hooks = _SavedAsBool(flat)
        with torch.autograd.graph.saved_tensors_hooks(hooks.pack, hooks.unpack):
            y = layer(flat)
    else:
        y = layer(flat)
    return y.view(x.shape[0], x.shape[1], *y.shape[1:])


class _SavedAsBool:
    """Saved-tensor hooks that keep one tensor of spikes (exactly 0.0 or 1.0) for backward as
    bool and give it back in its dtype and layout; that tensor holding other values, and every
    other saved tensor (the weights), are kept as they are."""

    def __init__(self, spikes: torch.Tensor):
        self.ptr, self.shape = spikes.data_ptr(), spikes.shape

    def pack(self, t: torch.Tensor):
        if t.data_ptr() == self.ptr and t.shape == self.shape and t.is_floating_point():
            packed = t.to(torch.bool)
            # Checked, not assumed (within the noise of a step's time): a block fed anything
            # but 0/1 (an analog input, spike counts) keeps it in float, its gradients right.
            if torch.equal(packed.to(t.dtype), t):
                return t.dtype, packed
        return None, t

    @staticmethod
    def unpack(packed) -> torch.Tensor:
        dtype, t = packed
        return t if dtype is None else t.to(dtype)


class _ConvTranspose2dFn(torch.autograd.Function):
    """``F.conv_transpose2d`` with the bias gradient taken as ``grad.sum((0, 2, 3))``.

    On the CPU, ``convolution_backward`` of a channels-last transposed convolution spends
    most of its time on the bias gradient (torch 2.14: 0.17 s of 0.20 s for FSVAE's last
    decoder layer at batch 64, where the same sum takes 5 ms). Forward and the input and
    weight gradients are the library's own kernels."""

    @staticmethod
    def forward(ctx, x, weight, bias, conv):
        stride, padding, dilation, _, output_padding, groups = conv
        ctx.save_for_backward(x, weight)
        ctx.conv = conv
        return F.conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups, dilation)

    @staticmethod
    def backward(ctx, grad):
        # convolution_backward and sum are differentiable: create_graph (a gradient penalty) works
        x, weight = ctx.saved_tensors
        need = ctx.needs_input_grad
        grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
            grad, x, weight, None, *ctx.conv, [need[0], need[1], False])
        grad_b = grad.sum((0, 2, 3)) if need[2] else None
        return grad_x, grad_w, grad_b, None


class ConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (same parameters, same outputs) whose backward takes the bias
    gradient as a plain sum (see :class:`_ConvTranspose2dFn`): on the CPU, the backward of
    FSVAE's four decoder layers at batch 64 takes ~0.15 s less."""

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        if output_size is not None or self.padding_mode != "zeros" or x.dim() != 4:
            return super().forward(x, output_size)
        conv = (list(self.stride), list(self.padding), list(self.dilation), True,
                list(self.output_padding), self.groups)
        return _ConvTranspose2dFn.apply(x, self.weight, self.bias, conv)


class SpikingBlock(nn.Module):
    """``layer -> tdBN(alpha) -> LIF`` on a time-first sequence of spikes.

    The input is spikes (0 or 1: every block of FSVAE gets the previous block's spikes or latent
    spikes), which the weight layer keeps for backward as bool (see :func:`per_step`)."""

    def __init__(self, layer: nn.Module, num_features: int, cfg, alpha: float = 1.0):
        super().__init__()
        self.layer = layer
        self.bn = TdBN(num_features, alpha=alpha, v_threshold=cfg.v_threshold)
        self.lif = lif_from_config(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = per_step(self.layer, x, spikes=True)
        # the weight layer's output is this call's own: not the input itself (an identity layer),
        # and not kept by a hook on the layer
        owned = (y.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
                 and not fused_block.hooked(self.layer))
        return self.fire(y, owned=owned)

    def fire(self, y: torch.Tensor, owned: bool = False) -> torch.Tensor:
        """tdBN then LIF on the weighted input ``y [T, N, C, ...]``: spikes of the same shape
        (one compiled pass for convolution blocks on the LIF's "compiled" route, see
        :mod:`fsvae_sj.spiking.fused_block`; step by step in place in eval mode without autograd, see
        :meth:`_fire_inference`). ``owned``: ``y`` belongs to this call (a fresh weight-layer
        output), so the inference path may overwrite it with the spikes."""
        if type(self.lif) is LIF and fused_block.applies(self.bn, self.lif, y):
            return fused_block.tdbn_lif(self.bn, self.lif, y)
        if self._infers(y):
            return self._fire_inference(y, y if owned and y.stride(0) != 0 else None)
        return self.lif(self.bn(y))

    def _infers(self, y: torch.Tensor) -> bool:
        """Whether :meth:`_fire_inference` can stand in for ``self.lif(self.bn(y))``: no autograd,
        tdBN in eval mode, the LIF on the ``"eager"`` route without ``v_seq``, these exact
        classes (subclasses may change the dynamics), no hook observing the modules, and an
        input (and a kept membrane) that the modules would accept (else they raise)."""
        bn, lif = self.bn, self.lif
        return (not torch.is_grad_enabled() and type(bn) is TdBN and not bn.training
                and type(lif) is LIF and lif.route == "eager" and not lif.store_v_seq
                and y.dim() >= 3 and y.shape[2] == bn.num_features
                and (not isinstance(lif.v, torch.Tensor) or lif.v.shape == y.shape[1:])
                and not fused_block.hooked(bn, lif))

    def _fire_inference(self, y: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        """``self.lif(self.bn(y))`` one step at a time, every step normalised and fired in place
        in ``out`` (``y`` itself allowed; a new tensor in the convolutions' layout if None):
        while a step is in cache, and with one buffer for the membrane instead of the modules'
        five full-size temporaries. The same operations on the same values, so the same spikes
        bit for bit (tests/test_inference.py)."""
        bn, lif = self.bn, self.lif
        if out is None:
            out = (empty_for_conv((y.shape[0] * y.shape[1], *y.shape[2:]), y).view(y.shape) if y.dim() == 5
                   else torch.empty(y.shape, dtype=y.dtype, device=y.device))
        v = lif.v.clone() if isinstance(lif.v, torch.Tensor) else torch.full_like(out[0], float(lif.v))
        # one input repeated over T (direct encoding): its normalisation is the same every step
        fixed = None if y.stride(0) else bn.normalise_eval(y[0], out=torch.empty_like(out[0]), channel_dim=1)
        for t in range(y.shape[0]):
            step = fixed if fixed is not None else bn.normalise_eval(y[t], out=out[t], channel_dim=1)
            lif_step_(v, step, out[t], lif.decay, lif.v_threshold)
        lif.v = v
        return out


def conv_block(c_in: int, c_out: int, cfg) -> SpikingBlock:
    return SpikingBlock(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), c_out, cfg)


def deconv_block(c_in: int, c_out: int, cfg) -> SpikingBlock:
    return SpikingBlock(ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1), c_out, cfg)


def linear_block(f_in: int, f_out: int, cfg, alpha: float = 1.0) -> SpikingBlock:
    return SpikingBlock(nn.Linear(f_in, f_out), f_out, cfg, alpha=alpha)
