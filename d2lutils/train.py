"""Training: ``train_ch5`` as the seeds call it, with correct averages, learning curves
inside an epoch, checkpoints that survive a kill, clear errors, and several processes
under ``torchrun``.

Read top to bottom: ``_step`` is one optimisation step (the LeNet chapter's loop
body, plus autocast and the gradient scaler); ``_train_epoch`` runs the steps of
one epoch and records the curve; :func:`train_ch5` sets a run up and loops over the
epochs. What is saved lives in :mod:`~d2lutils.checkpoint`, what is measured in
:mod:`~d2lutils.history`, devices and precision in :mod:`~d2lutils.devices`.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Iterable

import torch
from torch import nn

from . import distributed as dist
from .checkpoint import CheckpointLock
from .checks import check_divergence, check_loss_value, check_train_args, set_baseline, split_output
from .devices import amp_dtype, as_device, device_name, make_grad_scaler, precision_policy, set_seed, try_gpu
from .errors import ArgumentError, TrainingDivergedError  # noqa: F401  (re-exported)
from .history import History, epoch_line, header_line, printed_epochs, probe_line
from .metrics import Accumulator, confusion_counts
from .notebook import progress_bar_class
from .pace import sync
from .plot import LiveCurves
from .profile import get_profile
from .runstate import Run, batches_from, make_pace, out_of_memory_error, resume_run, setup_run

__all__ = ["History", "TrainingDivergedError", "try_gpu", "device_name", "set_seed", "amp_dtype",
           "make_grad_scaler", "evaluate_accuracy", "train_ch5"]


def _step(net, X, y, *, loss, optimizer, scheduler, autocast, scaler, aux_weight):
    """One optimisation step, as the LeNet chapter writes it, plus mixed precision."""
    with autocast:                              # a no-op in fp32
        y_hat, aux = split_output(net(X), y)    # forward: N x 10 logits (and side outputs)
        l = loss(y_hat, y) if y.numel() else y_hat.sum() * 0.0   # an empty shard adds nothing
        for a in aux:                           # GoogLeNet's side classifiers, weighted
            l = l + aux_weight * loss(a, y)
    check_loss_value(l)
    optimizer.zero_grad(set_to_none=True)       # gradients add up in .grad unless cleared
    scale = scaler.get_scale()
    scaler.scale(l).backward()                  # backward (the loss scaled up in fp16)
    scaler.step(optimizer)                      # update; skipped if fp16 gradients overflowed
    scaler.update()
    if scheduler is not None and scaler.get_scale() >= scale:   # the scale drops on a skip
        scheduler.step()
    return y_hat, l


def _to_device(batches, device: torch.device, channels_last: bool):
    """Each ``(X, y)`` moved to ``device``. Fetching a batch (and so resizing it) happens
    here, outside any autocast block, so the resize runs in fp32."""
    for X, y in batches:   # a batch already there is not dispatched to .to() (one call less per tensor)
        X = X if X.device == device else X.to(device, non_blocking=True)
        if channels_last:
            X = X.contiguous(memory_format=torch.channels_last)
        yield X, (y if y.device == device else y.to(device, non_blocking=True))


def _confusion(data_iter, net, device, autocast, channels_last) -> torch.Tensor:
    """True x predicted counts over ``data_iter``; the comparison chapter reads them."""
    counts = torch.zeros(0, 0, dtype=torch.long, device=device)
    with torch.inference_mode():
        for X, y in _to_device(data_iter, device, channels_last):
            with autocast:
                y_hat, _ = split_output(net(X), y)
            counts = confusion_counts(y_hat, y) + (counts if counts.numel() else 0)
    return counts


def evaluate_accuracy(data_iter, net, device: str | torch.device | None = None, *,
                      amp: bool | str = False, channels_last: bool = False) -> float:
    """Fraction of correct predictions of ``net`` over ``data_iter``.

    Accepts the seed's argument order ``(data_iter, net)`` and d2l's newer
    ``(net, data_iter)``. Runs under ``torch.inference_mode`` in eval mode and
    restores the net's previous mode. A net that returns ``(logits, aux, ...)`` is
    judged by its logits.

    Raises:
        ArgumentError: ``net`` is not a module, ``data_iter`` yields nothing, the net's
            output is not ``batch x classes``, or a label is not one of those classes.
    """
    if isinstance(data_iter, nn.Module):
        data_iter, net = net, data_iter
    if not isinstance(net, nn.Module):
        raise ArgumentError(f"net must be a torch.nn.Module; got {type(net).__name__}")
    p = next(net.parameters(), None)
    device = as_device(device, default=p.device if p is not None else torch.device("cpu"))
    was_training = net.training
    net.eval()
    try:
        counts = _confusion(data_iter, net, device, precision_policy(device, amp).autocast(device),
                            channels_last)
    finally:
        net.train(was_training)
    if counts.sum() == 0:
        raise ArgumentError("data_iter yielded no examples: nothing to evaluate")
    return counts.trace().item() / counts.sum().item()


def _evaluate(run: Run, data_iter) -> tuple[float, list[list[int]]]:
    """Accuracy over ``data_iter`` (every rank's shard when the test set is sharded), and its
    confusion counts."""
    model = run.model
    was_training = model.training
    model.eval()
    try:
        counts = _confusion(data_iter, model, run.device, run.autocast, run.channels_last)
    finally:
        model.train(was_training)
    if run.sharded_test:   # every rank holds the same classes x classes shape (the same net)
        counts = dist.all_sum(counts.flatten(), run.device).view(counts.shape).long()
    n = int(counts.sum())
    if n == 0:
        raise ArgumentError("test_iter yielded no examples: there is nothing to measure the test accuracy on")
    return int(counts.trace()) / n, counts.tolist() if len(counts) <= 100 else []   # a JSON of 10,000 counts at most


def _train_epoch(run: Run, epoch: int, skip: int, carried: dict, bar_class, live) -> None:
    """Train one epoch (from batch ``skip`` on a resume), record its curve, evaluate, save."""
    h, dev = run.history, run.device
    epoch_sums, segment, window = Accumulator(3, dev), Accumulator(3, dev), Accumulator(2, dev)
    t0, done_before, train_time = time.perf_counter(), 0.0, 0.0
    if skip:  # this rank's own sums so far, so the epoch adds up in the same order
        loss_sum, correct, n = carried["ranks"][run.rank]
        epoch_sums.data = [torch.tensor(loss_sum, device=dev), torch.tensor(int(correct), device=dev), int(n)]
        done_before, train_time = carried["seconds"], carried["train_time"]
    bar = bar_class(batches_from(run, skip), desc=f"epoch {epoch + 1}/{run.num_epochs}", leave=False,
                    disable=not run.progress, mininterval=1.0, total=run.n_batches, initial=skip)
    t_train = time.perf_counter()
    for i, (X, y) in enumerate(_to_device(bar, dev, run.channels_last), start=skip):
        run.batch_shape = tuple(X.shape)   # for the out-of-memory message
        y_hat, l = _step(run.model, X, y, loss=run.loss, optimizer=run.optimizer, scheduler=run.scheduler,
                         autocast=run.autocast, scaler=run.scaler, aux_weight=run.aux_weight)
        l_sum = l.detach().float() * y.numel()
        c = (y_hat.detach().argmax(dim=1) == y).sum()
        for acc in (epoch_sums, segment):
            acc.add(l_sum, c, y.numel())
        window.add(l_sum, y.numel())
        run.pace.tick(i + 1 - skip, t0)   # once, after the first batches: what the run costs here
        if run.baseline is None:
            set_baseline(run, l_sum, y.numel(), y_hat.shape[-1])
        at_point = i + 1 in run.point_marks and i + 1 < (run.n_batches or 0)
        if (i + 1) % run.check_every == 0 or at_point:
            check_divergence(run, window, epoch, i)
            window.reset()
        if not at_point:
            continue
        sync(dev)
        train_time += time.perf_counter() - t_train
        h.add_point(segment.reduced(), epoch + (i + 1) / run.n_batches)
        segment.reset()
        if i + 1 in run.probe_marks:
            _probe(run, epoch, i + 1, epoch_sums, done_before + time.perf_counter() - t0, train_time)
        if live is not None:
            live.update(h)
        t_train = time.perf_counter()
    sync(dev)
    train_time += time.perf_counter() - t_train
    check_divergence(run, window, epoch, None)
    _end_epoch(run, epoch, epoch_sums, segment, t0, done_before, train_time)
    if live is not None:
        live.update(h)


def _probe(run: Run, epoch: int, done: int, epoch_sums: Accumulator, elapsed: float, train_time: float) -> None:
    """Inside an epoch: test on the probe subset, print, and checkpoint mid-epoch with every
    rank's running sums, so a resume adds up in the same order."""
    h = run.history
    h.probe_epoch.append(epoch + done / run.n_batches)
    h.probe_acc.append(_evaluate(run, run.probe_iter)[0])
    ranks = dist.gather_objects([float(epoch_sums[0]), int(epoch_sums[1]), int(epoch_sums[2])])
    if run.num_epochs == 1:   # a longer run prints whole epochs only (the plot has the rest)
        run.say(probe_line(h, sum(r[2] for r in ranks), elapsed))
    run.state.save(h, epoch, batch=done, progress={"ranks": ranks, "seconds": elapsed, "train_time": train_time})


def _end_epoch(run: Run, epoch: int, epoch_sums: Accumulator, segment: Accumulator, t0: float,
               done_before: float, train_time: float) -> None:
    """The epoch's means over all ranks, its last curve point, the test accuracy, the save."""
    h = run.history
    loss_sum, correct, n = epoch_sums.reduced()
    if n == 0:
        raise ArgumentError("train_iter yielded no batch: it holds no images")
    rest = segment.reduced()
    if rest[2]:
        h.add_point(rest, float(epoch + 1))
    test_acc, h.test_confusion = _evaluate(run, run.test_iter)
    sync(run.device)
    if h.n_train is None:   # an iterable that did not say its size: now we know it
        h.n_train = int(n)
    h.epoch.append(epoch + 1)
    h.train_loss.append(loss_sum / n)
    h.train_acc.append(correct / n)
    h.test_acc.append(test_acc)
    h.seconds.append(done_before + time.perf_counter() - t0)
    h.images_per_sec.append(n / max(train_time, 1e-9))
    run.state.save(h, epoch + 1)
    if h.epoch[-1] in printed_epochs(run.num_epochs):
        run.say(epoch_line(h, -1))


def train_ch5(net: nn.Module, train_iter: Iterable, test_iter: Iterable, batch_size: int,
              optimizer: torch.optim.Optimizer, device: str | torch.device | None,
              num_epochs: int, *, loss: Callable | None = None,
              checkpoint: str | os.PathLike | None = None, resume: bool = False,
              scheduler: Any | None = None,
              live_plot: bool | None = None, progress: bool | None = None,
              amp: bool | str = False, channels_last: bool = False, compile: bool = False,
              profile: str | None = None, check_every: int = 25,
              points_per_epoch: int = 20, probes_per_epoch: int = 5,
              probe_images: int = 500, diverge_factor: float = 10.0, aux_weight: float = 0.3) -> History:
    """Train ``net`` and print one line per epoch, as the seeds' ``train_ch5`` does.

    The loss printed is the mean cross-entropy per example of that epoch (the
    seeds divide by a batch count that is never reset, so theirs falls on its
    own). Each line also gives the wall time and the training images per second.

    Inside each epoch it also records the training loss and accuracy every
    1/``points_per_epoch`` of the epoch, and ``probes_per_epoch - 1`` times the test
    accuracy on a fixed balanced subset of ``probe_images`` test images (printed,
    plotted, and checkpointed there), so that a one-epoch run still draws a curve.

    Under ``torchrun --nproc_per_node=N`` it trains data-parallel: each process holds
    the net wrapped in ``DistributedDataParallel`` and reads its share of every global
    batch of ``batch_size`` images; the printed figures are sums over all processes,
    and only rank 0 prints, plots and writes the checkpoint. Outside ``torchrun``
    nothing of this happens.

    Args:
        net, train_iter, test_iter, batch_size, optimizer, device, num_epochs:
            as in the seeds. ``batch_size`` is only reported; the iterators batch.
            ``device=None`` picks :func:`~d2lutils.devices.try_gpu`. Any iterable of ``(X, y)`` batches
            works (a list, a ``DataLoader`` over an ``IterableDataset``); only ours
            give mid-epoch probes. ``net`` returns ``batch x classes`` logits, or a
            tuple ``(logits, aux1, ...)``: the logits are the prediction, and in
            training each auxiliary output adds ``aux_weight`` times its loss.
        loss: defaults to ``nn.CrossEntropyLoss()``; it must return one number.
        checkpoint: file written atomically after every epoch and at every probe,
            with a record of the run and a checksum (see :mod:`d2lutils.checkpoint`).
            It is locked against a second run while this one trains, and checked for
            being writable before any training.
        resume: continue from ``checkpoint`` if it exists, mid-epoch included, after
            checking that it was written by this same run (net, optimizer, data,
            profile). A finished run is just loaded, so re-running a notebook cell
            does not retrain.
        scheduler: a ``torch.optim.lr_scheduler`` stepped after every batch whose
            optimizer step was taken (e.g. a warm-up); its state is checkpointed.
            ``ReduceLROnPlateau``, which needs a metric, is refused.
        live_plot: redraw the learning curves at every point (default: in a notebook);
            ``"transient"``: removed at the end, for a page that plots the run itself.
        progress: show a tqdm bar per epoch (default: on, unless ``$D2L_PROGRESS=0``).
        amp: mixed precision: ``True`` lets :func:`~d2lutils.devices.precision_policy`
            choose from the GPU's compute capability (bf16 from 8.0, fp16 with a
            gradient scaler on 7.x, fp32 below and on a CPU); ``"bf16"``/``"fp16"``
            force one.
        channels_last: NHWC memory layout for net and batches.
        compile: run the net through ``torch.compile`` (skipped, with a message, on GPUs
            below compute capability 7.0). The first batches pay the compilation
            (about 85 s for AlexNet on a 2-core CPU). Checkpoints keep the plain weights.
        profile: the name printed in the header (default: ``$D2L_PROFILE`` or "custom").
        check_every: test the loss every this many batches (each check waits for
            the GPU, so not every batch).
        points_per_epoch: training-curve points per epoch (needs ``len(train_iter)``).
        probes_per_epoch: the epoch is cut into this many parts; at each cut but the
            last (where the whole test set is used) the probe subset is evaluated
            and a checkpoint written. 1 turns probes off. Needs a test iterator
            with ``subset`` (ours has it).
        probe_images: size of the probe subset.
        diverge_factor: stop when the mean loss over a check window exceeds this
            many times the larger of the run's first batch loss and, for a
            classifier, ln(classes) (the loss of a uniform guess).
        aux_weight: weight of each auxiliary output's loss (GoogLeNet's paper: 0.3).

    Returns:
        The :class:`~d2lutils.history.History` of all epochs, including resumed ones.

    Raises:
        ArgumentError: an argument is wrong (named in the message), e.g. an
            optimizer built for another net, or a net whose output is not
            ``batch x classes``.
        CheckpointMismatchError: ``resume=True`` and the checkpoint is another run's.
        CheckpointLockedError: another process is training into ``checkpoint``.
        TrainingDivergedError: the loss became NaN or inf, or exploded.
        RuntimeError: the device ran out of memory (with what to change).
    """
    loss = loss if loss is not None else nn.CrossEntropyLoss()
    args = dict(batch_size=batch_size, optimizer=optimizer, num_epochs=num_epochs, loss=loss,
                checkpoint=checkpoint, scheduler=scheduler, amp=amp, channels_last=channels_last,
                compile=compile, profile=profile, check_every=check_every, points_per_epoch=points_per_epoch,
                probes_per_epoch=probes_per_epoch, probe_images=probe_images, diverge_factor=diverge_factor,
                live_plot=live_plot, progress=progress, aux_weight=aux_weight)
    check_train_args(net=net, train_iter=train_iter, test_iter=test_iter, resume=resume, **args)
    device = as_device(device, default=try_gpu())
    device, started_group = dist.join(device)   # under torchrun: join the group, pick this rank's GPU
    args.update(device=device, profile=profile or (get_profile().name if os.environ.get("D2L_PROFILE") else "custom"))
    run = setup_run(net, train_iter, test_iter, **args)
    lock = CheckpointLock(run.state.path) if (run.state.path is not None and run.main) else None
    try:
        if lock is not None:
            lock.acquire()
        return _fit(run, resume)
    finally:
        if lock is not None:
            lock.release()
        if started_group:
            dist.leave()


def _fit(run: Run, resume: bool) -> History:
    start, start_batch, carried = resume_run(run) if resume else (0, 0, {})
    h = run.history
    procs = f"{run.state.world} processes ({dist.backend_for(run.device)}), each " if run.state.world > 1 else ""
    run.say(header_line(h, device_name(run.device), run.num_epochs, run.batch_size, procs))
    if start < run.num_epochs:   # a resumed run recalls its epochs; a finished one just its summary
        for e in range(len(h.epoch)):
            if h.epoch[e] in printed_epochs(run.num_epochs):
                run.say(epoch_line(h, e))
    bar_class = progress_bar_class(run.progress)
    live = LiveCurves(transient=run.live_plot == "transient") if run.live_plot else None
    run.net.train()
    run.pace = make_pace(run, start, start_batch, carried)
    try:
        for epoch in range(start, run.num_epochs):
            if hasattr(run.train_iter, "set_epoch"):
                run.train_iter.set_epoch(epoch)
            _train_epoch(run, epoch, start_batch if epoch == start else 0, carried, bar_class, live)
    except Exception as err:
        if run.state.world > 1:
            print(f"rank {run.rank} of {run.state.world} failed: {type(err).__name__}: {err}",
                  file=sys.stderr, flush=True)
        if isinstance(err, torch.cuda.OutOfMemoryError) or (
                isinstance(err, RuntimeError) and "out of memory" in str(err).lower()):
            raise out_of_memory_error(run, err) from err
        raise
    finally:
        if live is not None:
            live.close()
    if h.epoch:
        run.say(f"done: {h.summary()}")
    return h
