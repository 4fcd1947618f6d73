"""A chapter's training recipe as data: the net, the data, the optimizer and the budget.

Each chapter defines its recipes in a ``#@save`` cell, so they are also in
:mod:`d2lutils.models`. The chapter, the command line (``python -m d2lutils.run``)
and the comparison chapter all train or load the same run from the same files:
``checkpoints/<name>-<profile>.pt`` and ``runs/<name>-<profile>.json``.

Under ``full`` a recipe is the seed's. Under ``cpu`` (and ``quick``) the fields in
``cpu`` replace the seed's, with ``cpu_why`` saying why: on a budget of a few
thousand images some nets need another initialisation, a warm-up or a smaller batch
to leave the plateau at chance.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from . import distributed as dist
from .data import load_data_fashion_mnist
from .devices import as_device, precision_policy, try_gpu
from .errors import ArgumentError, check_int, check_number
from .notebook import in_notebook
from .profile import Profile, get_profile
from .train import train_ch5

__all__ = ["Recipe"]

_TRAIN_DEFAULTS = {k: v.default for k, v in inspect.signature(train_ch5).parameters.items()}
_OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How one net is trained.

    Args:
        name: file stem of its checkpoint and history (``"alexnet"``).
        net: builds a fresh net (called after seeding).
        resize: input side in pixels (``None``: 28).
        batch_size, optimizer, lr, momentum, weight_decay: the optimizer
            (``"sgd"``, ``"adam"`` or ``"adamw"``).
        num_epochs: epochs under ``full`` (the seed's).
        init: applied with ``net.apply`` after building (``None``: PyTorch's default).
        warmup_steps: linear warm-up of the learning rate from 1% over this many steps.
        schedule: after the warm-up, ``"constant"``, or ``"cosine"``: down to zero over the
            rest of the run, half a cosine wave (so the last steps are small ones).
        cpu_images: training images under ``cpu``: one pass over that many distinct,
            class-balanced images (sized to the budget from ``cpu_img_per_s``).
        cpu_epochs: epochs under ``cpu`` (1: one pass; LeNet is cheap enough for the seed's 10).
        cpu_img_per_s: training speed measured on the 2-core CPU that built the book.
        cpu_test_img_per_s: evaluation speed there (the test passes and the probes), so
            that the plan line predicts the whole wall time, not only the training steps.
        cpu_test_images: test images under ``cpu`` (``None``: all 10,000).
        cpu: field changes under ``cpu`` and ``quick``, e.g. ``{"batch_size": 32}``.
        cpu_why: one sentence on why those changes are needed.
        source: where the seed's settings come from.
        gpu_img_per_s: a published GPU training speed for this net (images/s), for
            the time estimate of a ``full`` run; ``gpu_source`` says whose.
        channels_last: NHWC layout (faster convolutions on CPUs and tensor cores).
    """

    name: str
    net: Callable[[], nn.Module]
    resize: int | None
    batch_size: int
    optimizer: str
    lr: float
    num_epochs: int
    momentum: float = 0.0
    weight_decay: float = 0.0
    init: Callable[[nn.Module], Any] | None = None
    warmup_steps: int = 0
    schedule: str = "constant"
    cpu_images: int = 6_000
    cpu_epochs: int = 1
    cpu_img_per_s: float | None = None
    cpu_test_img_per_s: float | None = None
    cpu_test_images: int | None = None
    cpu: dict[str, Any] = dataclasses.field(default_factory=dict)
    cpu_why: str = ""
    source: str = ""
    gpu_img_per_s: float | None = None
    gpu_source: str = ""
    channels_last: bool = True

    def __post_init__(self):
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            raise ArgumentError(f"name must be a short file stem (letters, digits, '.', '-', '_'); got {self.name!r}")
        if not callable(self.net):
            raise ArgumentError(f"net must be a function that builds the net; got {self.net!r}")
        check_int("resize", self.resize, 1, 4096, allow_none=True)
        check_int("batch_size", self.batch_size, 1)
        if self.optimizer not in _OPTIMIZERS:
            raise ArgumentError(f"optimizer must be one of {sorted(_OPTIMIZERS)}; got {self.optimizer!r}")
        check_number("lr", self.lr, positive=True)
        check_number("momentum", self.momentum, low=0.0)
        check_number("weight_decay", self.weight_decay, low=0.0)
        check_int("num_epochs", self.num_epochs, 1)
        check_int("warmup_steps", self.warmup_steps, 0)
        if self.schedule not in ("constant", "cosine"):
            raise ArgumentError(f"schedule must be 'constant' or 'cosine'; got {self.schedule!r}")
        check_int("cpu_images", self.cpu_images, 10, 60_000)
        check_int("cpu_epochs", self.cpu_epochs, 1)
        check_int("cpu_test_images", self.cpu_test_images, 10, 10_000, allow_none=True)
        for name in ("cpu_img_per_s", "cpu_test_img_per_s", "gpu_img_per_s"):
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), positive=True)
        if self.init is not None and not callable(self.init):
            raise ArgumentError(f"init must be a function for net.apply, or None; got {self.init!r}")
        fields = {f.name for f in dataclasses.fields(self)} - {"cpu", "cpu_why", "name", "net"}
        if not isinstance(self.cpu, dict) or set(self.cpu) - fields:
            raise ArgumentError(f"cpu must be a dict of field changes ({sorted(fields)}); got {self.cpu!r}")

    def but(self, **changes: Any) -> "Recipe":
        """A copy with ``changes`` (field names) applied and checked, e.g.
        ``LENET_RELU.but(name="lenet", optimizer="adam", lr=1e-3)``."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ArgumentError(f"Recipe has no field(s) {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    # -- the recipe a profile runs --------------------------------------------------
    def for_profile(self, profile: Profile | str | None = None) -> "Recipe":
        """This recipe with the ``cpu`` changes applied under ``cpu`` and ``quick``."""
        profile = _profile(profile)
        if profile.name == "full" or not self.cpu:
            return self
        return dataclasses.replace(self, **self.cpu, cpu={})

    def describe(self) -> str:
        """The settings in one line, e.g. ``Adam lr 0.001, batch 128, 224 px, 5 epochs``."""
        opt = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}[self.optimizer]
        parts = [f"{opt} lr {self.lr:g}"]
        if self.momentum:
            parts[0] += f" momentum {self.momentum:g}"
        if self.weight_decay:
            parts[0] += f" weight decay {self.weight_decay:g}"
        parts.append(f"batch {self.batch_size}")
        parts.append(f"{self.resize or 28} px")
        if self.init is not None:
            parts.append(f"{getattr(self.init, '__name__', 'custom')} init")
        if self.warmup_steps:
            parts.append(f"{self.warmup_steps}-step warm-up")
        if self.schedule == "cosine":
            parts.append("cosine decay")
        return ", ".join(parts)

    # -- building -------------------------------------------------------------------
    def build(self, seed: int = 0, total_steps: int | None = None) -> tuple[nn.Module, torch.optim.Optimizer, Any]:
        """A fresh ``(net, optimizer, scheduler)``.

        The scheduler (stepped after every batch) is ``None`` for a constant rate without
        warm-up; a ``"cosine"`` schedule needs the run's ``total_steps``.
        """
        check_int("seed", seed, 0, 2**64 - 1)
        check_int("total_steps", total_steps, 1, allow_none=True)
        if self.schedule == "cosine" and total_steps is None:
            raise ArgumentError("a cosine schedule needs total_steps (the run's number of batches)")
        torch.manual_seed(seed)
        net = self.net()
        if self.init is not None:
            net.apply(self.init)
        kwargs: dict[str, Any] = {"lr": self.lr}
        if self.weight_decay:
            kwargs["weight_decay"] = self.weight_decay
        if self.optimizer == "sgd" and self.momentum:
            kwargs["momentum"] = self.momentum
        optimizer = _OPTIMIZERS[self.optimizer](net.parameters(), **kwargs)
        scheduler = None
        if self.warmup_steps or self.schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, _Schedule(self.warmup_steps, total_steps if self.schedule == "cosine" else None))
        return net, optimizer, scheduler

    def data(self, profile: Profile | str | None = None, seed: int = 0, root=None, device=None):
        """``(train_iter, test_iter)`` for this profile: all data under ``full``, the
        budget's balanced subset under ``cpu``, 300/150 images under ``quick``.

        On a GPU ``device`` the 28 px ``uint8`` images (47 MB for all 60,000) are kept on
        the GPU and each batch is resized there, so the GPU does not wait for the host."""
        profile = _profile(profile)
        return load_data_fashion_mnist(
            self.batch_size, resize=self.resize, root=root, seed=seed,
            n_train=profile.train_images(cpu=self.cpu_images),
            n_test=profile.test_images(cpu=self.cpu_test_images),
            device=device if device is not None and torch.device(device).type == "cuda" else None)

    def epochs(self, profile: Profile | str | None = None) -> int:
        """The seed's epochs under ``full``; ``cpu_epochs`` under ``cpu``; 1 under ``quick``."""
        return _profile(profile).epochs(self.num_epochs, cpu=self.cpu_epochs)

    def gpu_minutes(self) -> float | None:
        """Estimated training minutes of a ``full`` run at the published GPU speed."""
        if not self.gpu_img_per_s:
            return None
        return 60_000 * self.num_epochs / self.gpu_img_per_s / 60

    def files(self, profile: Profile | str | None = None, folder: str | os.PathLike = ".") -> tuple[Path, Path]:
        """``(checkpoint, history JSON)`` paths of this recipe's run under ``profile``."""
        p = _profile(profile).name
        folder = Path(folder)
        return folder / "checkpoints" / f"{self.name}-{p}.pt", folder / "runs" / f"{self.name}-{p}.json"

    def plan(self, profile: Profile | str | None = None, train_iter=None, test_iter=None, device=None) -> str:
        """What the run will cost, printed before it trains: on a CPU from the rate measured
        on the book's 2-core CPU, on a GPU from the published GPU rate (an estimate)."""
        profile = _profile(profile)
        r = self.for_profile(profile)
        n = train_iter.num_examples if train_iter is not None else profile.train_images(cpu=r.cpu_images)
        n_test = test_iter.num_examples if test_iter is not None else profile.test_images(cpu=r.cpu_test_images)
        epochs = r.epochs(profile)
        line = f"{self.name}: {r.describe()}, {epochs} epoch(s)"
        if profile.name != "full" and self.cpu:
            line += f"\n  changed for the CPU budget: {self.cpu_why or ', '.join(self.cpu)}"
        on_gpu = device is not None and torch.device(device).type == "cuda"
        if on_gpu:
            line += "\n  " + self._gpu_plan(n, epochs)
        elif self.cpu_img_per_s:
            # train_ch5 probes 4 times an epoch on profile.probe_images test images
            # (default probes_per_epoch=5), and tests on all n_test images after each epoch.
            probes = 4 * min(profile.probe_images, n_test or 10_000)
            line += "\n  " + profile.plan(n, self.cpu_img_per_s, n_test=n_test, num_epochs=epochs,
                                          test_rate=self.cpu_test_img_per_s, n_probe=probes)
        return line

    def _gpu_plan(self, n: int | None, epochs: int) -> str:
        n = 60_000 if n is None else n
        if not self.gpu_img_per_s:
            return f"{n:,} training images x {epochs} epoch(s) on the GPU; no published GPU rate to estimate the time"
        minutes = n * epochs / self.gpu_img_per_s / 60
        took = f"{minutes:.0f} min" if minutes >= 1.5 else "under 2 min"
        return (f"{n:,} training images x {epochs} epoch(s); an estimate: about {took} of training at "
                f"{self.gpu_img_per_s:,.0f} img/s ({self.gpu_source or 'published'}, compute only; a T4 or "
                "P100 is slower, see the setup page)")

    # -- training -------------------------------------------------------------------
    def fit(self, profile: Profile | str | None = None, device=None, *, seed: int = 0,
            folder: str | os.PathLike = ".", root=None, resume: bool = True, save: bool = True,
            brief: bool = False, **train_kwargs: Any):
        """Train (or reload) this recipe's run under ``profile`` and return ``(net, history)``.

        Prints the plan, then calls :func:`~d2lutils.train.train_ch5` with the
        checkpoint ``folder/checkpoints/<name>-<profile>.pt`` (resumed or reloaded when it
        exists), and writes the history to ``folder/runs/<name>-<profile>.json``
        (``checkpoint=None``: no checkpoint). ``brief=True`` leaves out the progress
        lines (one per epoch and per probe), for a cell that trains several runs: the
        plan, the header and the summary line stay, and the curves are in the cell's plot.
        """
        profile = _profile(profile)
        r = self.for_profile(profile)
        device = as_device(device, default=try_gpu())
        train_iter, test_iter = r.data(profile, seed=seed, root=root, device=device)
        if dist.is_main():
            print(self.plan(profile, train_iter, test_iter, device=device), flush=True)
        net, optimizer, scheduler = r.build(seed, total_steps=len(train_iter) * r.epochs(profile))
        ckpt, runs = self.files(profile, folder)
        ckpt = train_kwargs.pop("checkpoint", ckpt)
        # NHWC was measured to help on this book's CPU; on a GPU it helps with tensor cores
        # (fp16/bf16), and rarely in fp32, so there the precision policy decides.
        on_gpu = device.type == "cuda"
        train_kwargs.setdefault("channels_last", r.channels_last and (
            not on_gpu or precision_policy(device, train_kwargs.get("amp", False)).channels_last))
        train_kwargs.setdefault("probe_images", profile.probe_images)
        if train_kwargs.get("live_plot") is None:  # a chapter plots each finished run itself
            train_kwargs["live_plot"] = "transient" if in_notebook() else False
        with contextlib.redirect_stdout(_Brief(sys.stdout)) if brief else contextlib.nullcontext():
            history = train_ch5(net, train_iter, test_iter, r.batch_size, optimizer, device, r.epochs(profile),
                                scheduler=scheduler, checkpoint=ckpt, resume=resume and ckpt is not None,
                                profile=profile.name, **train_kwargs)
        if save and dist.is_main():
            history.save_json(runs)
        return net, history

    def study(self, name: str, images: int, test_images: int, device=None, *, seed: int = 0,
              probes_per_epoch: int = 4, record: bool = False, brief: bool = True, **train_kwargs: Any):
        """A small run of this recipe for a comparison inside a chapter: ``images`` training
        and ``test_images`` test images under the ``cpu`` budget, on any device, with no live
        plot. Returns ``(net, history)`` as :meth:`fit` does.

        It prints as ``fit(brief=True)`` does, without the progress lines, so a cell that
        compares several arms stays short (``brief=False``: with them, for a page that reads
        them). ``record=True`` writes the run record
        (``runs/<name>-cpu.json``) for a study that another chapter reads.

        Under the ``quick`` profile (CI) it is a smoke run of the same code: a fortieth of
        the images (at least 64), 50 test images, no checkpoint (CI runs every chapter on
        one disk, and AlexNet's is 0.56 GB), and a name of its own (``<name>-smoke``), so a
        smoke run never reloads or overwrites the real run's files.
        """
        check_int("images", images, 10, 60_000)
        check_int("test_images", test_images, 10, 10_000)
        quick = get_profile().name == "quick"
        r = self.but(name=name + ("-smoke" if quick else ""),
                     cpu_images=max(64, images // 40) if quick else images,
                     cpu_test_images=50 if quick else test_images)
        train_kwargs.setdefault("probe_images", 25 if quick else min(250, test_images))
        if quick:
            train_kwargs.setdefault("checkpoint", None)
        return r.fit("cpu", device, seed=seed, save=record, live_plot=False, brief=brief,
                     probes_per_epoch=probes_per_epoch, **train_kwargs)

    def steps(self, profile: Profile | str | None = None) -> int:
        """Optimizer steps of one run under ``profile``."""
        profile = _profile(profile)
        r = self.for_profile(profile)
        n = profile.train_images(cpu=r.cpu_images) or 60_000
        return math.ceil(n / r.batch_size) * r.epochs(profile)


class _Brief(io.TextIOBase):
    """A stdout that passes everything on but the training progress lines."""

    _PROGRESS = re.compile(r"\s*epoch \d+(\.\d+)?[,:] ")

    def __init__(self, out):
        self.out, self.part = out, ""

    def write(self, text: str) -> int:
        *lines, self.part = (self.part + text).split("\n")
        kept = [line + "\n" for line in lines if not self._PROGRESS.match(line)]
        if kept:
            self.out.write("".join(kept))
            self.out.flush()
        return len(text)

    def flush(self) -> None:
        self.out.flush()


class _Schedule:
    """The learning-rate multiplier at step ``s``: linear from 0.01 to 1 over ``warmup``
    steps, then 1 (``total=None``) or half a cosine wave down to 0 at step ``total``."""

    def __init__(self, warmup: int, total: int | None):
        self.warmup, self.total = warmup, total

    def __call__(self, s: int) -> float:
        if s < self.warmup:
            return 0.01 + 0.99 * s / self.warmup
        if self.total is None:
            return 1.0
        done = min(1.0, (s - self.warmup) / max(1, self.total - self.warmup))
        return 0.5 * (1 + math.cos(math.pi * done))

    def __repr__(self) -> str:   # the run record shows the schedule's settings
        return f"warmup={self.warmup}, cosine_total={self.total}"


def _profile(profile) -> Profile:
    if profile is None or isinstance(profile, str):
        return get_profile(profile)
    if not isinstance(profile, Profile):
        raise ArgumentError(f"profile must be a Profile, a name ('full', 'cpu', 'quick') or None; got {profile!r}")
    return profile
