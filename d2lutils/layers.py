"""Small layers the seeds import from d2lzh_pytorch.

Both are one-liners in today's PyTorch (``nn.Flatten``, ``nn.AdaptiveAvgPool2d(1)``);
they stay so that seed code runs unchanged, and so the chapters can show what they do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FlattenLayer", "GlobalAvgPool2d"]


class FlattenLayer(nn.Module):
    """``[N, *] -> [N, prod(*)]``; the same as ``nn.Flatten()``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


class GlobalAvgPool2d(nn.Module):
    """Average each channel over its whole map: ``[N, C, H, W] -> [N, C, 1, 1]``.

    The seeds write ``F.avg_pool2d(x, kernel_size=x.size()[2:])``; the adaptive
    form below gives the same numbers and also traces cleanly for ``torch.compile``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, 1)
