"""Training: ``train_ch5`` as the seeds call it, with correct averages,
checkpoints that survive a kill, and clear errors for NaN loss and GPU OOM."""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

__all__ = [
    "History",
    "TrainingDivergedError",
    "try_gpu",
    "device_name",
    "set_seed",
    "evaluate_accuracy",
    "save_checkpoint",
    "load_checkpoint",
    "train_ch5",
]


class TrainingDivergedError(FloatingPointError):
    """The training loss became NaN or infinite."""


@dataclass
class History:
    """What ``train_ch5`` measured, one entry per epoch, plus how it was run."""

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    images_per_sec: list[float] = field(default_factory=list)
    device: str = ""
    profile: str = ""
    n_train: int | None = None
    n_test: int | None = None

    @property
    def wall_time(self) -> float:
        return float(sum(self.seconds))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "History":
        return cls(**d)

    def save_json(self, path: str | os.PathLike) -> None:
        _atomic_write_bytes(Path(path), json.dumps(self.to_dict(), indent=1).encode())


def try_gpu() -> torch.device:
    """The best device here: CUDA, then Apple's MPS, then the CPU.

    Seed 000 writes ``torch.cuda.is_available`` without parentheses; a function
    object is always true, so that code asks for CUDA even where there is none.
    """
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_name(device: str | torch.device) -> str:
    """A readable name, e.g. ``cuda (NVIDIA H100 80GB HBM3)`` or ``cpu (2 threads)``."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def set_seed(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (every device). ``deterministic`` also asks
    torch for deterministic kernels, which can be slower on a GPU."""
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


def _model_device(net: nn.Module) -> torch.device:
    p = next(net.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _autocast(device: torch.device, amp: bool):
    if amp and device.type in ("cuda", "cpu", "mps"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def evaluate_accuracy(data_iter, net, device: str | torch.device | None = None, *,
                      amp: bool = False, channels_last: bool = False) -> float:
    """Fraction of correct predictions of ``net`` over ``data_iter``.

    Accepts the seed's argument order ``(data_iter, net)`` and d2l's newer
    ``(net, data_iter)``. Runs under ``torch.inference_mode`` in eval mode and
    restores the net's previous mode. Works on any device.
    """
    if isinstance(data_iter, nn.Module):
        data_iter, net = net, data_iter
    device = torch.device(device) if device is not None else _model_device(net)
    was_training = net.training
    net.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    n = 0
    with torch.inference_mode(), _autocast(device, amp):
        for X, y in data_iter:
            X = X.to(device, non_blocking=True)
            if channels_last:
                X = X.contiguous(memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
            correct += (net(X).argmax(dim=1) == y).sum()
            n += y.numel()
    net.train(was_training)
    return correct.item() / max(n, 1)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_checkpoint(path: str | os.PathLike, net: nn.Module, optimizer: torch.optim.Optimizer,
                    history: History, epoch: int, meta: dict[str, Any] | None = None,
                    scheduler: Any | None = None) -> None:
    """Write net, optimizer, history and RNG state atomically (temp file + rename),
    so a run killed while saving keeps its previous checkpoint intact."""
    import io

    state = {
        "epoch": epoch,
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "history": history.to_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "meta": meta or {},
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    _atomic_write_bytes(Path(path), buf.getvalue())


def load_checkpoint(path: str | os.PathLike, net: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any | None = None) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` into ``net`` (and
    ``optimizer`` and ``scheduler``, when given)."""
    try:
        state = torch.load(path, map_location=_model_device(net), weights_only=False)
    except Exception as e:
        raise RuntimeError(f"{path}: cannot read this checkpoint ({e}). Delete it to start over.") from e
    net.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    return state


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


def train_ch5(net: nn.Module, train_iter: Iterable, test_iter: Iterable, batch_size: int,
              optimizer: torch.optim.Optimizer, device: str | torch.device | None,
              num_epochs: int, *, loss: Callable | None = None,
              checkpoint: str | os.PathLike | None = None, resume: bool = False,
              scheduler: Any | None = None,
              live_plot: bool | None = None, progress: bool | None = None,
              amp: bool = False, channels_last: bool = False, compile: bool = False,
              profile: str | None = None, check_every: int = 25) -> History:
    """Train ``net`` and print one line per epoch, as the seeds' ``train_ch5`` does.

    The loss printed is the mean cross-entropy per example of that epoch (the
    seeds divide by a batch count that is never reset, so theirs falls on its
    own). Each line also gives the wall time and the training images per second.

    Args:
        net, train_iter, test_iter, batch_size, optimizer, device, num_epochs:
            as in the seeds. ``batch_size`` is only reported; the iterators batch.
            ``device=None`` picks :func:`try_gpu`.
        loss: defaults to ``nn.CrossEntropyLoss()``.
        checkpoint: file written atomically after every epoch.
        resume: continue from ``checkpoint`` if it exists. A finished run is just
            loaded, so re-running a notebook cell does not retrain.
        scheduler: a ``torch.optim.lr_scheduler`` stepped after every batch (e.g. a
            warm-up); its state is checkpointed with the optimizer's.
        live_plot: redraw the learning curves after every epoch (default: in a notebook).
        progress: show a tqdm bar per epoch (default: on, unless ``$D2L_PROGRESS=0``).
        amp: bfloat16 autocast (worth it on recent GPUs; the CPU default is fp32).
        channels_last: NHWC memory layout for net and batches (faster convolutions
            on most CPUs and tensor-core GPUs).
        compile: run the net through ``torch.compile``. The first batches pay the
            compilation (about 85 s for AlexNet on a 2-core CPU), so it pays off only
            for long runs on a GPU. Checkpoints keep the plain module's weights.
        profile: the name printed in the header (default: ``$D2L_PROFILE`` or "custom").
        check_every: test the loss for NaN/inf every this many batches (each
            check waits for the GPU, so not every batch).

    Returns:
        The :class:`History` of all epochs, including resumed ones.

    Raises:
        TrainingDivergedError: the loss became NaN or inf.
        RuntimeError: the GPU ran out of memory (with what to change).
    """
    from .plot import LiveCurves

    device = torch.device(device) if device is not None else try_gpu()
    loss = loss if loss is not None else nn.CrossEntropyLoss()
    net = net.to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    profile = profile or os.environ.get("D2L_PROFILE") or "custom"
    n_train, n_test = _count(train_iter), _count(test_iter)
    history = History(device=device_name(device), profile=profile, n_train=n_train, n_test=n_test)
    meta = {"n_train": n_train, "n_test": n_test, "batch_size": batch_size, "profile": profile}
    start = 0
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if resume and ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt, net, optimizer, scheduler)
        old = {k: state["meta"].get(k) for k in ("n_train", "n_test", "batch_size")}
        new = {k: meta[k] for k in old}
        if old != new:
            raise ValueError(f"{ckpt} was written for {old}, this run is {new}. "
                             "Delete the checkpoint or pass resume=False to start over.")
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        history = History.from_dict(state["history"])
        start = state["epoch"]
        verb = "loaded a finished run" if start >= num_epochs else f"resuming after epoch {start}"
        print(f"{verb} from {ckpt}")
    if progress is None:
        progress = os.environ.get("D2L_PROGRESS", "1") != "0"
    tqdm = _progress_bar_class(progress)
    live = LiveCurves() if (live_plot if live_plot is not None else _in_notebook()) else None
    model = torch.compile(net) if compile else net  # `net` keeps the weights and their names

    print(f"training on {device_name(device)} | profile {profile} | "
          f"{n_train if n_train is not None else '?'} train / "
          f"{n_test if n_test is not None else '?'} test images | "
          f"{num_epochs} epochs | batch {batch_size}")
    for e, _ in enumerate(history.epoch):
        print(_epoch_line(history, e))
    net.train()
    try:
        for epoch in range(start, num_epochs):
            if hasattr(train_iter, "set_epoch"):
                train_iter.set_epoch(epoch)
            t0 = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.long, device=device)
            n = 0
            bar = tqdm(train_iter, desc=f"epoch {epoch + 1}/{num_epochs}", leave=False,
                       disable=not progress, mininterval=1.0)
            for i, (X, y) in enumerate(bar):
                X = X.to(device, non_blocking=True)
                if channels_last:
                    X = X.contiguous(memory_format=torch.channels_last)
                y = y.to(device, non_blocking=True)
                with _autocast(device, amp):
                    y_hat = model(X)
                    l = loss(y_hat, y)
                optimizer.zero_grad(set_to_none=True)
                l.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                loss_sum += l.detach().float() * y.numel()
                correct += (y_hat.detach().argmax(dim=1) == y).sum()
                n += y.numel()
                if (i + 1) % check_every == 0:
                    _check_finite(loss_sum, epoch, i, optimizer, ckpt)
            _check_finite(loss_sum, epoch, None, optimizer, ckpt)
            test_acc = evaluate_accuracy(test_iter, model, device, amp=amp, channels_last=channels_last)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = time.perf_counter() - t0
            history.epoch.append(epoch + 1)
            history.train_loss.append(loss_sum.item() / n)
            history.train_acc.append(correct.item() / n)
            history.test_acc.append(test_acc)
            history.seconds.append(dt)
            history.images_per_sec.append(n / dt)
            if ckpt is not None:
                save_checkpoint(ckpt, net, optimizer, history, epoch + 1, meta, scheduler)
            print(_epoch_line(history, -1))
            if live is not None:
                live.update(history)
    except Exception as err:
        if _is_oom(err):
            shape = tuple(X.shape) if "X" in locals() else "?"
            raise RuntimeError(
                f"{device_name(device)} ran out of memory on a batch of shape {shape}. "
                "Lower the batch size (e.g. batch_size=32) or the resize (e.g. resize=96), "
                "or pass amp=True to halve activation memory."
                + (f" Training resumes from {ckpt} with resume=True." if ckpt else "")) from err
        raise
    finally:
        if live is not None:
            live.close()
    if history.epoch:
        print(f"done: {len(history.epoch)} epochs in {history.wall_time:.1f} s on {history.device}, "
              f"final test acc {history.test_acc[-1]:.3f}")
    return history


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


def _check_finite(loss_sum: torch.Tensor, epoch: int, batch: int | None,
                  optimizer: torch.optim.Optimizer, ckpt: Path | None) -> None:
    if torch.isfinite(loss_sum).item():
        return
    lrs = sorted({g.get("lr") for g in optimizer.param_groups})
    where = f"epoch {epoch + 1}" + (f", by batch {batch + 1}" if batch is not None else "")
    raise TrainingDivergedError(
        f"The training loss became {loss_sum.item()} ({where}). The weights are now "
        f"garbage. Lower the learning rate (now {lrs}), check the initialisation, or "
        "normalise the inputs; then train again"
        + (f" (the last good epoch is saved in {ckpt})." if ckpt else "."))


def _epoch_line(h: History, i: int) -> str:
    return (f"epoch {h.epoch[i]}, loss {h.train_loss[i]:.4f}, train acc {h.train_acc[i]:.3f}, "
            f"test acc {h.test_acc[i]:.3f}, time {h.seconds[i]:.1f} sec, "
            f"{h.images_per_sec[i]:.0f} img/s")
