"""One ``train_ch5`` call set up: the pieces it trains (net wrapped by DDP and compile,
precision, scaler, checkpoint state), the data each rank reads, where the curve
points and probes fall, the resume, and what an out-of-memory error says."""

from __future__ import annotations

import dataclasses
import gc
import traceback
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from . import distributed as dist
from .checkpoint import TrainState, check_writable, run_record
from .checks import num_batches
from .devices import compile_supported, device_name, env_flag, precision_policy
from .history import History, marks
from .notebook import in_notebook
from .pace import Pace

__all__ = ["Run", "setup_run", "resume_run", "make_pace", "out_of_memory_error", "batches_from"]


@dataclasses.dataclass
class Run:
    """What one ``train_ch5`` call fixed before training: the pieces, the data, the marks."""

    net: nn.Module
    model: nn.Module              # net, wrapped by DDP and compile where they apply
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loss: Callable
    device: torch.device
    autocast: Any
    scaler: torch.amp.GradScaler
    state: TrainState
    history: History
    train_iter: Any
    test_iter: Any
    probe_iter: Any
    sharded_test: bool
    n_batches: int | None
    point_marks: set[int]
    probe_marks: set[int]
    num_epochs: int
    batch_size: int
    channels_last: bool
    check_every: int
    diverge_factor: float
    aux_weight: float
    rank: int
    main: bool
    progress: bool
    live_plot: bool | str
    baseline: float | None = None
    batch_shape: tuple[int, ...] | None = None
    pace: Pace | None = None

    def say(self, text: str) -> None:
        if self.main:
            print(text, flush=True)


def _count(it) -> int | None:
    """Examples per pass: our iterators know it; a DataLoader's sized dataset does."""
    if hasattr(it, "num_examples"):
        return int(it.num_examples)
    ds = getattr(it, "dataset", None)
    try:
        return len(ds) if ds is not None else None
    except TypeError:   # an IterableDataset has no length
        return None


def _wrap(net: nn.Module, device: torch.device, world: int, compile: bool, say) -> nn.Module:
    model = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(net, device_ids=[device.index] if device.type == "cuda" else None)
    if compile:
        ok, why = compile_supported(device)
        if ok:
            model = torch.compile(model)  # `net` keeps the weights and their names
        else:
            say(f"compile=True skipped: {why}")
    return model


def setup_run(net, train_iter, test_iter, *, batch_size, optimizer, device, num_epochs, loss, checkpoint,
           scheduler, amp, channels_last, compile, profile, check_every, points_per_epoch,
           probes_per_epoch, probe_images, diverge_factor, live_plot, progress, aux_weight) -> Run:
    world, rank = dist.world_size(), dist.rank()
    precision = precision_policy(device, amp)
    net = net.to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    n_train, n_test = _count(train_iter), _count(test_iter)
    scaler = precision.grad_scaler(device)
    # The record is taken now, from the net as built and the optimizer as built,
    # before any checkpoint is read: a refused resume leaves both untouched.
    record = run_record(net, optimizer, scheduler, profile=profile, n_train=n_train, n_test=n_test,
                        batch_size=batch_size, resize=_resize_of(train_iter),
                        data_seed=getattr(train_iter, "seed", None), loss=type(loss).__name__,
                        precision=precision.name, world_size=world)
    path = None
    if checkpoint is not None:
        path = check_writable(checkpoint) if rank == 0 else Path(checkpoint)
    state = TrainState(net, optimizer, scheduler, scaler, record,
                       {"n_train": n_train, "n_test": n_test, "batch_size": batch_size, "profile": profile},
                       path, device, rank=rank, world=world, final_epoch=num_epochs)
    n_batches = num_batches(train_iter)
    probe = None   # a fixed balanced subset of the whole test set, then sharded like it
    if probes_per_epoch > 1 and n_batches and hasattr(test_iter, "subset") and n_test:
        probe = test_iter.subset(min(probe_images, n_test))
    sharded_test = world > 1 and hasattr(test_iter, "shard")
    if world > 1 and hasattr(train_iter, "shard"):   # each rank reads its share of every batch
        train_iter = train_iter.shard(rank, world)
    if sharded_test:
        test_iter = test_iter.shard(rank, world)
    probe_iter = probe.shard(rank, world) if probe is not None and sharded_test else probe
    probe_marks = set(marks(n_batches, probes_per_epoch)[:-1]) if probe_iter is not None else set()
    # every probe is also a point of the training curve (and where a checkpoint is written)
    point_marks = set(marks(n_batches, points_per_epoch)) | probe_marks if n_batches else set()
    history = History(device=device_name(device), profile=profile, n_train=n_train, n_test=n_test,
                      world_size=world, precision=precision.name,
                      probe_n=probe.num_examples if probe is not None else None)
    main = rank == 0
    say = (lambda text: print(text, flush=True)) if main else (lambda text: None)
    return Run(net=net, model=_wrap(net, device, world, compile, say), optimizer=optimizer,
                scheduler=scheduler, loss=loss, device=device, autocast=precision.autocast(device),
                scaler=scaler, state=state, history=history, train_iter=train_iter, test_iter=test_iter,
                probe_iter=probe_iter, sharded_test=sharded_test, n_batches=n_batches,
                point_marks=point_marks, probe_marks=probe_marks, num_epochs=num_epochs,
                batch_size=batch_size, channels_last=channels_last, check_every=check_every,
                diverge_factor=diverge_factor, aux_weight=aux_weight, rank=rank, main=main,
                progress=bool(progress if progress is not None else env_flag("D2L_PROGRESS", True)) and main, live_plot=(live_plot if live_plot is not None else in_notebook()) if main else False)


def _resize_of(it) -> Any:
    size = getattr(it, "size", None)
    return list(size) if isinstance(size, tuple) else size


def resume_run(run: Run) -> tuple[int, int, dict]:
    state = run.state.resume()
    if state is None:
        return 0, 0, {}
    run.history = History.from_dict(state["history"])
    start, start_batch = state["epoch"], state.get("batch", 0)
    if start >= run.num_epochs:
        verb = "loaded a finished run"
    elif start_batch:
        verb = f"resuming in epoch {start + 1} after batch {start_batch}"
    else:
        verb = f"resuming after epoch {start}"
    run.say(f"{verb} from {state['path']}")
    return start, start_batch, state.get("progress") or {}


def make_pace(run: Run, start: int, start_batch: int, carried: dict) -> Pace:
    """The pace line's timer for a run that starts at ``start``/``start_batch``: it counts
    what is left to train and to test, and closes its window before the first probe."""
    h, n = run.history, run.n_batches
    if not n or not h.n_train or start >= run.num_epochs:   # an unsized iterable: no estimate
        return Pace(run.say, run.device, images_per_batch=1, images_left=0, test_images=0,
                    seconds_before=0.0, limit=0)
    probes = sorted(m for m in run.probe_marks if m > start_batch)
    per_epoch_test = (h.n_test or 0) + (h.probe_n or 0) * len(run.probe_marks)
    epochs_left = run.num_epochs - start
    return Pace(run.say, run.device, images_per_batch=h.n_train / n,
                images_left=round(h.n_train * epochs_left - h.n_train * start_batch / n),
                test_images=per_epoch_test * epochs_left - (h.probe_n or 0) * (len(run.probe_marks) - len(probes)),
                seconds_before=h.wall_time + (carried.get("seconds", 0.0) if start_batch else 0.0),
                limit=(probes[0] if probes else n) - start_batch)


def out_of_memory_error(run: Run, err: BaseException) -> RuntimeError:
    """Free what the failed step held, then say what to change, in a way that works."""
    traceback.clear_frames(err.__traceback__)   # the batch and its activations live in those frames
    run.optimizer.zero_grad(set_to_none=True)
    gc.collect()
    if run.device.type == "cuda":
        torch.cuda.empty_cache()
        held = f" The net and optimizer still hold {torch.cuda.memory_allocated(run.device) / 2**30:.2f} GB;"
    else:
        held = ""
    ckpt = run.state.path
    new_run = (f" A smaller batch is a new run: give it another checkpoint file (or delete {ckpt}), "
               "since resume=True refuses a checkpoint written with another batch size."
               if ckpt is not None and run.state.exists() else "")
    return RuntimeError(
        f"{device_name(run.device)} ran out of memory on a batch of shape {run.batch_shape or '?'}. Lower the batch size "
        "(e.g. batch_size=32) or the resize (e.g. resize=96), or pass amp=True to halve activation memory."
        + new_run + held + (" `del net, optimizer` or restart the kernel to free them." if held else ""))


def batches_from(run: Run, skip: int):
    if skip and hasattr(run.train_iter, "iter_from"):
        return run.train_iter.iter_from(skip)
    batches = iter(run.train_iter)
    for _ in range(skip):   # any other iterable: make and drop the batches already seen
        next(batches)
    return batches
