"""Export a trained net to ONNX, so that it runs outside PyTorch (the book's lab page runs
the exported LeNets in the reader's browser with onnxruntime-web).

Besides the scores, the exported model can return the outputs of chosen layers (the
feature maps of conv1 and conv2, say) as extra named outputs, and can end in a softmax
so that it returns probabilities. It can also take a smaller image than the net and
enlarge it first with the data pipeline's own bilinear weights (the lab feeds VGG the
28 px image; the model resizes it to 224 px as ``load_data_fashion_mnist(resize=224)``
did in training), and can store its weights in float16 (half the file) while still
computing in float32.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from .errors import ArgumentError
from .resize import _stretch_matrix, check_resize

__all__ = ["export_onnx", "fp16_rounded"]

FP16_MAX = 65504.0  # the largest finite float16


class _Resize(nn.Module):
    """Bilinear enlargement of ``[N, C, H, W]`` to ``[N, C, h, w]`` as two matrix products,
    ``rows @ x @ cols``, with the weights of :func:`~d2lutils.data.resize_bilinear` (PyTorch's
    ``align_corners=False`` bilinear weights, the ones the training data was resized with).
    Two ``MatMul`` nodes in ONNX, which every runtime runs in float32."""

    def __init__(self, src: tuple[int, int], dst: tuple[int, int]):
        super().__init__()
        (H, W), (h, w) = src, dst
        cpu = torch.device("cpu")
        self.register_buffer("rows", _stretch_matrix(H, h, torch.float32, cpu).T.contiguous())
        self.register_buffer("cols", _stretch_matrix(W, w, torch.float32, cpu).clone())

    def forward(self, x):
        return self.rows @ x @ self.cols


class _Tapped(nn.Module):
    """``net`` with the outputs of some of its submodules returned after its own output."""

    def __init__(self, net: nn.Module, taps: Mapping[str, nn.Module], softmax: bool,
                 resize: nn.Module | None = None):
        super().__init__()
        self.net, self.softmax, self.resize = net, softmax, resize
        self.taps = list(taps.values())

    def forward(self, x):
        seen: dict[int, torch.Tensor] = {}
        hooks = [m.register_forward_hook(lambda mod, _i, out, k=k: seen.__setitem__(k, out))
                 for k, m in enumerate(self.taps)]
        try:
            y = self.net(x if self.resize is None else self.resize(x))
        finally:
            for h in hooks:
                h.remove()
        if self.softmax:
            y = torch.softmax(y, dim=1)
        return (y, *(seen[k] for k in range(len(self.taps))))


def export_onnx(net: nn.Module, path: str | os.PathLike, input_shape: Sequence[int], *,
                taps: Mapping[str, nn.Module | str] | None = None, softmax: bool = False,
                output_name: str | None = None, dynamic_batch: bool = True,
                opset: int = 17, resize_from: int | Sequence[int] | None = None,
                fp16_weights: bool = False) -> Path:
    """Export ``net`` (in evaluation mode, on the CPU, in float32) to an ONNX file.

    The model has one input, ``"input"``, of ``input_shape`` (the batch dimension may vary
    when ``dynamic_batch``), and returns the net's output (``"logits"``, or ``"probs"``
    with ``softmax=True``) followed by one output per entry of ``taps``, in order.

    With ``resize_from``, the model's input is smaller than the net's: ``N x C x 28 x 28``
    with ``resize_from=28``, say, enlarged inside the model to ``input_shape``'s height and
    width by the bilinear weights of :func:`~d2lutils.data.resize_bilinear` (those of
    ``load_data_fashion_mnist(resize=...)``, so the net sees what it saw in training, to
    float rounding), as two ``MatMul`` nodes.

    With ``fp16_weights``, every weight and bias of ``net`` is stored in float16 and turned
    back into float32 by a ``Cast`` node when the model loads, so the file is half the size
    and the runtime still computes in float32 (every onnxruntime build runs it). The model
    then computes exactly what ``net`` does with :func:`fp16_rounded` weights.

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
        resize_from: the model's input side (an int, or ``(height, width)``), at most the
            net's (``input_shape``'s last two entries); ``None``: the net's own.
        fp16_weights: store the net's weights and biases in float16 (see above).

    Returns:
        The path written.

    Raises:
        ArgumentError: ``net`` is not a module; ``input_shape`` is not a sequence of
            positive ints; a tap is not a submodule of ``net`` or its name is taken;
            ``resize_from`` is not a size no larger than the net's input, or
            ``input_shape`` has no height and width to resize; ``fp16_weights`` is not a
            bool, or a weight is too large for float16; the net fails on an input of
            ``input_shape``.
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
    if not isinstance(fp16_weights, bool):
        raise ArgumentError(f"fp16_weights must be True or False; got {fp16_weights!r}")
    resize = None
    model_shape = tuple(input_shape)
    if resize_from is not None:
        if len(input_shape) != 4:
            raise ArgumentError(f"resize_from needs an input_shape of (batch, channels, height, "
                                f"width); got {tuple(input_shape)!r}")
        try:
            src = check_resize(resize_from)
        except ArgumentError as e:
            raise ArgumentError(str(e).replace("resize must be None, ", "resize_from must be ")) from e
        dst = tuple(input_shape[2:])
        if src[0] > dst[0] or src[1] > dst[1]:
            raise ArgumentError(f"resize_from={resize_from!r} is larger than the net's input "
                                f"{dst[0]} x {dst[1]}: the model only enlarges (shrinking needs "
                                f"antialiasing, which resize_bilinear does with F.interpolate)")
        if src != dst:
            resize = _Resize(src, dst)
            model_shape = (*input_shape[:2], *src)
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
    if fp16_weights:
        too_big = [n for n, p in net.named_parameters() if p.detach().abs().max() > FP16_MAX]
        if too_big:
            net.to(device, dtype).train(was_training)
            raise ArgumentError(f"fp16_weights: {', '.join(too_big)} hold values beyond float16's "
                                f"range (+-{FP16_MAX:g}); export them in float32")
    try:
        wrapped = _Tapped(net, resolved, softmax, resize).eval()
        x = torch.zeros(*model_shape)
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
        if fp16_weights:
            _store_fp16(path, {f"net.{n}" for n, _ in net.named_parameters()})
    finally:
        net.to(device, dtype).train(was_training)
    return path


def _store_fp16(path: Path, names: set[str]) -> None:
    """Rewrite the ONNX file at ``path``: each float32 initializer in ``names`` is stored as
    float16 (``<name>.fp16``) and cast back to float32 by a ``Cast`` node whose output takes
    the old name, so every node still reads a float32 tensor of that name."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    casts, kept, done = [], [], set()
    for init in graph.initializer:
        if init.name in names and init.data_type == TensorProto.FLOAT:
            half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16),
                                           f"{init.name}.fp16")
            kept.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                          name=f"{init.name}.to_float32"))
            done.add(init.name)
        else:
            kept.append(init)
    missing = names - done
    if missing:  # a weight folded into another constant would stay float32: say so
        raise RuntimeError(f"export_onnx(fp16_weights=True): {len(missing)} weights are not plain "
                           f"initializers of the exported graph: {sorted(missing)[:5]}")
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def fp16_rounded(net: nn.Module) -> nn.Module:
    """``net`` with every weight and bias rounded to float16 and back, in place (it stays
    float32): what a model exported with ``fp16_weights=True`` computes. Returns ``net``."""
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(p.half().to(p.dtype))
    return net
