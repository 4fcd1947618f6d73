"""Training: ``train_ch5`` as the seeds call it, with correct averages, learning curves
inside an epoch, checkpoints that survive a kill, clear errors, and several processes
under ``torchrun``."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from . import distributed as dist
from .checkpoint import CheckpointLock, check_writable, load_checkpoint, run_record, save_checkpoint
from .errors import ArgumentError, TrainingDivergedError, check_bool, check_int, check_number

__all__ = [
    "History",
    "TrainingDivergedError",
    "try_gpu",
    "device_name",
    "set_seed",
    "amp_dtype",
    "make_grad_scaler",
    "evaluate_accuracy",
    "train_ch5",
]


@dataclass
class History:
    """What ``train_ch5`` measured, and how it was run.

    Per epoch: ``epoch``, ``train_loss``, ``train_acc`` (means over the epoch),
    ``test_acc`` (the whole test iterator), ``seconds`` (wall time, evaluation
    included) and ``images_per_sec`` (training images over training time alone).

    Inside an epoch, so that a one-epoch run still draws a curve:

    * ``step_epoch``, ``step_loss``, ``step_acc``: the training loss and accuracy over
      each stretch of about 1/``points_per_epoch`` of an epoch, at the fractional
      epoch where the stretch ends;
    * ``probe_epoch``, ``probe_acc``: test accuracy on a small fixed balanced subset of
      ``probe_n`` test images, a few times per epoch.
    """

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    images_per_sec: list[float] = field(default_factory=list)
    step_epoch: list[float] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    step_acc: list[float] = field(default_factory=list)
    probe_epoch: list[float] = field(default_factory=list)
    probe_acc: list[float] = field(default_factory=list)
    probe_n: int | None = None
    first_loss: float | None = None
    device: str = ""
    profile: str = ""
    n_train: int | None = None
    n_test: int | None = None
    world_size: int = 1
    precision: str = "fp32"

    @property
    def wall_time(self) -> float:
        return float(sum(self.seconds))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "History":
        """Rebuild a history; keys this version does not know are ignored, missing ones
        take their defaults (so older JSON files still load)."""
        if not isinstance(d, dict):
            raise ArgumentError(f"d must be a dict as written by History.to_dict; got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def load_json(cls, path: str | os.PathLike) -> "History":
        """Read a history written by :meth:`save_json` (plain JSON: loading runs no code)."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def save_json(self, path: str | os.PathLike) -> None:
        """Write the history as JSON, atomically (a small file the comparison chapter reads)."""
        _atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=1))

    def summary(self) -> str:
        """One line: device, profile, images, epochs, wall time, final test accuracy."""
        if not self.epoch:
            return f"no finished epoch ({self.profile} profile, {self.device})"
        procs = f"{self.world_size} processes x " if self.world_size > 1 else ""
        return (f"{procs}{self.device} | profile {self.profile} | {self.n_train:,} train images x "
                f"{len(self.epoch)} epoch(s) | {self.wall_time / 60:.1f} min | "
                f"test acc {self.test_acc[-1]:.3f} on {self.n_test:,} images")


def try_gpu(i: int = 0) -> torch.device:
    """The best device here: CUDA GPU ``i``, then Apple's MPS, then the CPU.

    Seed 000 writes ``torch.cuda.is_available`` without parentheses; a function
    object is always true, so that code asks for CUDA even where there is none.
    ``i`` is d2l-en's argument: GPU ``i`` if it exists (else the CPU).
    """
    check_int("i", i, 0)
    if torch.cuda.is_available():
        return torch.device("cuda", i) if torch.cuda.device_count() > i else torch.device("cpu")
    mps = getattr(torch.backends, "mps", None)
    if i == 0 and mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_name(device: str | torch.device) -> str:
    """A readable name, e.g. ``cuda (NVIDIA H100 80GB HBM3)`` or ``cpu (2 threads)``."""
    device = _as_device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        n = torch.get_num_threads()
        return f"cpu ({n} thread{'s' if n != 1 else ''})"
    return str(device)


def _as_device(device: Any, name: str = "device") -> torch.device:
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise ArgumentError(f"{name}={device!r} is not a device; use 'cpu', 'cuda', 'cuda:1' or 'mps'") from None
    else:
        raise ArgumentError(f"{name} must be a torch.device or a string such as 'cpu' or 'cuda'; got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ArgumentError(f"{name}={str(dev)!r} but no CUDA GPU is available here; use d2l.try_gpu()")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ArgumentError(f"{name}={str(dev)!r} but this machine has {torch.cuda.device_count()} GPU(s)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ArgumentError(f"{name}='mps' but Apple's MPS is not available here")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ArgumentError(f"{name}={str(dev)!r}: d2lutils trains on 'cpu', 'cuda' or 'mps'")
    return dev


def set_seed(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (every device). ``deterministic`` also asks
    torch for deterministic kernels, which can be slower on a GPU."""
    check_int("seed", seed, 0)
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # numpy is a dependency, but seeding should never fail
        pass
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def amp_dtype(device: str | torch.device, amp: bool | str = True) -> torch.dtype | None:
    """The autocast dtype that ``amp`` means on ``device`` (``None``: plain fp32).

    ``amp=True`` picks bfloat16 on a CUDA GPU that has it (Ampere and newer:
    ``torch.cuda.is_bf16_supported()``), float16 on older ones (Colab's and Kaggle's
    T4, Kaggle's P100), and fp32 on a CPU or MPS, where reduced precision is slower.
    ``"bf16"`` or ``"fp16"`` force one; ``False`` is fp32.
    """
    device = torch.device(device)
    if amp is False or amp is None:
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if amp is not True:
        raise ArgumentError(f"amp must be True, False, 'bf16' or 'fp16'; got {amp!r}")
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def make_grad_scaler(device: str | torch.device, dtype: torch.dtype | None, **kwargs):
    """A ``torch.amp.GradScaler`` when ``dtype`` is float16 (its small range makes
    gradients underflow unless the loss is scaled up), else ``None``. The scaler
    skips every step whose gradients hold an inf or NaN and lowers its scale."""
    if dtype != torch.float16:
        return None
    return torch.amp.GradScaler(torch.device(device).type, **kwargs)


def _precision(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def _model_device(net: nn.Module) -> torch.device:
    p = next(net.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _count_correct(data_iter, net, device, dtype, channels_last) -> tuple[torch.Tensor, int]:
    correct = torch.zeros((), dtype=torch.long, device=device)
    n = 0
    with torch.inference_mode(), _autocast(device, dtype):
        for X, y in data_iter:
            X = X.to(device, non_blocking=True)
            if channels_last:
                X = X.contiguous(memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
            correct += (net(X).argmax(dim=1) == y).sum()
            n += y.numel()
    return correct, n


def evaluate_accuracy(data_iter, net, device: str | torch.device | None = None, *,
                      amp: bool | str = False, channels_last: bool = False) -> float:
    """Fraction of correct predictions of ``net`` over ``data_iter``.

    Accepts the seed's argument order ``(data_iter, net)`` and d2l's newer
    ``(net, data_iter)``. Runs under ``torch.inference_mode`` in eval mode and
    restores the net's previous mode. Works on any device.
    """
    if isinstance(data_iter, nn.Module):
        data_iter, net = net, data_iter
    if not isinstance(net, nn.Module):
        raise ArgumentError(f"net must be a torch.nn.Module; got {type(net).__name__}")
    device = _as_device(device) if device is not None else _model_device(net)
    was_training = net.training
    net.eval()
    try:
        correct, n = _count_correct(data_iter, net, device, amp_dtype(device, amp), channels_last)
    finally:
        net.train(was_training)
    if n == 0:
        raise ArgumentError("data_iter yielded no examples: nothing to evaluate")
    return correct.item() / n


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or (
        isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


def _count(it) -> int | None:
    """Examples per pass: our iterators know it; a DataLoader's dataset does."""
    if hasattr(it, "num_examples"):
        return int(it.num_examples)
    ds = getattr(it, "dataset", None)
    return len(ds) if ds is not None and hasattr(ds, "__len__") else None


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    try:
        ip = shell.get_ipython() if shell else None
    except Exception:
        return False
    return ip is not None and ip.__class__.__name__ == "ZMQInteractiveShell"


def _marks(n_batches: int, parts: int) -> list[int]:
    """Batch counts that split an epoch of ``n_batches`` into ``parts`` near-equal stretches."""
    return sorted({max(1, round(n_batches * k / parts)) for k in range(1, parts + 1)})


def _check_args(net, train_iter, test_iter, batch_size, optimizer, num_epochs, loss, checkpoint,
                resume, scheduler, amp, channels_last, compile, profile, check_every,
                points_per_epoch, probes_per_epoch, probe_images, diverge_factor, live_plot, progress):
    if not isinstance(net, nn.Module):
        raise ArgumentError(f"net must be a torch.nn.Module; got {type(net).__name__}")
    for name, it in (("train_iter", train_iter), ("test_iter", test_iter)):
        if not hasattr(it, "__iter__"):
            raise ArgumentError(f"{name} must be an iterable of (X, y) batches, such as "
                                f"d2l.load_data_fashion_mnist returns; got {type(it).__name__}")
    check_int("batch_size", batch_size, 1)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ArgumentError(f"optimizer must be a torch.optim.Optimizer, e.g. "
                            f"torch.optim.SGD(net.parameters(), lr=0.1); got {type(optimizer).__name__}")
    owned = {id(p) for p in net.parameters()}
    held = [p for g in optimizer.param_groups for p in g["params"]]
    foreign = sum(id(p) not in owned for p in held)
    if foreign or not held:
        raise ArgumentError(
            f"optimizer holds {foreign} of its {len(held)} parameter tensors from outside net, so "
            "training would not change net. Build it from this net after creating the net: "
            "optimizer = torch.optim.Adam(net.parameters(), lr=...)")
    for g in optimizer.param_groups:
        lr = g.get("lr")
        if isinstance(lr, torch.Tensor):
            lr = lr.item()
        # a step must be representable in the weights' own dtype (3.4e38 for float32)
        limit = torch.finfo(g["params"][0].dtype).max if g["params"][0].is_floating_point() else math.inf
        if not isinstance(lr, (int, float)) or not math.isfinite(lr) or not 0 <= lr < limit:
            raise ArgumentError(f"optimizer learning rate must be a finite number from 0 to below {limit:.3g} "
                                f"(the parameters' {str(g['params'][0].dtype).replace('torch.', '')} range); got {lr!r}")
    check_int("num_epochs", num_epochs, 1)
    if loss is not None and not callable(loss):
        raise ArgumentError(f"loss must be callable, e.g. nn.CrossEntropyLoss(); got {loss!r}")
    check_bool("resume", resume)
    if resume and checkpoint is None:
        raise ArgumentError("resume=True needs a checkpoint file to resume from: pass checkpoint=...")
    if scheduler is not None and not callable(getattr(scheduler, "step", None)):
        raise ArgumentError(f"scheduler must have a step() method (a torch.optim.lr_scheduler); got {scheduler!r}")
    if scheduler is not None and getattr(scheduler, "optimizer", optimizer) is not optimizer:
        raise ArgumentError("scheduler was built for another optimizer; build it from this one")
    if not (isinstance(amp, bool) or amp in ("bf16", "fp16")):
        raise ArgumentError(f"amp must be True, False, 'bf16' or 'fp16'; got {amp!r}")
    check_bool("channels_last", channels_last)
    check_bool("compile", compile)
    check_bool("live_plot", live_plot, allow_none=True)
    check_bool("progress", progress, allow_none=True)
    if profile is not None and not isinstance(profile, str):
        raise ArgumentError(f"profile must be a string (a name to print) or None; got {profile!r}")
    check_int("check_every", check_every, 1)
    check_int("points_per_epoch", points_per_epoch, 1)
    check_int("probes_per_epoch", probes_per_epoch, 1)
    check_int("probe_images", probe_images, 1)
    check_number("diverge_factor", diverge_factor, low=1.0)


def train_ch5(net: nn.Module, train_iter: Iterable, test_iter: Iterable, batch_size: int,
              optimizer: torch.optim.Optimizer, device: str | torch.device | None,
              num_epochs: int, *, loss: Callable | None = None,
              checkpoint: str | os.PathLike | None = None, resume: bool = False,
              scheduler: Any | None = None,
              live_plot: bool | None = None, progress: bool | None = None,
              amp: bool | str = False, channels_last: bool = False, compile: bool = False,
              profile: str | None = None, check_every: int = 25,
              points_per_epoch: int = 20, probes_per_epoch: int = 5,
              probe_images: int = 500, diverge_factor: float = 10.0) -> History:
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
            ``device=None`` picks :func:`try_gpu`.
        loss: defaults to ``nn.CrossEntropyLoss()``.
        checkpoint: file written atomically after every epoch and at every probe,
            with a record of the run and a checksum (see :mod:`d2lutils.checkpoint`).
            It is locked against a second run while this one trains, and checked for
            being writable before any training.
        resume: continue from ``checkpoint`` if it exists, mid-epoch included, after
            checking that it was written by this same run (net, optimizer, data,
            profile). A finished run is just loaded, so re-running a notebook cell
            does not retrain.
        scheduler: a ``torch.optim.lr_scheduler`` stepped after every batch (e.g. a
            warm-up); its state is checkpointed with the optimizer's.
        live_plot: redraw the learning curves at every point (default: in a notebook).
        progress: show a tqdm bar per epoch (default: on, unless ``$D2L_PROGRESS=0``).
        amp: mixed precision on a CUDA GPU: ``True`` picks bf16 where the GPU has it
            and fp16 with a gradient scaler elsewhere (see :func:`amp_dtype`); fp32 on a
            CPU. ``"bf16"``/``"fp16"`` force one.
        channels_last: NHWC memory layout for net and batches (faster convolutions
            on most CPUs and tensor-core GPUs).
        compile: run the net through ``torch.compile``. The first batches pay the
            compilation (about 85 s for AlexNet on a 2-core CPU), so it pays off only
            for long runs on a GPU. Checkpoints keep the plain module's weights.
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

    Returns:
        The :class:`History` of all epochs, including resumed ones.

    Raises:
        ArgumentError: an argument is wrong (named in the message), e.g. an
            optimizer built for another net.
        CheckpointMismatchError: ``resume=True`` and the checkpoint is another run's.
        CheckpointLockedError: another process is training into ``checkpoint``.
        TrainingDivergedError: the loss became NaN or inf, or exploded.
        RuntimeError: the GPU ran out of memory (with what to change).
    """
    _check_args(net, train_iter, test_iter, batch_size, optimizer, num_epochs, loss, checkpoint,
                resume, scheduler, amp, channels_last, compile, profile, check_every,
                points_per_epoch, probes_per_epoch, probe_images, diverge_factor, live_plot, progress)
    device = _as_device(device) if device is not None else try_gpu()
    device = dist.init(device)   # under torchrun: join the group, pick this rank's GPU
    run = _Run(net, train_iter, test_iter, batch_size, optimizer, device, num_epochs,
               loss if loss is not None else nn.CrossEntropyLoss(), checkpoint, resume, scheduler,
               live_plot, progress, amp, channels_last, compile,
               profile or os.environ.get("D2L_PROFILE") or "custom", check_every,
               points_per_epoch, probes_per_epoch, probe_images, diverge_factor)
    return run.fit()


class _Run:
    """The state of one ``train_ch5`` call; :meth:`fit` is the loop."""

    def __init__(self, net, train_iter, test_iter, batch_size, optimizer, device, num_epochs,
                 loss, checkpoint, resume, scheduler, live_plot, progress, amp, channels_last,
                 compile, profile, check_every, points_per_epoch, probes_per_epoch, probe_images,
                 diverge_factor):
        self.device, self.num_epochs, self.loss = device, num_epochs, loss
        self.optimizer, self.scheduler = optimizer, scheduler
        self.channels_last, self.check_every, self.diverge_factor = channels_last, check_every, diverge_factor
        self.world, self.rank = dist.world_size(), dist.rank()
        self.main = self.rank == 0
        self.net = net.to(device)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        n_train, n_test = _count(train_iter), _count(test_iter)
        self.dtype = amp_dtype(device, amp)
        self.scaler = make_grad_scaler(device, self.dtype)
        # The record is taken now, from the net as built and the optimizer as built,
        # before any checkpoint is read: a refused resume leaves both untouched.
        self.record = run_record(
            self.net, optimizer, scheduler, profile=profile, n_train=n_train, n_test=n_test,
            batch_size=batch_size, resize=_resize_of(train_iter), data_seed=getattr(train_iter, "seed", None),
            loss=type(loss).__name__, precision=_precision(self.dtype), world_size=self.world)
        self.ckpt = None
        if checkpoint is not None:
            self.ckpt = check_writable(checkpoint) if self.main else Path(checkpoint)
        # Data: in a multi-process run each rank reads its share of every global batch.
        self.train_iter, self.test_iter = train_iter, test_iter
        self.sharded_test = False
        if self.world > 1:
            if hasattr(train_iter, "shard"):
                self.train_iter = train_iter.shard(self.rank, self.world)
            if hasattr(test_iter, "shard"):
                self.test_iter, self.sharded_test = test_iter.shard(self.rank, self.world), True
        self.n_batches = len(train_iter) if hasattr(train_iter, "__len__") else None
        self.probe_iter = None
        if probes_per_epoch > 1 and self.n_batches and hasattr(test_iter, "subset") and n_test:
            probe = test_iter.subset(min(probe_images, n_test))
            self.probe_iter = probe.shard(self.rank, self.world) if self.sharded_test else probe
        self.probe_marks = (set(_marks(self.n_batches, probes_per_epoch)[:-1])
                            if self.probe_iter is not None else set())
        # every probe is also a point of the training curve (and where a checkpoint is written)
        self.point_marks = (set(_marks(self.n_batches, points_per_epoch)) | self.probe_marks
                            if self.n_batches else set())
        self.history = History(device=device_name(device), profile=profile, n_train=n_train,
                               n_test=n_test, world_size=self.world, precision=_precision(self.dtype),
                               probe_n=probe.num_examples if self.probe_iter is not None else None)
        self.meta = {"n_train": n_train, "n_test": n_test, "batch_size": batch_size, "profile": profile}
        self.resume, self.batch_size = resume, batch_size
        if progress is None:
            progress = os.environ.get("D2L_PROGRESS", "1") != "0"
        self.progress = progress and self.main
        self.live_plot = (live_plot if live_plot is not None else _in_notebook()) and self.main
        self.compile = compile

    # -- output only on rank 0 -------------------------------------------------------
    def say(self, text: str) -> None:
        if self.main:
            print(text, flush=True)

    # -- resume ------------------------------------------------------------------------
    def _resume(self) -> tuple[int, int, dict]:
        if not (self.resume and self.ckpt is not None and
                (self.ckpt.exists() or self.ckpt.with_name(self.ckpt.name + ".prev").exists())):
            return 0, 0, {}
        state = load_checkpoint(self.ckpt, self.net, self.optimizer, self.scheduler,
                                record=self.record, scaler=self.scaler)
        rng = state.get("rng") or {}
        torch_states = rng.get("torch") or []
        if len(torch_states) == self.world:
            torch.set_rng_state(torch_states[self.rank])
        cuda_states = rng.get("cuda")
        if cuda_states is not None and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        self.history = History.from_dict(state["history"])
        start, start_batch = state["epoch"], state.get("batch", 0)
        carried = state.get("progress") or {}
        if start >= self.num_epochs:
            verb = "loaded a finished run"
        elif start_batch:
            verb = f"resuming in epoch {start + 1} after batch {start_batch}"
        else:
            verb = f"resuming after epoch {start}"
        self.say(f"{verb} from {state['path']}")
        return start, start_batch, carried

    def _save(self, epoch: int, batch: int = 0, progress: dict | None = None) -> None:
        rngs = dist.gather_objects(torch.get_rng_state())   # every rank's dropout RNG
        if self.main and self.ckpt is not None:
            save_checkpoint(self.ckpt, self.net, self.optimizer, self.history, epoch, self.meta,
                            self.scheduler, batch=batch, progress=progress, record=self.record,
                            rng={"torch": rngs, "cuda": torch.cuda.get_rng_state_all()
                                 if torch.cuda.is_available() else None},
                            scaler=self.scaler)
        dist.barrier()

    # -- checks ------------------------------------------------------------------------
    def _check(self, window_loss: torch.Tensor, window_n: int, epoch: int, batch: int | None) -> None:
        total, n = dist.all_sum([float(window_loss), float(window_n)], self.device).tolist()
        if n == 0 or self.baseline is None:
            return
        mean = total / n
        where = f"epoch {epoch + 1}" + (f", by batch {batch + 1}" if batch is not None else "")
        lrs = sorted({float(g["lr"]) for g in self.optimizer.param_groups})
        saved = self.ckpt is not None and self.ckpt.exists()
        advice = (f"Lower the learning rate (now {lrs}), check the initialisation, or normalise the "
                  "inputs; then train again" + (f" (the last good state is in {self.ckpt})." if saved else "."))
        if not math.isfinite(mean):
            raise TrainingDivergedError(f"The training loss became {mean} ({where}). The weights are now "
                                        f"garbage. {advice}")
        limit = self.diverge_factor * self.baseline
        if mean > limit:
            raise TrainingDivergedError(
                f"The training loss exploded to {mean:.4g} ({where}), over {self.diverge_factor:g} times "
                f"its start ({self.baseline:.4g}), though it is still finite. {advice}")

    # -- the loop ----------------------------------------------------------------------
    def fit(self) -> History:
        from .plot import LiveCurves

        lock = CheckpointLock(self.ckpt) if (self.ckpt is not None and self.main) else None
        if lock is not None:
            lock.acquire()
        try:
            return self._fit(LiveCurves)
        finally:
            if lock is not None:
                lock.release()

    def _fit(self, LiveCurves) -> History:
        start, start_batch, carried = self._resume()
        h = self.history
        model = self.net
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            model = DDP(self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.compile:
            model = torch.compile(model)  # `self.net` keeps the weights and their names
        tqdm = _progress_bar_class(self.progress)
        live = LiveCurves() if self.live_plot else None
        procs = (f"{self.world} processes ({dist.backend_for(self.device)}), each " if self.world > 1 else "")
        self.say(f"training on {procs}{device_name(self.device)} | profile {h.profile} | "
                 f"{h.n_train if h.n_train is not None else '?'} train / "
                 f"{h.n_test if h.n_test is not None else '?'} test images | "
                 f"{self.num_epochs} epochs | batch {self.batch_size}"
                 + (f" | {h.precision}" if h.precision != "fp32" else ""))
        for e in range(len(h.epoch)):
            self.say(_epoch_line(h, e))
        self.baseline: float | None = None   # set at the first batch
        zero = lambda dtype=None: torch.zeros((), dtype=dtype, device=self.device)
        self.net.train()
        try:
            for epoch in range(start, self.num_epochs):
                if hasattr(self.train_iter, "set_epoch"):
                    self.train_iter.set_epoch(epoch)
                skip = start_batch if epoch == start else 0
                t0 = time.perf_counter()
                loss_sum, correct, n = zero(), zero(torch.long), 0
                seg_loss, seg_correct, seg_n = zero(), zero(torch.long), 0
                win_loss, win_n = zero(), 0
                done_before, train_time = 0.0, 0.0
                if skip:  # this rank's own sums so far, so the epoch adds up in the same order
                    mine = carried["ranks"][self.rank]
                    loss_sum += mine[0]
                    correct += int(mine[1])
                    n = int(mine[2])
                    done_before, train_time = carried["seconds"], carried["train_time"]
                if skip and hasattr(self.train_iter, "iter_from"):
                    batches = self.train_iter.iter_from(skip)
                else:
                    batches = iter(self.train_iter)
                    for _ in range(skip):  # any other iterable: make and drop the batches seen
                        next(batches)
                bar = tqdm(batches, desc=f"epoch {epoch + 1}/{self.num_epochs}", leave=False,
                           disable=not self.progress, mininterval=1.0, total=self.n_batches, initial=skip)
                t_train = time.perf_counter()
                for i, (X, y) in enumerate(bar, start=skip):
                    X = X.to(self.device, non_blocking=True)
                    if self.channels_last:
                        X = X.contiguous(memory_format=torch.channels_last)
                    y = y.to(self.device, non_blocking=True)
                    with _autocast(self.device, self.dtype):
                        y_hat = model(X)
                        l = self.loss(y_hat, y)
                    self.optimizer.zero_grad(set_to_none=True)
                    if self.scaler is not None:
                        self.scaler.scale(l).backward()
                        self.scaler.step(self.optimizer)   # skipped when a gradient is inf/NaN
                        self.scaler.update()
                    else:
                        l.backward()
                        self.optimizer.step()
                    if self.scheduler is not None:
                        self.scheduler.step()
                    l_sum = l.detach().float() * y.numel()
                    c = (y_hat.detach().argmax(dim=1) == y).sum()
                    loss_sum += l_sum; correct += c; n += y.numel()
                    seg_loss += l_sum; seg_correct += c; seg_n += y.numel()
                    win_loss += l_sum; win_n += y.numel()
                    if self.baseline is None:   # the scale against which a loss has "exploded"
                        if h.first_loss is None:  # the untrained loss, kept across resumes
                            first = dist.all_sum([float(l_sum), float(y.numel())], self.device).tolist()
                            h.first_loss = first[0] / first[1]
                        classes = y_hat.shape[-1] if y_hat.dim() == 2 else 1
                        self.baseline = max(h.first_loss, math.log(classes) if classes > 1 else 0.0, 1e-12)
                    at_point = i + 1 in self.point_marks and i + 1 < (self.n_batches or 0)
                    if (i + 1) % self.check_every == 0 or at_point:
                        self._check(win_loss, win_n, epoch, i)
                        win_loss.zero_(); win_n = 0
                    if not at_point:
                        continue
                    train_time += time.perf_counter() - t_train
                    s_loss, s_correct, s_n = dist.all_sum(
                        [float(seg_loss), float(seg_correct), float(seg_n)], self.device).tolist()
                    h.step_epoch.append(epoch + (i + 1) / self.n_batches)
                    h.step_loss.append(s_loss / s_n)
                    h.step_acc.append(s_correct / s_n)
                    seg_loss.zero_(); seg_correct.zero_(); seg_n = 0
                    if i + 1 in self.probe_marks:
                        h.probe_epoch.append(epoch + (i + 1) / self.n_batches)
                        h.probe_acc.append(self._evaluate(self.probe_iter, model))
                        elapsed = done_before + time.perf_counter() - t0
                        ranks = dist.gather_objects([float(loss_sum), int(correct), n])
                        self.say(_probe_line(h, sum(r[2] for r in ranks), elapsed))
                        self._save(epoch, batch=i + 1, progress={
                            "ranks": ranks, "seconds": elapsed, "train_time": train_time})
                    if live is not None:
                        live.update(h)
                    t_train = time.perf_counter()
                train_time += time.perf_counter() - t_train
                self._check(win_loss, win_n, epoch, None)
                g_loss, g_correct, g_n, s_loss, s_correct, s_n = dist.all_sum(
                    [float(loss_sum), float(correct), float(n), float(seg_loss), float(seg_correct),
                     float(seg_n)], self.device).tolist()
                if g_n == 0:
                    raise ArgumentError("train_iter yielded no batch: it holds no images")
                if s_n:
                    h.step_epoch.append(float(epoch + 1))
                    h.step_loss.append(s_loss / s_n)
                    h.step_acc.append(s_correct / s_n)
                test_acc = self._evaluate(self.test_iter, model)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                dt = done_before + time.perf_counter() - t0
                h.epoch.append(epoch + 1)
                h.train_loss.append(g_loss / g_n)
                h.train_acc.append(g_correct / g_n)
                h.test_acc.append(test_acc)
                h.seconds.append(dt)
                h.images_per_sec.append(g_n / max(train_time, 1e-9))
                self._save(epoch + 1)
                self.say(_epoch_line(h, -1))
                if live is not None:
                    live.update(h)
        except Exception as err:
            if self.world > 1:
                print(f"rank {self.rank} of {self.world} failed: {type(err).__name__}: {err}",
                      file=sys.stderr, flush=True)
            if _is_oom(err):
                shape = tuple(X.shape) if "X" in locals() else "?"
                raise RuntimeError(
                    f"{device_name(self.device)} ran out of memory on a batch of shape {shape}. "
                    "Lower the batch size (e.g. batch_size=32) or the resize (e.g. resize=96), "
                    "or pass amp=True to halve activation memory."
                    + (f" Training resumes from {self.ckpt} with resume=True." if self.ckpt else "")) from err
            raise
        finally:
            if live is not None:
                live.close()
        if h.epoch:
            self.say(f"done: {h.summary()}")
        return h

    def _evaluate(self, data_iter, model) -> float:
        was_training = model.training
        model.eval()
        try:
            correct, n = _count_correct(data_iter, model, self.device, self.dtype, self.channels_last)
        finally:
            model.train(was_training)
        if self.sharded_test:
            correct, n = dist.all_sum([float(correct), float(n)], self.device).tolist()
        else:
            correct = float(correct)
        return correct / max(n, 1)


def _resize_of(it) -> Any:
    size = getattr(it, "size", None)
    return list(size) if isinstance(size, tuple) else size


def _probe_line(h: History, n: int, elapsed: float) -> str:
    return (f"  epoch {h.probe_epoch[-1]:.2f}: {n} images, loss {h.step_loss[-1]:.4f}, "
            f"train acc {h.step_acc[-1]:.3f}, test acc {h.probe_acc[-1]:.3f} "
            f"({h.probe_n} images), {elapsed:.0f} s")


def _progress_bar_class(progress: bool):
    """tqdm's widget bar in a notebook with ipywidgets, its text bar elsewhere."""
    if progress and _in_notebook():
        try:
            import ipywidgets  # noqa: F401  (tqdm.notebook needs it)
            from tqdm.notebook import tqdm
            return tqdm
        except ImportError:
            pass
    from tqdm.std import tqdm
    return tqdm


def _epoch_line(h: History, i: int) -> str:
    return (f"epoch {h.epoch[i]}, loss {h.train_loss[i]:.4f}, train acc {h.train_acc[i]:.3f}, "
            f"test acc {h.test_acc[i]:.3f}, time {h.seconds[i]:.1f} sec, "
            f"{h.images_per_sec[i]:.0f} img/s")
