"""d2l-en's names, so code from its PyTorch LeNet and AlexNet chapters runs with only
``from d2l import torch as d2l`` changed to ``import d2lutils as d2l``.

``train_ch6`` is d2l-en's recipe (Xavier initialisation, plain SGD at ``lr``,
cross-entropy) on top of :func:`~d2lutils.train.train_ch5`, so it gets the same
checks, curves and clear errors. The small helpers d2l-en's chapters define or use
(``Accumulator``, ``Timer``, ``accuracy``, ``Animator``, ``size``) are here too. The
PyPI package ``d2l`` itself is not a dependency: it pins an old NumPy.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from .devices import try_gpu
from .errors import ArgumentError, check_int, check_number
from .history import History
from .metrics import Accumulator
from .notebook import in_notebook
from .train import evaluate_accuracy, train_ch5

__all__ = ["train_ch6", "evaluate_accuracy_gpu", "try_all_gpus", "Accumulator", "Timer",
           "accuracy", "Animator", "size"]


def try_all_gpus() -> list[torch.device]:
    """Every CUDA GPU, or ``[cpu]`` when there is none (d2l-en's ``try_all_gpus``)."""
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [torch.device("cuda", i) for i in range(n)] or [torch.device("cpu")]


def evaluate_accuracy_gpu(net: nn.Module, data_iter, device: str | torch.device | None = None) -> float:
    """d2l-en's ``evaluate_accuracy_gpu(net, data_iter, device=None)``: accuracy of ``net``
    on ``data_iter``, on ``device`` (default: where the net's parameters are)."""
    return evaluate_accuracy(net, data_iter, device)


def train_ch6(net: nn.Module, train_iter, test_iter, num_epochs: int, lr: float,
              device: str | torch.device | None = None, **kwargs: Any) -> History:
    """d2l-en's ``train_ch6(net, train_iter, test_iter, num_epochs, lr, device)``.

    Initialises every ``Linear`` and ``Conv2d`` weight with Xavier-uniform, then trains
    with plain SGD at ``lr`` and cross-entropy, as d2l-en does. Extra keyword
    arguments go to :func:`~d2lutils.train.train_ch5` (``checkpoint=``, ``channels_last=``, ...).
    Returns the :class:`~d2lutils.history.History`.
    """
    if not isinstance(net, nn.Module):
        raise ArgumentError(f"net must be a torch.nn.Module; got {type(net).__name__}")
    check_int("num_epochs", num_epochs, 1)
    check_number("lr", lr, positive=True)

    def init_weights(m):
        if type(m) in (nn.Linear, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)

    net.apply(init_weights)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    batch_size = getattr(train_iter, "batch_size", None) or 1   # reported and recorded; the iterator batches
    return train_ch5(net, train_iter, test_iter, batch_size, optimizer,
                     device if device is not None else try_gpu(), num_epochs,
                     loss=nn.CrossEntropyLoss(), **kwargs)


class Timer:
    """Records running times (d2l's ``Timer``): ``start``, ``stop``, ``avg``, ``sum``, ``cumsum``."""

    def __init__(self):
        self.times: list[float] = []
        self.start()

    def start(self) -> None:
        self.tik = time.perf_counter()

    def stop(self) -> float:
        self.times.append(time.perf_counter() - self.tik)
        return self.times[-1]

    def avg(self) -> float:
        return sum(self.times) / len(self.times) if self.times else 0.0

    def sum(self) -> float:
        return sum(self.times)

    def cumsum(self) -> list[float]:
        out, total = [], 0.0
        for t in self.times:
            total += t
            out.append(total)
        return out


def accuracy(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """Number of correct predictions (d2l's ``accuracy``: a count, not a fraction)."""
    if y_hat.dim() > 1 and y_hat.shape[1] > 1:
        y_hat = y_hat.argmax(dim=1)
    return float((y_hat.type(y.dtype) == y).sum())


def size(x: torch.Tensor, *args, **kwargs) -> int:
    """``x.numel()`` (d2l's ``size``)."""
    return x.numel(*args, **kwargs)


class Animator:
    """d2l's ``Animator``: add points to a few lines and redraw them in place.

    ``Animator(xlabel='epoch', xlim=[1, 10], legend=['train loss', 'train acc', 'test acc'])``,
    then ``animator.add(x, (y1, y2, None))``; ``None`` skips a line. In a notebook the
    figure is redrawn in place; elsewhere the points are only kept (``animator.X``,
    ``animator.Y``) and drawn on request with :meth:`draw`.
    """

    def __init__(self, xlabel=None, ylabel=None, legend=None, xlim=None, ylim=None,
                 xscale="linear", yscale="linear", fmts=("-", "m--", "g-.", "r:"),
                 nrows=1, ncols=1, figsize=(3.5, 2.5)):
        self.xlabel, self.ylabel, self.legend = xlabel, ylabel, list(legend or [])
        self.xlim, self.ylim, self.xscale, self.yscale = xlim, ylim, xscale, yscale
        self.fmts, self.figsize, self.nrows, self.ncols = fmts, figsize, nrows, ncols
        self.X: list[list[float]] | None = None
        self.Y: list[list[float]] | None = None
        self.fig = self.axes = self._handle = None

    def add(self, x, y) -> None:
        if not hasattr(y, "__len__"):
            y = [y]
        n = len(y)
        if not hasattr(x, "__len__"):
            x = [x] * n
        if self.X is None:
            self.X = [[] for _ in range(n)]
            self.Y = [[] for _ in range(n)]
        for i, (a, b) in enumerate(zip(x, y)):
            if a is not None and b is not None:
                self.X[i].append(a)
                self.Y[i].append(b)

        if in_notebook():
            self.draw()

    def draw(self):
        """Draw the lines so far; returns the figure."""
        import matplotlib.pyplot as plt


        if self.fig is None:
            self.fig, axes = plt.subplots(self.nrows, self.ncols, figsize=self.figsize, squeeze=False)
            self.axes = axes.flatten()
            if in_notebook():
                plt.close(self.fig)  # shown through its display handle only, not again at the cell's end
        ax = self.axes[0]
        ax.cla()
        for x, y, fmt in zip(self.X or [], self.Y or [], self.fmts):
            ax.plot(x, y, fmt)
        ax.set(xlabel=self.xlabel, ylabel=self.ylabel, xscale=self.xscale, yscale=self.yscale)
        if self.xlim:
            ax.set_xlim(self.xlim)
        if self.ylim:
            ax.set_ylim(self.ylim)
        if self.legend:
            ax.legend(self.legend)
        ax.grid(alpha=0.3)
        if in_notebook():
            from IPython.display import display

            if self._handle is None:
                self._handle = display(self.fig, display_id=True)
            else:
                self._handle.update(self.fig)
        return self.fig
