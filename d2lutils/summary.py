"""Inspection: a per-layer table of output shapes, parameters and FLOPs.

FLOPs come from ``torch.utils.flop_counter`` (one multiply-add counts as 2
FLOPs, as there), for one image, forward pass only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .errors import ArgumentError, D2LError, check_bool, check_int
from .plot import plot_shapes

__all__ = ["LayerRow", "LayerTable", "layer_table", "count_params"]


def count_params(net: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor counted once)."""
    if not isinstance(net, nn.Module):
        raise ArgumentError(f"net must be a torch.nn.Module; got {type(net).__name__}")
    check_bool("trainable_only", trainable_only)
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


@dataclass
class LayerRow:
    name: str
    type: str
    output_shape: tuple[int, ...]  # without the batch dimension (the first tensor's, for tuple/dict outputs)
    params: int
    flops: int
    outputs: str = ""              # every output's shape, for tuple and dict outputs
    module: nn.Module | None = field(default=None, repr=False, compare=False)
    rf: int | None = None          # receptive field: input pixels per side one output unit sees
    jump: int | None = None        # input pixels between neighbouring output units


@dataclass
class LayerTable:
    """The rows of :func:`layer_table` and its totals. ``print`` it for a text table."""

    input_shape: tuple[int, ...]
    rows: list[LayerRow] = field(default_factory=list)
    total_params: int = 0
    total_flops: int = 0
    last_conv_rf: int | None = None   # receptive field (pixels per side) of the last (widest) convolution

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.rows[-1].output_shape if self.rows else self.input_shape


    def __str__(self) -> str:
        head = ("layer", "type", "output shape", "RF/jump", "params", "MFLOPs")
        body = [("input", "", _fmt_shape(self.input_shape), "1/1", "", "")]
        body += [(r.name, r.type, r.outputs or _fmt_shape(r.output_shape),
                  "all" if r.rf is None else f"{r.rf}/{r.jump}", f"{r.params:,}",
                  f"{r.flops / 1e6:,.2f}") for r in self.rows]
        widths = [max(len(str(row[i])) for row in [head, *body]) for i in range(len(head))]

        def line(row):
            return "  ".join(str(c).ljust(w) if i < 4 else str(c).rjust(w)
                             for i, (c, w) in enumerate(zip(row, widths))).rstrip()

        rule = "-" * len(line(head))
        rf = self.last_conv_rf
        return "\n".join([line(head), rule, *map(line, body), rule,
                          *([f"receptive field of the last convolution: {rf} x {rf} input pixels"]
                            if rf is not None else []),
                          f"total params: {self.total_params:,}",
                          f"total FLOPs per image (forward): {self.total_flops:,} "
                          f"= {_si(self.total_flops)} FLOPs ({_si(self.total_flops / 2)} multiply-adds)"])

    __repr__ = __str__

    def plot(self, axes=None, title: str | None = None):
        """Plot how the activation shape changes; see :func:`d2lutils.plot.plot_shapes`."""
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


def _describe_output(out) -> tuple[tuple[int, ...], str]:
    """The first tensor's shape (without batch), and a description if there are several."""
    if isinstance(out, torch.Tensor):
        return tuple(out.shape[1:]), ""
    if isinstance(out, dict):
        items = [(str(k), v) for k, v in out.items()]
    elif isinstance(out, (tuple, list)):
        items = [(str(i), v) for i, v in enumerate(out)]
    else:
        return (), type(out).__name__
    tensors = [(k, v) for k, v in items if isinstance(v, torch.Tensor)]
    first = tuple(tensors[0][1].shape[1:]) if tensors else ()
    desc = ", ".join(f"{k}: {_fmt_shape(tuple(v.shape[1:]))}" for k, v in tensors)
    return first, ("{" + desc + "}" if isinstance(out, dict) else "(" + desc + ")")


class _ReceptiveFields:
    """Receptive field and jump of every tensor a forward pass makes, by the recurrence
    r <- r + (k - 1) * dilation * j, j <- j * stride at each convolution and pooling
    window (elementwise layers keep both; a layer that mixes every position, such as
    Linear or adaptive pooling, sees the whole input). The field can be larger than the
    image: it counts the padding the windows reach into. A tensor made outside a module
    (``torch.cat`` of Inception's branches, a residual sum) gets its module's largest
    field; an input not seen before takes the latest output of the same shape."""

    def __init__(self, input_shape: torch.Size):
        self.last_conv: int | None = None
        self.by_id: dict[int, tuple[torch.Tensor, int | None, int | None]] = {}
        self.inner: list[list[tuple[int | None, int | None]]] = []

    def note(self, t, rf, jump):
        if isinstance(t, torch.Tensor):
            self.by_id[id(t)] = (t, rf, jump)   # the tensor is kept so its id is not reused

    def _of(self, t) -> tuple[int | None, int | None]:
        if isinstance(t, torch.Tensor):
            if id(t) in self.by_id:
                return self.by_id[id(t)][1:]
            for u, rf, jump in reversed(list(self.by_id.values())):
                if u.shape == t.shape:
                    return rf, jump
        return 1, 1

    def enter(self) -> None:
        self.inner.append([])

    def leave(self, m: nn.Module, inp, out) -> tuple[int | None, int | None]:
        inside = self.inner.pop()
        rf, jump = self._of(inp[0] if inp else None)
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) and rf is not None:
            k, s, d = (_first(getattr(m, a, 1)) for a in ("kernel_size", "stride", "dilation"))
            rf, jump = rf + (k - 1) * d * jump, jump * s
        elif isinstance(m, (nn.Linear, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) or _global(inp, out):
            rf, jump = None, None
        elif inside:   # a block: its output sees what its widest part sees
            widest = max(inside, key=lambda f: float("inf") if f[0] is None else f[0])
            rf, jump = widest if widest[0] is not None else (None, None)
        if isinstance(m, nn.Conv2d) and rf is not None:   # the widest, for parallel branches
            self.last_conv = max(self.last_conv or 0, rf)
        outs = out if isinstance(out, (tuple, list)) else [out]
        for o in outs:
            self.note(o, rf, jump)
        if self.inner:
            self.inner[-1].append((rf, jump))
        return rf, jump


def _global(inp, out) -> bool:
    """The output mixes every position: it has no spatial dims, or a 1 x 1 map made from a
    larger one (global average pooling)."""
    if not isinstance(out, torch.Tensor):
        return False
    if out.dim() < 3:
        return True
    x = inp[0] if inp else None
    return (out.dim() == 4 and out.shape[-2:] == (1, 1) and isinstance(x, torch.Tensor) and x.dim() == 4
            and x.shape[-2] * x.shape[-1] > 1)


def _first(v) -> int:
    return int(v[0] if isinstance(v, (tuple, list)) else v)


def _home(net: nn.Module) -> torch.device:
    t = next(net.parameters(), None)
    if t is None:
        t = next(net.buffers(), None)
    return t.device if t is not None else torch.device("cpu")


def check_input_shape(input_shape, name: str = "input_shape") -> None:
    """Raise :class:`ArgumentError` unless ``input_shape`` is a tuple (or list) of at
    least two positive ints, the batch first."""
    if (not isinstance(input_shape, (tuple, list)) or len(input_shape) < 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in input_shape)):
        raise ArgumentError(f"{name} must be a tuple of positive ints with the batch first, e.g. "
                            f"(1, 1, 224, 224); got {input_shape!r}")


def _probe_input(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """A zero input of ``shape``, or an ArgumentError saying it does not fit in memory
    (torch's own message is an allocator's, with no word of ``input_shape``)."""
    try:
        return torch.zeros(shape, device=device)
    except RuntimeError as e:   # torch.OutOfMemoryError is a RuntimeError too
        n = 1
        for v in shape:
            n *= v
        why = str(e).splitlines()[0][:120]
        raise ArgumentError(f"input_shape={shape} needs {n * 4 / 2**30:,.1f} GiB for the probe input alone "
                            f"on {device}, which this machine cannot allocate ({why}); use a batch of 1 "
                            "and the net's own image size") from None


def layer_table(net: nn.Module, input_shape: tuple[int, ...] = (1, 1, 224, 224),
                depth: int | None = None, device: str | torch.device = "cpu") -> LayerTable:
    """Run one input of ``input_shape`` through ``net`` and tabulate each layer.

    Args:
        net: the model; its mode and device are restored afterwards.
        input_shape: including the batch dimension; FLOPs are divided by it.
        depth: ``None`` for every leaf module; ``1`` for the top-level children
            (e.g. the stages of GoogLeNet), ``2`` one level deeper, ...
        device: where to run the probe.

    Returns:
        A :class:`LayerTable` with one row per call, in execution order: a module
        used twice gets two rows (its parameters counted on the first).

    Raises:
        ArgumentError: a bad argument, or an input the net cannot take; the message
            names the layer where the forward pass failed.
    """
    if not isinstance(net, nn.Module):
        raise ArgumentError(f"net must be a torch.nn.Module; got {type(net).__name__}")
    check_input_shape(input_shape)
    check_int("depth", depth, 1, allow_none=True)
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ArgumentError(f"device must be a device such as 'cpu'; got {device!r}") from None
    batch = input_shape[0]
    chosen = dict(_selected(net, depth))
    rows: list[LayerRow] = []
    calls: dict[str, int] = {}
    stack: list[tuple[str, nn.Module, int]] = []
    names = {m: n for n, m in net.named_modules() if n}

    fields = _ReceptiveFields(torch.Size(input_shape))

    def pre(m, _inp):
        stack.append((names.get(m, "?"), m, counter.get_total_flops()))
        fields.enter()

    def post(m, inp, out):
        name, _, flops_before = stack.pop()
        rf, jump = fields.leave(m, inp, out)
        if name not in chosen:
            return
        calls[name] = calls.get(name, 0) + 1
        shape, desc = _describe_output(out)
        first = calls[name] == 1
        rows.append(LayerRow(name=name if first else f"{name} (call {calls[name]})", type=type(m).__name__,
                             output_shape=shape, params=count_params(m) if first else 0,
                             flops=(counter.get_total_flops() - flops_before) // batch, outputs=desc,
                             module=m, rf=rf, jump=jump))

    modules = [m for n, m in net.named_modules() if n]
    handles = [m.register_forward_pre_hook(pre) for m in modules]
    handles += [m.register_forward_hook(post) for m in modules]
    was_training, home = net.training, _home(net)
    net.eval()
    try:
        X = _probe_input(tuple(input_shape), device)
        fields.note(X, 1, 1)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            try:
                net.to(device)(X)
            except D2LError:
                raise
            except Exception as e:
                where = (f"layer {stack[-1][0]!r} ({type(stack[-1][1]).__name__})" if stack
                         else "the net's own forward")
                raise ArgumentError(f"a {_fmt_shape(tuple(input_shape))} input does not fit this net: "
                                    f"the forward pass failed in {where}: {type(e).__name__}: {e}") from None
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
        net.to(home)
    table = LayerTable(input_shape=tuple(input_shape[1:]), total_params=count_params(net),
                       total_flops=counter.get_total_flops() // batch)
    table.rows = rows
    table.last_conv_rf = fields.last_conv
    return table
