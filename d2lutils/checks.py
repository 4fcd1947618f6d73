"""The checks ``train_ch5`` makes before it spends any time training, and on the first
batch: every misuse ends in one :class:`~d2lutils.errors.ArgumentError` that names the
argument, what it got and what is allowed."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from . import distributed as dist
from .metrics import Accumulator
from .errors import ArgumentError, TrainingDivergedError, check_bool, check_int, check_number

__all__ = ["check_train_args", "split_output", "check_loss_value", "num_batches", "check_divergence",
           "set_baseline"]

_PER_BATCH = ("a per-batch schedule such as LambdaLR, OneCycleLR or CosineAnnealingLR "
              "(train_ch5 calls scheduler.step() after every batch)")


def _check_iterable(name: str, it: Any) -> None:
    if not hasattr(it, "__iter__") or isinstance(it, (str, bytes, torch.Tensor)):
        raise ArgumentError(f"{name} must be an iterable of (X, y) batches, such as "
                            f"d2l.load_data_fashion_mnist returns; got {type(it).__name__}")
    if num_batches(it) == 0:
        raise ArgumentError(f"{name} holds no batch (len({name}) == 0): give it some images")


def num_batches(it: Any) -> int | None:
    """``len(it)`` where it has one (a ``DataLoader`` over an ``IterableDataset`` raises
    ``TypeError`` from ``len``, which means "unknown")."""
    try:
        return len(it)
    except TypeError:
        return None


def _check_optimizer(net: nn.Module, optimizer: Any) -> None:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ArgumentError(f"optimizer must be a torch.optim.Optimizer, e.g. "
                            f"torch.optim.SGD(net.parameters(), lr=0.1); got {type(optimizer).__name__}")
    if not any(p.requires_grad for p in net.parameters()):
        raise ArgumentError("every parameter of net is frozen (requires_grad=False), so training cannot "
                            "change it; unfreeze some, e.g. for p in net.classifier.parameters(): "
                            "p.requires_grad_(True)")
    owned = {id(p) for p in net.parameters()}
    held = [p for g in optimizer.param_groups for p in g["params"]]
    foreign = sum(id(p) not in owned for p in held)
    if foreign or not held:
        raise ArgumentError(
            f"optimizer holds {foreign} of its {len(held)} parameter tensors from outside net, so "
            "training would not change net. Build it from this net after creating the net: "
            "optimizer = torch.optim.Adam(net.parameters(), lr=...)")
    if not any(p.requires_grad for p in held):
        raise ArgumentError("optimizer holds only frozen parameters (requires_grad=False) of net; build it "
                            "from the trainable ones: torch.optim.Adam([p for p in net.parameters() "
                            "if p.requires_grad], lr=...)")
    for g in optimizer.param_groups:
        lr = g.get("lr")
        if isinstance(lr, torch.Tensor):
            lr = lr.item()
        # a step must be representable in the weights' own dtype (3.4e38 for float32)
        limit = torch.finfo(g["params"][0].dtype).max if g["params"][0].is_floating_point() else math.inf
        if not isinstance(lr, (int, float)) or not math.isfinite(lr) or not 0 <= lr < limit:
            raise ArgumentError(f"optimizer learning rate must be a finite number from 0 to below {limit:.3g} "
                                f"(the parameters' {str(g['params'][0].dtype).replace('torch.', '')} range); got {lr!r}")


def _check_scheduler(scheduler: Any, optimizer: torch.optim.Optimizer) -> None:
    if scheduler is None:
        return
    if isinstance(scheduler, type):
        raise ArgumentError(f"scheduler must be a scheduler object, not the class {scheduler.__name__}: "
                            f"build it from the optimizer, e.g. scheduler={scheduler.__name__}(optimizer, ...)")
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        raise ArgumentError("scheduler=ReduceLROnPlateau needs a metric at each step(), which train_ch5 does "
                            f"not pass; use {_PER_BATCH}")
    if not callable(getattr(scheduler, "step", None)):
        raise ArgumentError(f"scheduler must have a step() method (a torch.optim.lr_scheduler); got {scheduler!r}")
    if getattr(scheduler, "optimizer", optimizer) is not optimizer:
        raise ArgumentError("scheduler was built for another optimizer; build it from this one")


def _check_loss(loss: Any) -> None:
    if loss is None:
        return
    if not callable(loss):
        raise ArgumentError(f"loss must be callable, e.g. nn.CrossEntropyLoss(); got {loss!r}")
    if getattr(loss, "reduction", "mean") not in ("mean", "sum"):
        raise ArgumentError(f"loss has reduction={loss.reduction!r}, so it returns one loss per image, not "
                            "one number to minimise; use reduction='mean' (the default)")


def check_train_args(*, net, train_iter, test_iter, batch_size, optimizer, num_epochs, loss, checkpoint,
                     resume, scheduler, amp, channels_last, compile, profile, check_every,
                     points_per_epoch, probes_per_epoch, probe_images, diverge_factor, live_plot,
                     progress, aux_weight) -> None:
    """Refuse every argument of :func:`~d2lutils.train.train_ch5` that cannot work."""
    if not isinstance(net, nn.Module):
        raise ArgumentError(f"net must be a torch.nn.Module; got {type(net).__name__}")
    _check_iterable("train_iter", train_iter)
    _check_iterable("test_iter", test_iter)
    check_int("batch_size", batch_size, 1)
    _check_optimizer(net, optimizer)
    check_int("num_epochs", num_epochs, 1)
    _check_loss(loss)
    check_bool("resume", resume)
    if resume and checkpoint is None:
        raise ArgumentError("resume=True needs a checkpoint file to resume from: pass checkpoint=...")
    _check_scheduler(scheduler, optimizer)
    if not (isinstance(amp, bool) or amp in ("bf16", "fp16")):
        raise ArgumentError(f"amp must be True, False, 'bf16' or 'fp16'; got {amp!r}")
    for name, value in (("channels_last", channels_last), ("compile", compile)):
        check_bool(name, value)
    if live_plot != "transient":
        check_bool("live_plot", live_plot, allow_none=True, also="'transient'")
    check_bool("progress", progress, allow_none=True)
    if profile is not None and not isinstance(profile, str):
        raise ArgumentError(f"profile must be a string (a name to print) or None; got {profile!r}")
    for name, value in (("check_every", check_every), ("points_per_epoch", points_per_epoch),
                        ("probes_per_epoch", probes_per_epoch), ("probe_images", probe_images)):
        check_int(name, value, 1)
    check_number("diverge_factor", diverge_factor, low=1.0)
    check_number("aux_weight", aux_weight, low=0.0)


def split_output(out: Any, y: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """A net's output as ``(logits, auxiliary outputs)``, checked against the labels.

    A tensor is the logits. A tuple or list ``(logits, aux1, aux2, ...)``, as GoogLeNet
    returns with its side classifiers in training, is the prediction followed by
    auxiliary outputs; each must be ``batch x classes``.

    Raises:
        ArgumentError: naming the shape that came back and the one expected.
    """
    parts = tuple(out) if isinstance(out, (tuple, list)) else (out,)
    if not parts:
        raise ArgumentError("net returned an empty tuple; it must return logits of shape (batch, classes)")
    for k, t in enumerate(parts):
        what = "net's output" if len(parts) == 1 else f"net's output[{k}]"
        if not isinstance(t, torch.Tensor):
            raise ArgumentError(f"{what} is a {type(t).__name__}; expected a tensor of logits "
                                f"of shape ({y.shape[0]}, classes)")
        if t.dim() != 2 or t.shape[0] != y.shape[0] or t.shape[1] < 2:
            raise ArgumentError(
                f"{what} has shape {tuple(t.shape)}; expected ({y.shape[0]}, classes): one row of class "
                f"scores per image of the batch, and at least 2 classes. End the net with a Linear layer "
                f"(or flatten the last conv's output) so it returns (batch, classes).")
    return parts[0], parts[1:]


def check_loss_value(l: torch.Tensor) -> None:
    """The loss must be one number to call ``backward()`` on."""
    if not isinstance(l, torch.Tensor) or l.numel() != 1:
        shape = tuple(l.shape) if isinstance(l, torch.Tensor) else type(l).__name__
        raise ArgumentError(f"loss returned {shape}, not a single number; use a loss with reduction='mean' "
                            "(such as nn.CrossEntropyLoss()) or reduce it yourself")


def check_divergence(run, window: Accumulator, epoch: int, batch: int | None) -> None:
    total, n = window.reduced()
    if n == 0 or run.baseline is None:
        return
    mean = total / n
    where = f"epoch {epoch + 1}" + (f", by batch {batch + 1}" if batch is not None else "")
    lrs = sorted({float(g["lr"]) for g in run.optimizer.param_groups})
    saved = run.state.exists()
    advice = (f"Lower the learning rate (now {lrs}), check the initialisation, or normalise the "
              "inputs; then train again" + (f" (the last good state is in {run.state.path})." if saved else "."))
    if not math.isfinite(mean):
        raise TrainingDivergedError(f"The training loss became {mean} ({where}). The weights are now "
                                    f"garbage. {advice}")
    if mean > run.diverge_factor * run.baseline:
        raise TrainingDivergedError(
            f"The training loss exploded to {mean:.4g} ({where}), over {run.diverge_factor:g} times "
            f"its start ({run.baseline:.4g}), though it is still finite. {advice}")


def set_baseline(run, l_sum: torch.Tensor, n: int, classes: int) -> None:
    """The scale against which a loss has "exploded": the untrained loss (kept across
    resumes), or ln(classes), the loss of a uniform guess, whichever is larger."""
    h = run.history
    if h.first_loss is None:
        total, count = dist.all_sum([float(l_sum), float(n)], run.device).tolist()
        h.first_loss = total / max(count, 1)
    run.baseline = max(h.first_loss, math.log(classes) if classes > 1 else 0.0, 1e-12)
