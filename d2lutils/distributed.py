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
import os
from typing import Any

import torch
import torch.distributed as dist

from .errors import DistributedError

__all__ = ["init", "is_distributed", "rank", "world_size", "local_rank", "is_main",
           "all_sum", "barrier", "join", "leave", "gather_objects", "launched_by_torchrun", "backend_for"]

TIMEOUT = datetime.timedelta(seconds=float(os.environ.get("D2L_DIST_TIMEOUT", "300")))


def launched_by_torchrun() -> bool:
    """True when ``torchrun`` (or another launcher) asked for more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (from ``torchrun``'s ``RANK`` before the group is joined)."""
    if is_distributed():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if launched_by_torchrun() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


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
            dist.init_process_group(backend_for(device), timeout=TIMEOUT)
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
