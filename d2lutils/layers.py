"""Small layers: the two the seeds import from d2lzh_pytorch, and a faster LRN.

``FlattenLayer`` and ``GlobalAvgPool2d`` are one-liners in today's PyTorch
(``nn.Flatten``, ``nn.AdaptiveAvgPool2d(1)``); they stay so that seed code runs
unchanged, and so the chapters can show what they do. ``LocalResponseNorm`` computes
what ``nn.LocalResponseNorm`` does, with a hand-written backward pass.
"""

from __future__ import annotations

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from .errors import ArgumentError, check_int, check_number

__all__ = ["FlattenLayer", "GlobalAvgPool2d", "LocalResponseNorm"]


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


class _LRNFunction(torch.autograd.Function):
    """``y = x * d^(-beta)`` with ``d = k + (alpha / n) * (window sum of x^2)``.

    Backward, from the chain rule: ``dx_i = g_i d_i^(-beta)
    - (2 alpha beta / n) x_i * sum_{j: i in window(j)} g_j x_j d_j^(-beta - 1)``.
    It keeps three tensors (x, d, d^(-beta)) where autograd through
    ``nn.LocalResponseNorm``'s pad/pool/pow chain keeps more, and makes fewer passes.
    """

    @staticmethod
    def forward(ctx, x, size: int, alpha: float, beta: float, k: float):
        before, after = size // 2, (size - 1) // 2   # as nn.LocalResponseNorm pads
        d = _channel_window_sum(x * x, before, after).mul_(alpha / size).add_(k)
        w = d.pow(-beta)
        ctx.save_for_backward(x, d, w)
        ctx.params = (size, alpha, beta, before, after)
        return x * w

    @staticmethod
    def backward(ctx, g):
        x, d, w = ctx.saved_tensors
        size, alpha, beta, before, after = ctx.params
        t = (g * x).mul_(w).div_(d)
        s = _channel_window_sum(t, after, before)     # the window seen from the other side
        grad = (g * w).sub_(s.mul_(x), alpha=2 * alpha * beta / size)
        return grad, None, None, None, None


class LocalResponseNorm(nn.Module):
    """Local response normalisation across channels, equal to ``nn.LocalResponseNorm``.

    ``y_c = x_c / (k + alpha / n * sum of x_{c'}^2 over the n channels around c)^beta``
    (note PyTorch's ``alpha / n``: the AlexNet paper's alpha = 1e-4 is ``alpha=5e-4``
    here for n = 5). Same arguments and results as PyTorch's layer, forward and
    backward (tested); faster on a CPU because the window sum is a few shifted adds
    and the backward pass is written out, not taped through pad, pool and pow.
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        check_int("size", size, 1)                    # channels in the window
        for name, v in (("alpha", alpha), ("beta", beta), ("k", k)):
            check_number(name, v)                     # finite: nan or inf would make every output nan
        self.size, self.alpha, self.beta, self.k = size, float(alpha), float(beta), float(k)

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
            return _LRNFunction.apply(x.float(), self.size, self.alpha, self.beta, self.k).to(x.dtype)
        return _LRNFunction.apply(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
