"""Export a trained net to ONNX, so that it runs outside PyTorch (the book's lab page runs
the exported LeNets in the reader's browser with onnxruntime-web).

Besides the scores, the exported model can return the outputs of chosen layers (the
feature maps of conv1 and conv2, say) as extra named outputs, and can end in a softmax
so that it returns probabilities.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from .errors import ArgumentError

__all__ = ["export_onnx"]


class _Tapped(nn.Module):
    """``net`` with the outputs of some of its submodules returned after its own output."""

    def __init__(self, net: nn.Module, taps: Mapping[str, nn.Module], softmax: bool):
        super().__init__()
        self.net, self.softmax = net, softmax
        self.taps = list(taps.values())

    def forward(self, x):
        seen: dict[int, torch.Tensor] = {}
        hooks = [m.register_forward_hook(lambda mod, _i, out, k=k: seen.__setitem__(k, out))
                 for k, m in enumerate(self.taps)]
        try:
            y = self.net(x)
        finally:
            for h in hooks:
                h.remove()
        if self.softmax:
            y = torch.softmax(y, dim=1)
        return (y, *(seen[k] for k in range(len(self.taps))))


def export_onnx(net: nn.Module, path: str | os.PathLike, input_shape: Sequence[int], *,
                taps: Mapping[str, nn.Module | str] | None = None, softmax: bool = False,
                output_name: str | None = None, dynamic_batch: bool = True,
                opset: int = 17) -> Path:
    """Export ``net`` (in evaluation mode, on the CPU, in float32) to an ONNX file.

    The model has one input, ``"input"``, of ``input_shape`` (the batch dimension may vary
    when ``dynamic_batch``), and returns the net's output (``"logits"``, or ``"probs"``
    with ``softmax=True``) followed by one output per entry of ``taps``, in order.

    Example::

        net = lenet(nn.ReLU, nn.MaxPool2d)
        d2l.load_weights("checkpoints/lenet-cpu.pt", net)
        d2l.export_onnx(net, "lenet.onnx", (1, 1, 28, 28), softmax=True,
                        taps={"conv1": net[1], "conv2": net[4]})

    Args:
        net: the module to export. It is exported as it is (its weights are not
            changed); it is put in evaluation mode for the export and its mode is
            restored afterwards.
        path: the ``.onnx`` file to write (its folder is created).
        input_shape: the shape of one example input, batch first, e.g. ``(1, 1, 28, 28)``.
        taps: extra outputs: a name -> a submodule of ``net`` (or its name as in
            ``net.named_modules()``, e.g. ``"1"`` or ``"features.0"``); the output of that
            submodule in the same forward pass becomes the output ``name``.
        softmax: end the main output in a softmax over dim 1 (the output is then named
            ``"probs"``).
        output_name: the main output's name, instead of ``"logits"`` / ``"probs"``.
        dynamic_batch: let the first dimension of the input (and of every output) vary.
        opset: the ONNX opset to target (onnxruntime-web 1.2x runs 7 to 21).

    Returns:
        The path written.

    Raises:
        ArgumentError: ``net`` is not a module; ``input_shape`` is not a sequence of
            positive ints; a tap is not a submodule of ``net`` or its name is taken;
            the net fails on an input of ``input_shape``.
        ImportError: the ``onnx`` package (needed by ``torch.onnx.export``) is missing.
    """
    if not isinstance(net, nn.Module):
        raise ArgumentError(f"net must be a torch.nn.Module; got {type(net).__name__}")
    if (isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence)
            or not input_shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1
                                      for s in input_shape)):
        raise ArgumentError(f"input_shape must be a non-empty sequence of positive ints, batch "
                            f"first, e.g. (1, 1, 28, 28); got {input_shape!r}")
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ArgumentError(f"path must be a file path; got {path!r}")
    if not isinstance(opset, int) or isinstance(opset, bool) or not 7 <= opset <= 23:
        raise ArgumentError(f"opset must be an int from 7 to 23; got {opset!r}")
    main = output_name or ("probs" if softmax else "logits")
    if not isinstance(main, str) or not main:
        raise ArgumentError(f"output_name must be a non-empty string; got {output_name!r}")
    named = dict(net.named_modules())
    resolved: dict[str, nn.Module] = {}
    for name, m in (taps or {}).items():
        if not isinstance(name, str) or not name or name in (main, "input") or name in resolved:
            raise ArgumentError(f"tap names must be distinct non-empty strings other than "
                                f"'input' and {main!r}; got {name!r}")
        if isinstance(m, str):
            if m not in named:
                raise ArgumentError(f"tap {name!r}: net has no submodule {m!r}; it has "
                                    f"{', '.join(repr(k) for k in list(named)[1:12])}, ...")
            m = named[m]
        if not isinstance(m, nn.Module) or not any(m is v for v in named.values()):
            raise ArgumentError(f"tap {name!r} must be a submodule of net (or its name); got "
                                f"{type(m).__name__}")
        resolved[name] = m
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
    except ImportError as e:
        raise ImportError("export_onnx needs the onnx package: pip install onnx onnxscript "
                          "(they are in requirements.txt)") from e

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = net.training
    params = next(net.parameters(), None)
    device = params.device if params is not None else torch.device("cpu")
    dtype = params.dtype if params is not None else torch.float32
    net.eval().to("cpu", torch.float32)
    try:
        wrapped = _Tapped(net, resolved, softmax).eval()
        x = torch.zeros(*input_shape)
        try:
            with torch.no_grad():
                outs = wrapped(x)
        except Exception as e:  # the net's own message says what is wrong with the shape
            raise ArgumentError(f"net fails on an input of shape {tuple(input_shape)}: {e}") from e
        names = [main, *resolved]
        axes = ({n: {0: "batch"} for n in ["input", *names]} if dynamic_batch else None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapped, (x,), str(path), input_names=["input"], output_names=names,
                              dynamic_axes=axes, opset_version=opset, dynamo=False,
                              do_constant_folding=True)
        if len(outs) != len(names):  # pragma: no cover - _Tapped always returns one per name
            raise RuntimeError("export_onnx: outputs and names differ")
    finally:
        net.to(device, dtype).train(was_training)
    return path
