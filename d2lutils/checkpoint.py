"""Checkpoints that lose nothing and run no code.

* **Safe to load.** Files are read with ``torch.load(..., weights_only=True)``:
  tensors, numbers, strings and containers only, so a crafted file cannot run code.
* **Checked before use.** Each file carries a SHA-256 digest of its contents and a
  *run record*: the net's class and parameter shapes, a digest of its starting
  weights, the optimizer's type and hyperparameters, the scheduler, the data
  (sizes, batch, resize, seed) and the profile. A resume compares the record with
  the new run's and refuses any difference, naming each one, *before* any state is
  loaded, so a refused resume leaves the net untouched.
* **Never half-written.** A save writes a temporary file, syncs it, keeps the
  previous checkpoint as ``<name>.prev`` and renames the new one into place. A
  damaged newest file falls back to that previous one, and says so. The save that
  finishes a run drops ``<name>.prev``: a finished run is one file (AlexNet's, with
  Adam's state, is 0.56 GB), so a book's worth of runs does not fill a disk twice over.
* **One writer.** :class:`CheckpointLock` holds an OS lock on ``<name>.lock`` for
  the whole run; a second run on the same file is refused at once. The lock dies
  with its process, so a killed run leaves nothing stale.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import distributed as dist
from ._io import atomic_write, refuse_symlink
from .errors import (
    ArgumentError,
    CheckpointCorruptError,
    CheckpointError,
    CheckpointLockedError,
    CheckpointMismatchError,
)

__all__ = [
    "FORMAT",
    "run_record",
    "weights_digest",
    "save_checkpoint",
    "read_checkpoint",
    "load_checkpoint",
    "load_weights",
    "check_writable",
    "CheckpointLock",
    "TrainState",
    "capture_rng",
    "restore_rng",
]

FORMAT = "d2lutils-checkpoint/2"
# Scheduler state that changes as training goes on, so it is not part of the record.
_VOLATILE = {"last_epoch", "_step_count", "_last_lr", "_get_lr_called_within_step", "_is_initial",
             "verbose"}


def _path(checkpoint: Any, name: str = "checkpoint") -> Path:
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise ArgumentError(f"{name} must be a file path (str or pathlib.Path); got {checkpoint!r}")
    path = Path(checkpoint).expanduser()
    if str(checkpoint) == "" or path.is_dir():
        raise ArgumentError(f"{name}={str(checkpoint)!r} is a folder, not a file name; "
                            "give a file such as 'checkpoints/alexnet.pt'")
    return path


def _prev(path: Path) -> Path:
    return path.with_name(path.name + ".prev")


def _update(h, obj: Any) -> None:
    """Feed ``obj`` to hash ``h`` in a canonical order: dict keys sorted, tensors by
    dtype, shape and bytes, other leaves by ``repr`` (exact for floats)."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu").contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        h.update(b"{")
        for k in sorted(obj, key=repr):
            h.update(repr(k).encode() + b":")
            _update(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[" if isinstance(obj, list) else b"(")
        for x in obj:
            _update(h, x)
        h.update(b"]")
    else:
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def _digest(obj: Any) -> str:
    h = hashlib.sha256()
    _update(h, obj)
    return h.hexdigest()


def weights_digest(net: nn.Module) -> str:
    """SHA-256 of the net's parameters and buffers: equal for two nets exactly when
    their weights are equal (a fresh net built with the same seed has the same one)."""
    return _digest(dict(net.state_dict()))


def _qualname(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _plain(v: Any) -> Any:
    """A value as numbers, strings, lists and dicts, for the record."""
    if isinstance(v, torch.Tensor):
        return v.tolist()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return repr(v)


def run_record(net: nn.Module, optimizer: torch.optim.Optimizer | None = None,
               scheduler: Any | None = None, **run: Any) -> dict[str, Any]:
    """What makes a run this run: compared on resume, key by key.

    Call it *before* training (and before loading a checkpoint): it records the
    net's current weights as its starting weights, and the optimizer's
    hyperparameters as built. ``run`` adds plain values (data sizes, batch size,
    resize, seed, profile, ...).
    """
    net_class = net.module if hasattr(net, "module") and isinstance(net.module, nn.Module) else net
    record: dict[str, Any] = {
        # The class's name, not its module: a chapter's `__main__.AlexNet` and the generated
        # `d2lutils.models.AlexNet` are the same net, and their parameter shapes say so.
        "net": {"class": type(net_class).__qualname__,
                "params": {k: list(v.shape) for k, v in net_class.state_dict().items()},
                "start_weights": weights_digest(net_class)},
    }
    if optimizer is not None:
        record["optimizer"] = {
            "class": _qualname(optimizer),
            "groups": [{k: _plain(v) for k, v in g.items() if k != "params"}
                       for g in optimizer.param_groups],
            "group_sizes": [len(g["params"]) for g in optimizer.param_groups],
        }
    if scheduler is not None:
        state = scheduler.state_dict() if hasattr(scheduler, "state_dict") else {}
        record["scheduler"] = {"class": _qualname(scheduler),
                               "settings": {k: _plain(v) for k, v in state.items() if k not in _VOLATILE}}
    record["run"] = {k: _plain(v) for k, v in run.items()}
    return record


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(d, list) and d and all(isinstance(x, dict) for x in d):
        out = {}
        for i, v in enumerate(d):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: d}


def record_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Each key whose value differs, as ``key: checkpoint X, this run Y``."""
    a, b = _flatten(saved), _flatten(current)
    out = []
    for k in sorted(set(a) | set(b)):
        if a.get(k, "<absent>") != b.get(k, "<absent>"):
            show = lambda v: "<absent>" if v == "<absent>" else repr(v)
            out.append(f"{k}: checkpoint {show(a.get(k, '<absent>'))}, this run {show(b.get(k, '<absent>'))}")
    return out


def check_writable(checkpoint: str | os.PathLike) -> Path:
    """Make sure a checkpoint can be written there (before any training is spent).

    Raises:
        ArgumentError: the path is a folder, or its folder cannot be created or written.
        ArgumentError: the path is a symbolic link (a save would write through it).
    """
    path = _path(checkpoint)
    refuse_symlink(path, "checkpoint")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".probe")
        os.close(fd)
        os.remove(tmp)
    except OSError as e:
        raise ArgumentError(f"checkpoint={str(checkpoint)!r}: cannot write in {path.parent} "
                            f"({e.strerror or e}); choose a writable folder") from None
    return path


def save_checkpoint(path: str | os.PathLike, net: nn.Module, optimizer: torch.optim.Optimizer,
                    history: Any, epoch: int, meta: dict[str, Any] | None = None,
                    scheduler: Any | None = None, batch: int = 0,
                    progress: dict[str, Any] | None = None,
                    record: dict[str, Any] | None = None,
                    rng: dict[str, Any] | None = None, scaler: Any | None = None,
                    keep_previous: bool = True) -> None:
    """Write net, optimizer, scheduler, history, RNG state and the run record.

    ``epoch`` epochs are finished and ``batch`` batches of the next one are done;
    ``progress`` holds that epoch's running sums (each rank's own), so a resumed run
    carries on exactly.
    ``rng`` replaces this process's RNG state (a multi-process run passes every rank's).
    The write is atomic and keeps the previous file as ``<name>.prev``; with
    ``keep_previous=False`` (the run's last save) it removes ``<name>.prev`` once the
    new file is in place.
    """
    path = _path(path)
    module = net.module if hasattr(net, "module") and isinstance(net.module, nn.Module) else net
    state = {
        "format": FORMAT,
        "epoch": epoch,
        "batch": batch,
        "progress": progress or {},
        "model": module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "history": history.to_dict() if hasattr(history, "to_dict") else history,
        "rng": rng if rng is not None else {"torch": [torch.get_rng_state()],
                                            "cuda_per_rank": [_cuda_rng(None)]},
        "meta": meta or {},
        "record": record or {},
    }
    state["digest"] = _digest(state)
    try:
        atomic_write(path, lambda f: torch.save(state, f), keep_previous=_prev(path) if keep_previous else None,
                     what="checkpoint")
        if not keep_previous:
            _prev(path).unlink(missing_ok=True)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise CheckpointError(str(e.strerror or e)) from None
        raise


def _read_one(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip or weights-only errors: all mean "not a good file"
        raise CheckpointCorruptError(f"{path}: cannot be read as a checkpoint ({type(e).__name__}: "
                                     f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(
            f"{path}: not a checkpoint written by d2lutils (a plain state_dict? load that with "
            "net.load_state_dict(torch.load(path, weights_only=True))).")
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: written by an older d2lutils ({state.get('format', 'no format tag')}, "
                              f"this one reads {FORMAT}); delete it to train again.")
    digest = state.pop("digest", None)
    if digest != _digest(state):
        raise CheckpointCorruptError(f"{path}: its contents do not match their SHA-256 digest "
                                     "(the file was altered or damaged)")
    return state


def read_checkpoint(path: str | os.PathLike, verbose: bool = True) -> dict[str, Any]:
    """Read and verify a checkpoint without loading it into anything.

    Falls back to ``<name>.prev`` (the checkpoint before it) when the newest file is
    damaged, and says so. Returns the state dict, with ``state["path"]`` the file used.

    Raises:
        CheckpointCorruptError: neither file is usable.
        CheckpointError: the file is not a d2lutils checkpoint.
    """
    path = _path(path)
    if not path.exists() and not _prev(path).exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    problems = []
    for candidate in (path, _prev(path)):
        if not candidate.exists():
            continue
        try:
            state = _read_one(candidate)
        except CheckpointCorruptError as e:
            problems.append(str(e))
            continue
        if problems and verbose:
            print(f"warning: {problems[0]}; using the previous checkpoint {candidate} instead")
        state["path"] = str(candidate)
        return state
    raise CheckpointCorruptError("; ".join(problems) + ". No good checkpoint is left: delete "
                                 f"{path} (and {_prev(path).name}) to train again.")


def load_checkpoint(path: str | os.PathLike, net: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any | None = None,
                    record: dict[str, Any] | None = None, scaler: Any | None = None) -> dict[str, Any]:
    """Verify a checkpoint, compare its run record with ``record`` (when given), and
    only then load it into ``net`` (and ``optimizer`` and ``scheduler``).

    Raises:
        CheckpointMismatchError: the records differ; the message lists every
            difference, and nothing has been loaded.
        CheckpointCorruptError, CheckpointError: see :func:`read_checkpoint`.
    """
    state = read_checkpoint(path)
    if record is not None:
        diffs = record_differences(state.get("record", {}), record)
        if diffs:
            raise CheckpointMismatchError(
                f"{state['path']} was written by another run; nothing was loaded. Differences:\n  "
                + "\n  ".join(diffs)
                + "\nDelete the checkpoint (or pass resume=False, or another checkpoint path) to start over.")
    module = net.module if hasattr(net, "module") and isinstance(net.module, nn.Module) else net
    try:
        module.load_state_dict(state["model"])
        if optimizer is not None:
            optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler") is not None:
            scaler.load_state_dict(state["scaler"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointMismatchError(f"{state['path']} does not fit this net or optimizer: {e}") from None
    return state


def load_weights(path: str | os.PathLike, net: nn.Module) -> dict[str, Any]:
    """Load only the trained weights of a checkpoint into ``net`` (for evaluation).

    Checks the checksum and that the checkpoint was made for a net of the same
    class and parameter shapes; the optimizer and the rest of the run may differ.
    Returns the state (``state["history"]`` is the run's history as a dict).
    """
    state = read_checkpoint(path)
    saved = state.get("record", {}).get("net", {})
    current = run_record(net)["net"]
    diffs = [d for d in record_differences({"net": saved}, {"net": current})
             if not d.startswith("net.start_weights")]
    if diffs:
        raise CheckpointMismatchError(f"{state['path']} holds another net; nothing was loaded:\n  "
                                      + "\n  ".join(diffs))
    module = net.module if hasattr(net, "module") and isinstance(net.module, nn.Module) else net
    module.load_state_dict(state["model"])
    return state


class CheckpointLock:
    """An exclusive OS lock on ``<checkpoint>.lock`` while a run writes the checkpoint.

    ``with CheckpointLock(path): ...``. A second lock on the same file, from this or
    any other process, raises :class:`~d2lutils.errors.CheckpointLockedError` naming the holder's PID.
    The OS drops the lock when its process ends, however it ends.
    """

    def __init__(self, checkpoint: str | os.PathLike):
        self.path = _path(checkpoint)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> "CheckpointLock":
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        refuse_symlink(self.lock_path, "lock file")
        try:  # O_NOFOLLOW: a link planted between the check and the open is refused too
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as e:
            if e.errno == errno.ELOOP:
                refuse_symlink(self.lock_path, "lock file")
            raise CheckpointError(f"cannot open the lock file {self.lock_path} ({e.strerror or e})") from None
        try:
            _lock(fd)
        except OSError:
            try:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise CheckpointLockedError(
                f"{self.path} is being written by another run (process {holder}). Wait for it to "
                "finish, or give this run another checkpoint file.") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                _unlock(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "CheckpointLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


if sys.platform.startswith("win"):  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


# -- RNG state: one place that captures and restores it --------------------------------
def _cuda_rng(device: torch.device | None) -> torch.Tensor | None:
    """This process's CUDA generator state on its own GPU (``None`` without CUDA)."""
    if not torch.cuda.is_available():
        return None
    if device is None or device.type != "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    return torch.cuda.get_rng_state(device)


def capture_rng(device: torch.device | None = None) -> dict[str, Any]:
    """This process's RNG state: the CPU generator, and the CUDA generator of the GPU it
    trains on (dropout masks come from these)."""
    return {"torch": torch.get_rng_state(), "cuda": _cuda_rng(device)}


def restore_rng(rng: dict[str, Any], rank: int, world: int, device: torch.device | None = None) -> None:
    """Restore rank ``rank``'s own generators from a checkpoint's ``rng`` entry.

    Every rank saved its own CPU state (``rng["torch"]``) and its own GPU's CUDA state
    (``rng["cuda_per_rank"]``), so ``cuda:k`` gets back ``cuda:k``'s state, not rank 0's.
    Checkpoints of earlier versions hold ``rng["cuda"]`` (every GPU as seen by rank 0);
    that is only restored by a single process.
    """
    cpu = rng.get("torch") or []
    if len(cpu) == world:
        torch.set_rng_state(cpu[rank])
    if not torch.cuda.is_available():
        return
    per_rank = rng.get("cuda_per_rank")
    if per_rank is not None and len(per_rank) == world and per_rank[rank] is not None:
        dev = device if device is not None and device.type == "cuda" else torch.device(
            "cuda", torch.cuda.current_device())
        torch.cuda.set_rng_state(per_rank[rank], dev)
    elif per_rank is None and world == 1 and rng.get("cuda") is not None \
            and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])


@dataclass
class TrainState:
    """What a run saves and restores: net, optimizer, scheduler, gradient scaler, every
    rank's RNG, the history and the position (epoch, batch, running sums).

    :meth:`save` and :meth:`resume` are called by every rank of a multi-process run
    (they gather and share state); only rank 0 touches the file.
    """

    net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any | None
    scaler: Any | None          # saved only when it is enabled (fp16)
    record: dict[str, Any]
    meta: dict[str, Any]
    path: Path | None
    device: torch.device
    rank: int = 0
    world: int = 1
    final_epoch: int | None = None   # the save after this epoch finishes the run
    _scaler_on: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self._scaler_on = self.scaler is not None and self.scaler.is_enabled()

    def save(self, history: Any, epoch: int, batch: int = 0, progress: dict[str, Any] | None = None) -> None:
        """Write the checkpoint (every rank calls this; rank 0 writes)."""
        rngs = dist.gather_objects(capture_rng(self.device))
        if self.rank == 0 and self.path is not None:
            save_checkpoint(self.path, self.net, self.optimizer, history, epoch, self.meta, self.scheduler,
                            batch=batch, progress=progress, record=self.record,
                            rng={"torch": [r["torch"] for r in rngs],
                                 "cuda_per_rank": [r["cuda"] for r in rngs]},
                            scaler=self.scaler if self._scaler_on else None,
                            keep_previous=not (batch == 0 and self.final_epoch is not None
                                               and epoch >= self.final_epoch))
        dist.barrier()

    def exists(self) -> bool:
        return self.path is not None and (self.path.exists() or _prev(self.path).exists())

    def resume(self) -> dict[str, Any] | None:
        """Load the checkpoint into net, optimizer, scheduler and scaler after checking its
        record, restore this rank's RNG, and return the state (``None``: nothing to resume)."""
        if not self.exists():
            return None
        state = load_checkpoint(self.path, self.net, self.optimizer, self.scheduler, record=self.record,
                                scaler=self.scaler if self._scaler_on else None)
        restore_rng(state.get("rng") or {}, self.rank, self.world, self.device)
        return state
