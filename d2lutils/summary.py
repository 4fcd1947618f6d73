"""Inspection: a per-layer table of output shapes, parameters and FLOPs.

FLOPs come from ``torch.utils.flop_counter`` (one multiply-add counts as 2
FLOPs, as there), for one image, forward pass only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["LayerRow", "LayerTable", "layer_table", "count_params"]


def count_params(net: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor counted once)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


@dataclass
class LayerRow:
    name: str
    type: str
    output_shape: tuple[int, ...]  # without the batch dimension
    params: int
    flops: int


@dataclass
class LayerTable:
    """The rows of :func:`layer_table` and its totals. ``print`` it for a text table."""

    input_shape: tuple[int, ...]
    rows: list[LayerRow] = field(default_factory=list)
    total_params: int = 0
    total_flops: int = 0

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.rows[-1].output_shape if self.rows else self.input_shape

    def __str__(self) -> str:
        head = ("layer", "type", "output shape", "params", "MFLOPs")
        body = [("input", "", _fmt_shape(self.input_shape), "", "")]
        body += [(r.name, r.type, _fmt_shape(r.output_shape), f"{r.params:,}", f"{r.flops / 1e6:,.2f}")
                 for r in self.rows]
        widths = [max(len(str(row[i])) for row in [head, *body]) for i in range(len(head))]

        def line(row):
            return "  ".join(str(c).ljust(w) if i < 3 else str(c).rjust(w)
                             for i, (c, w) in enumerate(zip(row, widths))).rstrip()

        rule = "-" * len(line(head))
        return "\n".join([line(head), rule, *map(line, body), rule,
                          f"total params: {self.total_params:,}",
                          f"total FLOPs per image (forward): {self.total_flops:,} "
                          f"= {_si(self.total_flops)} FLOPs ({_si(self.total_flops / 2)} multiply-adds)"])

    __repr__ = __str__

    def plot(self, axes=None, title: str | None = None):
        """Plot how the activation shape changes; see :func:`d2lutils.plot.plot_shapes`."""
        from .plot import plot_shapes

        return plot_shapes(self, axes=axes, title=title)


def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if x >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:.0f}"


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return " x ".join(str(s) for s in shape)


def _selected(net: nn.Module, depth: int | None) -> list[tuple[str, nn.Module]]:
    out = []
    for name, m in net.named_modules():
        if not name:
            continue
        level = name.count(".") + 1
        is_leaf = next(m.children(), None) is None
        if (depth is None and is_leaf) or (depth is not None and (
                level == depth or (level < depth and is_leaf))):
            out.append((name, m))
    return out


def layer_table(net: nn.Module, input_shape: tuple[int, ...] = (1, 1, 224, 224),
                depth: int | None = None, device: str | torch.device = "cpu") -> LayerTable:
    """Run one input of ``input_shape`` through ``net`` and tabulate each layer.

    Args:
        net: the model; its mode is restored afterwards.
        input_shape: including the batch dimension; FLOPs are divided by it.
        depth: ``None`` for every leaf module; ``1`` for the top-level children
            (e.g. the stages of GoogLeNet), ``2`` one level deeper, ...
        device: where to run the probe.

    Returns:
        A :class:`LayerTable` with rows in execution order.
    """
    batch = input_shape[0]
    chosen = _selected(net, depth)
    shapes: dict[str, tuple[int, ...]] = {}
    order: list[str] = []

    def hook(name):
        def fn(_m, _inp, out):
            out = out[0] if isinstance(out, (tuple, list)) else out
            if name not in shapes:
                order.append(name)
            shapes[name] = tuple(out.shape[1:])
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in chosen]
    was_training = net.training
    net.eval()
    try:
        X = torch.zeros(input_shape, device=device)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net.to(device)(X)
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    prefix = type(net).__name__
    flops = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    modules = dict(chosen)
    table = LayerTable(input_shape=tuple(input_shape[1:]), total_params=count_params(net),
                       total_flops=flops.get("Global", 0) // batch)
    for name in order:
        m = modules[name]
        table.rows.append(LayerRow(name=name, type=type(m).__name__, output_shape=shapes[name],
                                   params=count_params(m),
                                   flops=flops.get(f"{prefix}.{name}", 0) // batch))
    return table
