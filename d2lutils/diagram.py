"""Architecture diagrams drawn from the net's own code, so a figure cannot drift from it.

* :func:`draw_net` runs :func:`~d2lutils.summary.layer_table` and draws one box per
  layer (activations and dropout folded into the box before them), with kernel
  sizes, strides and output shapes. A grouped convolution (``groups=2``) is drawn as
  side-by-side columns that only see their own half: AlexNet's two GPUs.
* :func:`draw_block` traces a block with ``torch.fx`` and draws its parallel paths
  (GoogLeNet's Inception block), with the shape on every edge.
"""

from __future__ import annotations

from torch import nn

from .errors import ArgumentError, check_number
from .summary import check_input_shape, layer_table

__all__ = ["draw_net", "draw_block", "layer_label"]

_COLORS = {"conv": "#cfe2f3", "pool": "#fde5c8", "norm": "#e4d7f0", "fc": "#d5ecd4",
           "concat": "#f4cccc", "io": "#eeeeee", "other": "#f3f3f3"}
_FOLD = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.Dropout, nn.Flatten, nn.Identity)


def _pair(v):
    return v[0] if isinstance(v, (tuple, list)) else v


def layer_label(m: nn.Module) -> tuple[str, str]:
    """A short label and a colour kind for one layer, read from its attributes."""
    if isinstance(m, nn.Conv2d):
        k, s, p = _pair(m.kernel_size), _pair(m.stride), _pair(m.padding)
        text = f"conv {k}x{k}" + (f"/{s}" if s > 1 else "") + (f" pad {p}" if p else "")
        return f"{text}, {m.out_channels // m.groups if m.groups > 1 else m.out_channels} ch", "conv"
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        k, s = _pair(m.kernel_size), _pair(m.stride)
        kind = "max" if isinstance(m, nn.MaxPool2d) else "avg"
        return f"{kind} pool {k}x{k}/{s}" + (" (overlapping)" if k > s > 1 else ""), "pool"
    if isinstance(m, (nn.AdaptiveAvgPool2d,)) or type(m).__name__ == "GlobalAvgPool2d":
        return "global average pool", "pool"
    if isinstance(m, nn.Linear):
        return f"fully connected {m.in_features:,} -> {m.out_features:,}", "fc"
    if isinstance(m, nn.LocalResponseNorm) or type(m).__name__ == "LocalResponseNorm":
        return f"LRN (n={m.size})", "norm"
    if isinstance(m, nn.BatchNorm2d):
        return "batch norm", "norm"
    return type(m).__name__, "other"


def _fold(m: nn.Module) -> str:
    if isinstance(m, nn.Dropout):
        return f"dropout {m.p:g}"
    return {nn.ReLU: "ReLU", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh"}.get(type(m), "")


def _shape(shape) -> str:
    return " x ".join(str(v) for v in shape)


def draw_net(net: nn.Module, input_shape: tuple[int, ...], title: str | None = None,
             depth: int | None = None, ax=None, width: float = 6.4):
    """Draw ``net`` as a column of boxes, one per layer, from its :func:`~d2lutils.summary.layer_table`.

    Args:
        net: the model.
        input_shape: with the batch dimension, e.g. ``(1, 1, 224, 224)``.
        title: the figure title.
        depth: as in :func:`~d2lutils.summary.layer_table` (``1``: one box per top-level block).
        ax: a matplotlib axes to draw in (default: a new figure sized to the net).
        width: figure width in inches when a new figure is made.

    Returns:
        The matplotlib axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    check_number("width", width, positive=True)
    table = layer_table(net, tuple(input_shape), depth=depth)
    boxes: list[dict] = [{"label": "input", "kind": "io", "shape": table.input_shape, "groups": 1}]
    for r in table.rows:
        if isinstance(r.module, _FOLD):
            extra = _fold(r.module)
            if extra and len(boxes) > 1:
                boxes[-1]["label"] += f" + {extra}"
            if not isinstance(r.module, (nn.Dropout, nn.Identity, nn.Flatten)):
                boxes[-1]["shape"] = r.output_shape
            continue
        label, kind = layer_label(r.module) if r.module is not None else (r.type, "other")
        if depth is not None and next(r.module.children(), None) is not None:
            label, kind = f"{r.name}: {r.type}", "other"
        boxes.append({"label": label, "kind": kind, "shape": r.output_shape,
                      "groups": getattr(r.module, "groups", 1) if isinstance(r.module, nn.Conv2d) else 1})
    boxes.append({"label": "output", "kind": "io", "shape": table.output_shape, "groups": 1})
    h, gap = 0.62, 0.38
    total = len(boxes) * (h + gap)
    if ax is None:
        _, ax = plt.subplots(figsize=(width, 0.44 * total + 0.6))
    x0, bw = 0.0, 6.0
    y = total
    prev = None
    for b in boxes:
        y -= h + gap
        g = b["groups"]
        cols = [(x0 + i * bw / g + (0.08 if g > 1 else 0), bw / g - (0.16 if g > 1 else 0)) for i in range(g)]
        for i, (cx, cw) in enumerate(cols):
            ax.add_patch(FancyBboxPatch((cx, y), cw, h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                        fc=_COLORS[b["kind"]], ec="#555555", lw=0.8))
            text = b["label"] + (f"\n(group {i + 1} of {g}: own half only)" if g > 1 else "")
            ax.text(cx + cw / 2, y + h / 2, text, ha="center", va="center",
                    fontsize=7.5 if g == 1 else 6.5)
        ax.text(x0 + bw + 0.15, y + h / 2, _shape(b["shape"]), ha="left", va="center", fontsize=7.5,
                family="monospace", color="#333333")
        if prev is not None:
            p_cols, p_y = prev
            for i, (cx, cw) in enumerate(cols):
                for j, (px, pw) in enumerate(p_cols):
                    if g > 1 and len(p_cols) == g and i != j:
                        continue  # grouped after grouped: each column feeds only its own
                    ax.annotate("", xy=(cx + cw / 2, y + h), xytext=(px + pw / 2, p_y),
                                arrowprops=dict(arrowstyle="-|>", lw=0.7, color="#444444",
                                                shrinkA=0, shrinkB=0))
        prev = (cols, y)
    ax.set_xlim(-0.2, x0 + bw + 2.2)
    ax.set_ylim(y - 0.2, total + 0.1)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def _propagate_shapes(gm, shape_prop: type, X) -> None:
    """Run ``X`` through the traced block to record every node's shape; an input the
    block cannot take is an ArgumentError naming the node, not torch's printed traceback."""
    import contextlib
    import io

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            shape_prop(gm).propagate(X)
    except Exception as e:
        cause = e.__cause__ if e.__cause__ is not None else e
        node = str(e).split("node=", 1)[-1].split(" ", 1)[0] if "node=" in str(e) else "?"
        raise ArgumentError(f"input_shape={tuple(X.shape)} does not fit this block: node {node} failed: "
                            f"{type(cause).__name__}: {str(cause).splitlines()[0]}") from None


def draw_block(block: nn.Module, input_shape: tuple[int, ...], title: str | None = None, ax=None):
    """Draw a block with parallel paths (e.g. Inception), traced with ``torch.fx``.

    Each path from the input is a column; functional activations are folded into the
    box before them; every box shows the module and its output shape; the node
    that joins the paths (``torch.cat``) is drawn across them.
    """
    import matplotlib.pyplot as plt
    import torch
    import torch.fx
    from matplotlib.patches import FancyBboxPatch
    from torch.fx.passes.shape_prop import ShapeProp

    if not isinstance(block, nn.Module):
        raise ArgumentError(f"block must be a torch.nn.Module; got {type(block).__name__}")
    check_input_shape(input_shape)
    try:
        gm = torch.fx.symbolic_trace(block)
    except Exception as e:
        raise ArgumentError(f"block cannot be traced with torch.fx ({type(e).__name__}: {e}); "
                            "draw_block needs a forward without data-dependent control flow") from None
    _propagate_shapes(gm, ShapeProp, torch.zeros(tuple(input_shape)))
    order = _block_nodes(gm)
    ncols = _layout(order)
    rows = max(d["row"] for d in order) + 1
    cw, ch, gx, gy = 2.5, 0.62, 0.25, 0.45
    if ax is None:
        _, ax = plt.subplots(figsize=(1.05 * ncols * (cw + gx) + 0.4, rows * (ch + gy) * 0.62 + 0.8))
    span = ncols * (cw + gx) - gx
    for d in order:
        y = (rows - 1 - d["row"]) * (ch + gy)
        x, w = (0.0, span) if d["col"] is None else (d["col"] * (cw + gx), cw)
        d["xy"] = (x + w / 2, y)
        ax.add_patch(FancyBboxPatch((x, y), w, ch, boxstyle="round,pad=0.02,rounding_size=0.1",
                                    fc=_COLORS[d["kind"]], ec="#555555", lw=0.8))
        ax.text(x + w / 2, y + ch * 0.62, d["label"], ha="center", va="center", fontsize=7)
        ax.text(x + w / 2, y + ch * 0.22, _shape(d["shape"]), ha="center", va="center", fontsize=6.5,
                family="monospace", color="#333333")
        for p in d["parents"]:
            px = p["xy"][0] if p["col"] is not None or d["col"] is None else d["xy"][0]
            if p["col"] is None and d["col"] is not None:
                px = d["xy"][0]
            tx = d["xy"][0] if d["col"] is not None else p["xy"][0]
            ax.annotate("", xy=(tx, y + ch), xytext=(px, p["xy"][1]),
                        arrowprops=dict(arrowstyle="-|>", lw=0.7, color="#444444", shrinkA=0, shrinkB=0))
    ax.set_xlim(-0.2, span + 0.2)
    ax.set_ylim(-0.2, rows * (ch + gy))
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def _block_nodes(gm) -> list[dict]:
    """The traced graph's nodes to draw, in order, each with its label, kind, output shape
    and parents; activations are folded into the box before them."""
    modules = dict(gm.named_modules())
    nodes: dict = {}      # fx node -> drawn node
    order: list[dict] = []
    for node in gm.graph.nodes:
        meta = node.meta.get("tensor_meta")
        shape = tuple(meta.shape[1:]) if meta is not None and hasattr(meta, "shape") else ()
        if node.op == "call_function" and getattr(node.target, "__name__", "") in ("relu", "sigmoid", "tanh"):
            parent = nodes[node.args[0]]
            parent["label"] += " + " + node.target.__name__.replace("relu", "ReLU")
            nodes[node] = parent
            continue
        if node.op == "call_module" and isinstance(modules[node.target], (nn.ReLU, nn.Sigmoid, nn.Tanh)):
            parent = nodes[node.args[0]]
            parent["label"] += " + " + _fold(modules[node.target])
            nodes[node] = parent
            continue
        if node.op == "placeholder":
            d = {"label": "input", "kind": "io"}
        elif node.op == "output":
            continue
        elif node.op == "call_module":
            label, kind = layer_label(modules[node.target])
            d = {"label": f"{node.target}: {label}", "kind": kind}
        elif getattr(node.target, "__name__", "") == "cat":
            d = {"label": "concatenate channels", "kind": "concat"}
        else:
            name = getattr(node.target, "__name__", str(node.target))
            d = {"label": {"local_response_norm": "local response normalisation"}.get(name, name), "kind": "other"}
        d["shape"] = shape
        d["parents"] = [nodes[a] for a in node.all_input_nodes]
        nodes[node] = d
        order.append(d)
    return order


def _layout(order: list[dict]) -> int:
    """Rows (longest path from the input) and columns (one per path leaving the input) of
    the drawn nodes; a node that joins paths is drawn across them. Returns the columns."""
    for d in order:
        d["row"] = 1 + max((p["row"] for p in d["parents"]), default=-1)
        if not d["parents"] or len({id(p) for p in d["parents"]}) > 1:
            d["col"] = None
        else:
            d["col"] = d["parents"][0]["col"]
    source = order[0]
    children = [d for d in order if d["parents"] and d["parents"][0] is source and len(d["parents"]) == 1]
    for i, d in enumerate(children):
        d["col"] = i
    for d in order:  # descendants of a path inherit its column
        if d["col"] is None and len({id(p) for p in d["parents"]}) == 1 and d["parents"][0]["col"] is not None:
            d["col"] = d["parents"][0]["col"]
    return max(len(children), 1)
