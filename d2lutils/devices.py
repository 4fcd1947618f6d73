"""Devices, seeding and numeric precision: where a run computes and in which dtype.

The precision policy lives in one function, :func:`precision_policy`, keyed by the
GPU's compute capability, because that is what decides whether reduced precision
is fast (tensor cores) and whether it is safe without loss scaling (bf16's range):

=====================  ======================  ==========================================
compute capability     precision               why
=====================  ======================  ==========================================
8.0 and newer          bf16 autocast           tensor cores; fp32's range, so no scaler
(A100, L4, H100, ...)
7.0 - 7.5              fp16 autocast +         tensor cores, but fp16's small range makes
(V100, T4)             ``GradScaler``          small gradients underflow unless scaled
below 7.0              fp32                    no tensor cores: PyTorch's AMP guide
(P100, GTX 10xx)                               expects speed-ups from Volta on; fp16 on
                                               sm_61 runs at 1/64 of the fp32 rate
CPU, MPS               fp32                    bf16 is slower than fp32 without AVX-512
=====================  ======================  ==========================================

``torch.cuda.is_bf16_supported()`` is not used to decide: on a T4 or a P100 it
answers True, because bf16 tensors can be *emulated* there, which is slow.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from typing import Any

import torch

from .errors import ArgumentError, check_int

__all__ = [
    "try_gpu",
    "device_name",
    "cpu_model",
    "as_device",
    "set_seed",
    "Precision",
    "precision_policy",
    "amp_dtype",
    "make_grad_scaler",
    "compile_supported",
    "env_flag",
]

DEVICE_HELP = "use 'cpu', 'cuda', 'cuda:1' or 'mps'"


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


def as_device(device: Any, name: str = "device", *, default: torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device`` that exists on this machine, or one clear error.

    Args:
        device: a ``torch.device``, a string such as ``'cuda:1'``, or ``None`` (then
            ``default``, if given).
        name: the argument's name, for the message.
        default: what ``None`` means; without it ``None`` is refused.

    Raises:
        ArgumentError: not a device, or a device this machine does not have
            (``'cuda:3'`` on a one-GPU machine, CUDA without a GPU, MPS off a Mac).
    """
    if device is None and default is not None:
        return default
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise ArgumentError(f"{name}={device!r} is not a device; {DEVICE_HELP}") from None
    else:
        raise ArgumentError(f"{name} must be a torch.device or a string such as 'cpu' or 'cuda'; got {device!r}")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ArgumentError(f"{name}={str(dev)!r}: d2lutils runs on 'cpu', 'cuda' or 'mps'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ArgumentError(f"{name}={str(dev)!r} but no CUDA GPU is available here; use d2l.try_gpu()")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ArgumentError(f"{name}={str(dev)!r} but this machine has {torch.cuda.device_count()} GPU(s): "
                            f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ArgumentError(f"{name}='mps' but Apple's MPS is not available here")
    return dev


def device_name(device: str | torch.device) -> str:
    """A readable name, e.g. ``cuda (NVIDIA H100 80GB HBM3)`` or ``cpu (2 threads)``."""
    device = as_device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        n = torch.get_num_threads()
        return f"cpu ({n} thread{'s' if n != 1 else ''})"
    return str(device)


def cpu_model() -> str:
    """The processor's model name, e.g. ``AMD EPYC 7B13`` (Linux's ``/proc/cpuinfo``), else what
    ``platform`` knows: machines of one cloud kind differ by 2x in speed, so a benchmark report
    records which processor it ran on."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def set_seed(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (every device). ``deterministic`` also asks
    torch for deterministic kernels, which can be slower on a GPU."""
    check_int("seed", seed, 0, 2**64 - 1)   # torch.manual_seed takes at most 64 bits
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


def env_flag(name: str, default: bool) -> bool:
    """``$name`` read as on/off: 1, true, yes, on / 0, false, no, off (any case); unset or
    empty is ``default``.

    Raises:
        ArgumentError: any other value, naming the variable.
    """
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ArgumentError(f"${name}={os.environ[name]!r}: use 1/true/yes/on or 0/false/no/off (or unset it)")


@dataclass(frozen=True)
class Precision:
    """How a run computes: the autocast dtype (``None``: plain fp32), whether a
    ``GradScaler`` is needed, whether ``channels_last`` is worth it, and why."""

    dtype: torch.dtype | None
    scaler: bool
    reason: str
    channels_last: bool = False

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self, device: torch.device):
        """The autocast context for ``device``, built once per run (a no-op for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.dtype)

    def grad_scaler(self, device: torch.device) -> torch.amp.GradScaler:
        """A ``GradScaler`` that is a pass-through unless fp16 needs it, so a training
        step has no branch for it."""
        return torch.amp.GradScaler(device.type, enabled=self.scaler)


def _capability(device: torch.device, capability: tuple[int, int] | None) -> tuple[int, int]:
    if capability is not None:
        return tuple(capability)  # type: ignore[return-value]
    return torch.cuda.get_device_capability(device)


def precision_policy(device: str | torch.device, amp: bool | str = True, *,
                     capability: tuple[int, int] | None = None) -> Precision:
    """The precision a run uses on ``device`` (see the table in this module's docstring).

    Args:
        device: where the run computes.
        amp: ``True`` lets the policy choose; ``False`` is fp32; ``"bf16"`` or ``"fp16"``
            force one (fp16 always with a scaler).
        capability: the GPU's compute capability, e.g. ``(7, 5)``; read from the device
            when not given (tests pass it to stand in for GPUs they do not have).

    Raises:
        ArgumentError: ``amp`` is none of the allowed values.
    """
    device = torch.device(device)
    if amp is False or amp is None:
        return Precision(None, False, "fp32 asked for (amp=False)")
    if amp == "bf16":
        return Precision(torch.bfloat16, False, "bf16 asked for (amp='bf16')", device.type == "cuda")
    if amp == "fp16":
        return Precision(torch.float16, True, "fp16 asked for (amp='fp16'), with a GradScaler",
                         device.type == "cuda")
    if amp is not True:
        raise ArgumentError(f"amp must be True, False, 'bf16' or 'fp16'; got {amp!r}")
    if device.type != "cuda":
        return Precision(None, False, f"fp32 on {device.type}: reduced precision is slower there")
    major, minor = _capability(device, capability)
    cc = f"compute capability {major}.{minor}"
    if major >= 8:
        return Precision(torch.bfloat16, False, f"bf16: {cc} has bf16 tensor cores", True)
    if major == 7:
        return Precision(torch.float16, True, f"fp16 with a GradScaler: {cc} has fp16 tensor cores "
                         "but no bf16", True)
    return Precision(None, False, f"fp32: {cc} has no tensor cores, so autocast would only add casts")


def amp_dtype(device: str | torch.device, amp: bool | str = True) -> torch.dtype | None:
    """The autocast dtype that ``amp`` means on ``device`` (``None``: plain fp32);
    :func:`precision_policy` decides."""
    return precision_policy(device, amp).dtype


def make_grad_scaler(device: str | torch.device, dtype: torch.dtype | None, **kwargs):
    """A ``torch.amp.GradScaler`` when ``dtype`` is float16 (its small range makes
    gradients underflow unless the loss is scaled up), else ``None``. The scaler
    skips every step whose gradients hold an inf or NaN and lowers its scale."""
    if dtype != torch.float16:
        return None
    return torch.amp.GradScaler(torch.device(device).type, **kwargs)


def compile_supported(device: torch.device, *, capability: tuple[int, int] | None = None) -> tuple[bool, str]:
    """Whether ``torch.compile`` can run on ``device``, and if not, why: its GPU
    code generator (Triton) needs compute capability 7.0 or newer."""
    if device.type != "cuda":
        return True, ""
    major, minor = _capability(device, capability)
    if major < 7:
        return False, (f"torch.compile needs compute capability 7.0 or newer for its GPU kernels (Triton); "
                       f"this GPU has {major}.{minor}, so the net runs uncompiled")
    return True, ""
