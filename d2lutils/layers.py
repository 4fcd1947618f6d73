"""Small layers: the two the seeds import from d2lzh_pytorch, and a faster LRN.

``FlattenLayer`` and ``GlobalAvgPool2d`` are one-liners in today's PyTorch
(``nn.Flatten``, ``nn.AdaptiveAvgPool2d(1)``); they stay so that seed code runs
unchanged, and so the chapters can show what they do. ``LocalResponseNorm`` computes
what ``nn.LocalResponseNorm`` does, with a hand-written backward pass.
``with_layer_settings`` runs chosen layers in another memory layout or without oneDNN,
for the per-layer choices that ``benchmarks/layer_profile.py`` measures.
"""

from __future__ import annotations

import contextlib

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from .errors import ArgumentError, check_int, check_number

__all__ = ["FlattenLayer", "GlobalAvgPool2d", "LocalResponseNorm", "Conv2dWithoutOneDNN", "with_layer_settings",
           "onednn_off"]

LRN_IMPLS = ("shifted", "matmul")


def _check_batch(x, layer: str, wanted: str, dims_ok) -> None:
    """Raise :class:`ArgumentError` unless ``x`` is a tensor whose ``dim()`` passes ``dims_ok``.

    Only real tensors are checked: under ``torch.fx`` tracing (``draw_block``) ``x`` is a
    Proxy, whose ``dim()`` cannot be compared, and it must pass through untouched.
    """
    if isinstance(x, torch.Tensor):
        if dims_ok(x.dim()):
            return
        got = f"shape {tuple(x.shape)}"
    elif hasattr(x, "reshape"):      # an fx Proxy, or another tensor-like that torch will judge
        return
    else:
        got = type(x).__name__
    raise ArgumentError(f"{layer} needs {wanted}; got {got}")


class FlattenLayer(nn.Module):
    """``[N, *] -> [N, prod(*)]``; the same as ``nn.Flatten()``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_batch(x, "FlattenLayer", "a tensor with a batch dimension first, [N, ...]", lambda d: d >= 1)
        return x.reshape(x.shape[0], -1)


class GlobalAvgPool2d(nn.Module):
    """Average each channel over its whole map: ``[N, C, H, W] -> [N, C, 1, 1]``.

    The seeds write ``F.avg_pool2d(x, kernel_size=x.size()[2:])``; the adaptive
    form below gives the same numbers and also traces cleanly for ``torch.compile``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_batch(x, "GlobalAvgPool2d", "a batch [N, C, H, W]", lambda d: d == 4)
        return F.adaptive_avg_pool2d(x, 1)


def _channel_window_sum(t: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """``out[:, c] = t[:, c - before] + ... + t[:, c + after]``, zero beyond the edges.

    A few shifted in-place adds: each is one pass over memory in any layout
    (channels-last included), and unlike a difference of cumulative sums it loses no
    precision however many channels there are.
    """
    out = t.clone()
    for o in range(1, before + 1):
        out[:, o:] += t[:, :-o]
    for o in range(1, after + 1):
        out[:, :-o] += t[:, o:]
    return out



_BANDS: dict = {}


def _band(c: int, before: int, after: int, scale: float, dtype, device) -> torch.Tensor:
    """The ``c x c`` matrix ``B`` with ``(t @ B)[..., i] = scale * (t[..., i - before] + ...
    + t[..., i + after])``: a window sum over channels as one matrix product. Cached."""
    key = (c, before, after, scale, dtype, device)
    if key not in _BANDS:
        with torch.inference_mode(False):
            j, i = torch.arange(c)[:, None], torch.arange(c)[None, :]
            band = ((j >= i - before) & (j <= i + after)).to(torch.float64) * scale
            _BANDS[key] = band.to(dtype=dtype, device=device)
    return _BANDS[key]


def _channel_window_sum_matmul(t: torch.Tensor, before: int, after: int, scale: float = 1.0) -> torch.Tensor:
    """``scale`` times :func:`_channel_window_sum`, as one matrix product with a band matrix.

    One pass over memory where the shifted adds make ``before + after + 1``; the product costs
    ``2 C`` FLOPs per value, so it pays for few channels (ZFNet's first LRN has 96). In
    channels-last layout the channels are the rows' last axis and stay so in the result.
    """
    c = t.shape[1]
    band = _band(c, before, after, scale, t.dtype, t.device)
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        n, _, h, w = t.shape
        rows = t.permute(0, 2, 3, 1).reshape(-1, c)         # a view: N*H*W rows of C channels
        return (rows @ band).view(n, h, w, c).permute(0, 3, 1, 2)
    t = t.contiguous()
    return torch.matmul(band.T, t.reshape(t.shape[0], c, -1)).view(t.shape)

class _LRNFunction(torch.autograd.Function):
    """``y = x * d^(-beta)`` with ``d = k + (alpha / n) * (window sum of x^2)``.

    Backward, from the chain rule: ``dx_i = g_i d_i^(-beta)
    - (2 alpha beta / n) x_i * sum_{j: i in window(j)} g_j x_j d_j^(-beta - 1)``.
    It keeps three tensors (x, d, d^(-beta)) where autograd through
    ``nn.LocalResponseNorm``'s pad/pool/pow chain keeps more, and makes fewer passes.
    ``impl`` chooses how the window sums are taken: shifted adds, or a matrix product.
    """

    @staticmethod
    def forward(ctx, x, size: int, alpha: float, beta: float, k: float, impl: str = "shifted"):
        before, after = size // 2, (size - 1) // 2   # as nn.LocalResponseNorm pads
        if impl == "matmul":
            d = _channel_window_sum_matmul(x * x, before, after, alpha / size).add_(k)
        else:
            d = _channel_window_sum(x * x, before, after).mul_(alpha / size).add_(k)
        w = d.pow(-beta)
        ctx.save_for_backward(x, d, w)
        ctx.params = (size, alpha, beta, before, after, impl)
        return x * w

    @staticmethod
    def backward(ctx, g):
        x, d, w = ctx.saved_tensors
        size, alpha, beta, before, after, impl = ctx.params
        t = (g * x).mul_(w).div_(d)
        if impl == "matmul":   # the window seen from the other side
            s = _channel_window_sum_matmul(t, after, before)
        else:
            s = _channel_window_sum(t, after, before)
        grad = (g * w).sub_(s.mul_(x), alpha=2 * alpha * beta / size)
        return grad, None, None, None, None, None


class LocalResponseNorm(nn.Module):
    """Local response normalisation across channels, equal to ``nn.LocalResponseNorm``.

    ``y_c = x_c / (k + alpha / n * sum of x_{c'}^2 over the n channels around c)^beta``
    (note PyTorch's ``alpha / n``: the AlexNet paper's alpha = 1e-4 is ``alpha=5e-4``
    here for n = 5). Same arguments and results as PyTorch's layer, forward and
    backward (tested); faster on a CPU because the window sum is a few shifted adds
    and the backward pass is written out, not taped through pad, pool and pow.

    ``impl="matmul"`` takes each window sum as one matrix product with a band matrix
    instead (one pass over memory, ``2 C`` FLOPs per value): the same function, a candidate
    for layers with few channels that ``benchmarks/layer_profile.py`` measures.
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0,
                 impl: str = "shifted"):
        super().__init__()
        check_int("size", size, 1)                    # channels in the window
        for name, v in (("alpha", alpha), ("beta", beta), ("k", k)):
            check_number(name, v)                     # finite: nan or inf would make every output nan
        if impl not in LRN_IMPLS:
            raise ArgumentError(f"impl must be one of {', '.join(map(repr, LRN_IMPLS))}; got {impl!r}")
        self.size, self.alpha, self.beta, self.k = size, float(alpha), float(beta), float(k)
        self.impl = impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.fx.Proxy):   # traced (d2l.draw_block): PyTorch's own op has the same shape
            return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)
        if not isinstance(x, torch.Tensor):
            raise ArgumentError(f"LocalResponseNorm needs a tensor [N, C, ...]; got {type(x).__name__}")
        if x.dim() < 3:
            raise ArgumentError(f"LocalResponseNorm needs [N, C, ...] input, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ArgumentError(f"LocalResponseNorm needs a floating-point tensor; got {x.dtype} "
                                "(convert it with x.float())")
        if x.dtype in (torch.float16, torch.bfloat16):
            # Squaring in fp16 overflows above 256 (and the output becomes 0): the window
            # sums run in fp32 whatever autocast chose, and the result comes back in x's dtype.
            return _LRNFunction.apply(x.float(), self.size, self.alpha, self.beta, self.k,
                                      self.impl).to(x.dtype)
        return _LRNFunction.apply(x, self.size, self.alpha, self.beta, self.k, self.impl)

    def extra_repr(self) -> str:
        impl = "" if self.impl == "shifted" else f", impl={self.impl!r}"
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}{impl}"


_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


@contextlib.contextmanager
def onednn_off():
    """oneDNN (``torch.backends.mkldnn``) switched off inside the block, and back as it was after
    (``torch.backends.mkldnn.flags`` also resets its other settings, with a warning)."""
    was = torch._C._get_mkldnn_enabled()
    torch._C._set_mkldnn_enabled(False)
    try:
        yield
    finally:
        torch._C._set_mkldnn_enabled(was)


class _ConvWithoutOneDNN(torch.autograd.Function):
    """A convolution whose forward and backward both run with oneDNN switched off (PyTorch's
    own kernels), whatever the rest of the net uses."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        with onednn_off():
            y = torch.ops.aten.convolution(x, weight, bias, stride, padding, dilation, False, [0, 0], groups)
        ctx.save_for_backward(x, weight)
        ctx.conf = (None if bias is None else list(bias.shape), stride, padding, dilation, groups)
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        bias_sizes, stride, padding, dilation, groups = ctx.conf
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], bias_sizes is not None and ctx.needs_input_grad[2]]
        with onednn_off():
            gx, gw, gb = torch.ops.aten.convolution_backward(g, x, weight, bias_sizes, stride, padding,
                                                             dilation, False, [0, 0], groups, mask)
        return gx, gw, gb, None, None, None, None


class Conv2dWithoutOneDNN(nn.Conv2d):
    """``nn.Conv2d`` computed by PyTorch's own kernels, forward and backward, with oneDNN
    switched off for this layer alone (the same function; :func:`with_layer_settings` turns a
    net's convolution into one, keeping its weights and their names)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.fx.Proxy) or self.padding_mode != "zeros" or isinstance(self.padding, str):
            return super().forward(x)
        return _ConvWithoutOneDNN.apply(x, self.weight, self.bias, list(self.stride), list(self.padding),
                                        list(self.dilation), self.groups)


def _layout_hook(memory_format):
    def hook(module, args):
        for p in module.parameters(recurse=False):   # once: after that they stay in this layout
            if p.dim() == 4 and not p.is_contiguous(memory_format=memory_format):
                p.data = p.data.contiguous(memory_format=memory_format)
        if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
            return (args[0].contiguous(memory_format=memory_format), *args[1:])
        return None
    return hook


def with_layer_settings(net: nn.Module, settings: dict) -> nn.Module:
    """``net`` with some layers computed otherwise than the rest of it; returns ``net``.

    ``settings`` maps a layer's name in ``net.named_modules()`` (``"features.0"``) to what
    changes for it: ``{"memory_format": "contiguous"}`` (or ``"channels_last"``) converts
    its input and its 4-D weights to that layout before it runs, whatever
    ``train_ch5(channels_last=...)`` chose for the net; ``{"onednn": False}`` (convolutions
    only) computes it with PyTorch's own kernels. Weights and their names are unchanged, so
    checkpoints still load. ``benchmarks/layer_profile.py`` measures which layers gain.

    Raises:
        ArgumentError: an unknown layer name, setting or value.
    """
    if not isinstance(net, nn.Module):
        raise ArgumentError(f"net must be a torch.nn.Module; got {type(net).__name__}")
    if not isinstance(settings, dict):
        raise ArgumentError(f"settings must be a dict of layer name -> settings; got {settings!r}")
    modules = dict(net.named_modules())
    for name, setting in settings.items():
        if name not in modules:
            raise ArgumentError(f"net has no layer {name!r}; its layers are {', '.join(n for n in modules if n)}")
        if not isinstance(setting, dict) or set(setting) - {"memory_format", "onednn"}:
            raise ArgumentError(f"settings[{name!r}] must be a dict with 'memory_format' and/or 'onednn'; "
                                f"got {setting!r}")
        layer = modules[name]
        fmt = setting.get("memory_format")
        if fmt is not None:
            if fmt not in _FORMATS:
                raise ArgumentError(f"settings[{name!r}]['memory_format'] must be 'contiguous' or "
                                    f"'channels_last'; got {fmt!r}")
            layer.register_forward_pre_hook(_layout_hook(_FORMATS[fmt]))
        if setting.get("onednn", True) is False:
            if type(layer) not in (nn.Conv2d, Conv2dWithoutOneDNN):
                raise ArgumentError(f"settings[{name!r}]['onednn']=False applies to nn.Conv2d layers; "
                                    f"{name!r} is a {type(layer).__name__}")
            layer.__class__ = Conv2dWithoutOneDNN
        elif setting.get("onednn", True) is not True:
            raise ArgumentError(f"settings[{name!r}]['onednn'] must be True or False; got {setting['onednn']!r}")
    return net
