"""Data-parallel training with ``torch.distributed``, for runs launched by ``torchrun``.

``torchrun --nproc_per_node=N script.py`` starts N processes and sets ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` in each. :func:`init` joins them into one group
(NCCL between CUDA GPUs, gloo on CPUs); ``train_ch5`` calls it for you. Outside
``torchrun`` every function here acts as a single process of rank 0.

Each process holds the whole net (DistributedDataParallel averages the gradients
after every backward pass), reads its own shard of every global batch, and
contributes its sums to the printed loss and accuracy.
"""

from __future__ import annotations

import datetime
import math
import os
from typing import Any

import torch
import torch.distributed as dist

from .errors import ArgumentError, DistributedError

__all__ = ["init", "is_distributed", "rank", "world_size", "local_rank", "is_main",
           "all_sum", "barrier", "join", "leave", "gather_objects", "launched_by_torchrun", "backend_for",
           "timeout"]

ENV_TIMEOUT = "D2L_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0


def timeout() -> datetime.timedelta:
    """How long a rank waits for the others: ``$D2L_DIST_TIMEOUT`` seconds (default 300).

    Read when a group is joined, not at import, so a bad value cannot break
    ``import d2lutils``.

    Raises:
        ArgumentError: the variable is not a positive, finite number of seconds.
    """
    raw = os.environ.get(ENV_TIMEOUT, "").strip()
    if not raw:
        return datetime.timedelta(seconds=DEFAULT_TIMEOUT_S)
    try:
        secs = float(raw)
    except ValueError:
        secs = math.nan
    if not (math.isfinite(secs) and 0 < secs <= 10**8):
        raise ArgumentError(f"${ENV_TIMEOUT}={raw!r}: must be a positive number of seconds (at most 1e8), "
                            f"e.g. {ENV_TIMEOUT}=600; unset it for {DEFAULT_TIMEOUT_S:g}")
    return datetime.timedelta(seconds=secs)


def __getattr__(name: str) -> Any:
    # `distributed.TIMEOUT` was a module constant; it is now read on use (see timeout()).
    if name == "TIMEOUT":
        return timeout()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _env_int(name: str, default: int, low: int) -> int:
    """``$name`` as an int >= ``low`` (``default`` when unset), or an error naming it."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if value < low:
        raise ArgumentError(f"${name}={raw!r}: must be a whole number >= {low}. torchrun sets it; "
                            f"unset it when not launching with torchrun")
    return value


def launched_by_torchrun() -> bool:
    """True when ``torchrun`` (or another launcher) asked for more than one process."""
    return _env_int("WORLD_SIZE", 1, 1) > 1


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (from ``torchrun``'s ``RANK`` before the group is joined)."""
    if is_distributed():
        return dist.get_rank()
    return _env_int("RANK", 0, 0) if launched_by_torchrun() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return _env_int("LOCAL_RANK", 0, 0)


def is_main() -> bool:
    """Only rank 0 prints, plots and writes files."""
    return rank() == 0


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA tensors, gloo for CPU tensors."""
    return "nccl" if device.type == "cuda" else "gloo"


def init(device: torch.device) -> torch.device:
    """Join the process group that ``torchrun`` set up, if any, and return the device
    this process trains on (``cuda:LOCAL_RANK`` on a multi-GPU machine).

    Does nothing outside ``torchrun`` or when the group already exists.
    """
    if not launched_by_torchrun():
        return device
    wait = timeout()   # a bad $D2L_DIST_TIMEOUT is named before anything starts
    if device.type == "cuda":
        if torch.cuda.device_count() <= local_rank():
            raise DistributedError(
                f"rank {os.environ.get('RANK')}: LOCAL_RANK={local_rank()} but only "
                f"{torch.cuda.device_count()} CUDA device(s) here; launch with "
                f"--nproc_per_node={torch.cuda.device_count()} or fewer")
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend_for(device), timeout=wait)
        except Exception as e:
            raise DistributedError(f"rank {os.environ.get('RANK')}: could not join the process group "
                                   f"({type(e).__name__}: {e})") from e
    return device


def join(device: torch.device) -> tuple[torch.device, bool]:
    """:func:`init`, and whether this call started the process group (so that the
    caller also ends it with :func:`leave`)."""
    before = dist.is_available() and dist.is_initialized()
    device = init(device)
    return device, not before and dist.is_available() and dist.is_initialized()


def leave() -> None:
    """End the process group that :func:`join` started (torch warns at exit otherwise)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: list[float] | torch.Tensor, device: torch.device) -> torch.Tensor:
    """Sum a small vector of numbers over all processes (itself when alone)."""
    t = torch.as_tensor(values, dtype=torch.float64, device=device).clone()
    if is_distributed():
        dist.all_reduce(t)
    return t


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order (``[obj]`` when alone)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out
