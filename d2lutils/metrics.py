"""Running sums for training curves (d2l's ``Accumulator``, which ``train_ch5`` uses too), and
the confusion counts of a test pass."""

from __future__ import annotations

from typing import Any

import torch

from . import distributed as dist
from .errors import ArgumentError, check_int

__all__ = ["Accumulator", "confusion_counts"]


class Accumulator:
    """Sums over ``n`` variables (d2l's ``Accumulator``).

    Without ``device`` it is d2l's: every value added is turned into a Python float.
    With ``device``, tensors stay tensors on that device, so adding a batch's loss
    does not wait for the GPU; :meth:`reduced` then reads the sums once, summed over
    every process of a ``torchrun`` job.
    """

    def __init__(self, n: int, device: torch.device | None = None):
        check_int("n", n, 1)
        self.device = device
        self.data: list[Any] = [0.0] * n if device is None else [0] * n

    def add(self, *args) -> None:
        if self.device is None:
            self.data = [a + float(b) for a, b in zip(self.data, args)]
        else:
            self.data = [a + b for a, b in zip(self.data, args)]

    def reset(self) -> None:
        self.data = [0.0 if self.device is None else 0] * len(self.data)

    def __getitem__(self, idx):
        return self.data[idx]

    def local(self) -> list[float]:
        """This process's sums as Python numbers."""
        return [float(v) for v in self.data]

    def reduced(self) -> list[float]:
        """The sums over all processes (this process's alone outside ``torchrun``)."""
        return dist.all_sum(self.local(), self.device or torch.device("cpu")).tolist()


def confusion_counts(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``classes x classes`` counts of one batch: row = the true class ``y``, column = the
    class the ``batch x classes`` scores ``y_hat`` put first. Its trace is the number right.

    Raises:
        ArgumentError: a label is not one of the ``classes`` the scores cover.
    """
    c = y_hat.shape[1]
    pairs = torch.bincount(y * c + y_hat.argmax(dim=1), minlength=c * c)
    if pairs.numel() != c * c:   # a label >= c: bincount grew past the table
        raise ArgumentError(f"y holds the label {int(y.max())}, but y_hat scores {c} classes (labels 0..{c - 1}): "
                            "the data's labels and the net's num_classes disagree")
    return pairs.view(c, c)
