"""Which input sizes a net takes, computed from its own layers.

A convolution or pooling window of size ``k``, stride ``s`` and padding ``p`` turns a
side of ``n`` pixels into ``floor((n + 2p - d(k-1) - 1) / s) + 1`` (``d`` the
dilation). Walking a net's layers with that formula gives the side of its last
feature map for any input, so:

* a net with a flattened, fully connected head (LeNet, AlexNet, ZFNet, VGG) takes
  exactly the inputs whose last map has the size the head was built for
  (:func:`input_sizes`; AlexNet built for 224 px takes 195 to 226);
* a net that ends in global average pooling (NiN, GoogLeNet) takes any input large
  enough that no map shrinks to nothing (:func:`min_input_size`).

:func:`check_input` turns a wrong input into an :class:`~d2lutils.errors.InputSizeError` that says what
the net takes, instead of a matrix-shape error from deep inside it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .errors import ArgumentError, InputSizeError, check_int

__all__ = ["output_side", "input_sizes", "min_input_size", "check_input", "with_input_check", "any_size_from"]

_STOP = (nn.Flatten, nn.Linear)


def _pair(v) -> int:
    return v[0] if isinstance(v, (tuple, list)) else v


def output_side(net: nn.Module, n: int) -> int:
    """Side of the last feature map for an ``n x n`` input (0 if a map vanishes).

    Layers are taken in the order they were defined, up to the first ``Flatten`` or
    ``Linear``; layers that keep the size (activations, normalisation, 1x1 or padded
    convolutions) leave it unchanged. Blocks whose parallel paths each keep the size
    (GoogLeNet's Inception) are handled by the same walk.
    """
    check_int("n", n, 1)
    side = n
    for m in net.modules():
        if isinstance(m, _STOP):
            break
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k, s, p = _pair(m.kernel_size), _pair(m.stride), _pair(m.padding)
            d = _pair(getattr(m, "dilation", 1))
            span = side + 2 * p - d * (k - 1) - 1
            if span < 0:
                return 0
            side = (math.ceil(span / s) if getattr(m, "ceil_mode", False) else span // s) + 1
        elif isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            side = _pair(m.output_size) or side
        elif type(m).__name__ == "GlobalAvgPool2d":
            side = 1
        if side < 1:
            return 0
    return side


def input_sizes(net: nn.Module, image_size: int, largest: int = 2048) -> range:
    """The input sides that give the same last feature map as ``image_size``: what a
    net whose head was sized for ``image_size`` accepts."""
    check_int("largest", largest, 1)
    check_int("image_size", image_size, 1, largest)
    target = output_side(net, image_size)
    if target < 1:
        raise ArgumentError(f"image_size={image_size} is too small for this net: a feature map "
                            "shrinks to nothing")
    lo = hi = image_size
    while lo > 1 and output_side(net, lo - 1) == target:
        lo -= 1
    while hi < largest and output_side(net, hi + 1) == target:
        hi += 1
    return range(lo, hi + 1)


def min_input_size(net: nn.Module, largest: int = 2048) -> int:
    """The smallest input side for which no feature map shrinks to nothing."""
    check_int("largest", largest, 1)
    for n in range(1, largest + 1):
        if output_side(net, n) >= 1:
            return n
    raise ArgumentError(f"no input up to {largest} px fits this net")


def _describe(sizes: range) -> str:
    if sizes.stop > 100_000:
        return f"at least {sizes.start} px"
    return f"{sizes.start} to {sizes.stop - 1} px" if len(sizes) > 1 else f"{sizes.start} px"


def check_input(X: torch.Tensor, sizes: range, in_channels: int, name: str) -> None:
    """Raise :class:`~d2lutils.errors.InputSizeError` unless ``X`` is ``N x in_channels x H x W`` with ``H``
    and ``W`` in ``sizes``."""
    if not isinstance(X, torch.Tensor) or X.dim() != 4:
        shape = tuple(X.shape) if isinstance(X, torch.Tensor) else type(X).__name__
        raise InputSizeError(f"{name} takes a batch N x {in_channels} x H x W; got {shape}")
    _, c, h, w = X.shape
    if c != in_channels or h not in sizes or w not in sizes:
        raise InputSizeError(f"{name} takes N x {in_channels} x H x W with H and W {_describe(sizes)}; "
                             f"got {tuple(X.shape)}")


def with_input_check(net: nn.Module, in_channels: int, sizes: range, name: str) -> nn.Module:
    """Make ``net`` check its input with :func:`check_input` before every forward pass,
    and remember what it takes in ``net.input_sizes``. Returns ``net``."""
    net.input_sizes, net.in_channels = sizes, in_channels
    net.register_forward_pre_hook(lambda _m, args: check_input(args[0], sizes, in_channels, name))
    return net


def any_size_from(n: int) -> range:
    """Every side from ``n`` up (for nets with global pooling)."""
    return range(n, 1 << 30)
