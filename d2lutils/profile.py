"""Run profiles: how much each chapter trains.

* ``full``: as the seed did (all 60,000 images, the seed's epochs). For a GPU.
* ``cpu``: a budget of about 15 minutes of training per chapter on a 2-core CPU,
  spent on one pass over as many distinct, class-balanced images as fit. Each
  chapter states its own image count (its net's speed differs), see
  :meth:`Profile.train_images`.
* ``quick``: 300 train / 150 test images, one epoch: a smoke run for CI. Its
  accuracies are at chance and mean nothing.

Choose with ``$D2L_PROFILE``. Unset, it is ``full`` where a CUDA GPU is present and
``cpu`` otherwise. Every profile keeps the seed's image size and architecture (the
classic nets only accept their own input size); only the data and epochs shrink.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace

import torch

from .errors import ArgumentError, check_int, check_number

__all__ = ["Profile", "get_profile", "PROFILES", "peak_memory_gb"]

ENV_PROFILE = "D2L_PROFILE"
# Training time per chapter under `cpu`, on the 2-core CPU that builds the book.
BUDGET_S = 900.0


@dataclass(frozen=True)
class Profile:
    """How much to train. ``None`` means "as the seed did" (or, for ``cpu``, "as the
    chapter says": see :meth:`train_images`)."""

    name: str
    n_train: int | None
    n_test: int | None
    max_epochs: int | None
    budget_s: float | None = None
    probe_images: int = 500
    reason: str = ""

    def epochs(self, num_epochs: int, cpu: int = 1) -> int:
        """Epochs for this run: the seed's ``num_epochs`` under ``full``, ``cpu`` (the
        chapter's budget, default one pass) under ``cpu``, 1 under ``quick``."""
        check_int("num_epochs", num_epochs, 1)
        check_int("cpu", cpu, 1)
        if self.name == "cpu":
            return cpu
        return num_epochs if self.max_epochs is None else min(num_epochs, self.max_epochs)

    def train_images(self, cpu: int) -> int | None:
        """Training images for this run: ``cpu`` under the ``cpu`` profile (the chapter's
        budget), 300 under ``quick``, ``None`` (all 60,000) under ``full``."""
        check_int("cpu", cpu, 10, 60_000)
        return cpu if self.name == "cpu" else self.n_train

    def sized(self, n: int) -> int:
        """A cell's own sample size (images to evaluate or to train a demo on): ``n``,
        or a tenth of it (at least 10) under ``quick``, where CI only checks that the
        cell runs. It keeps that branch out of the teaching cells."""
        check_int("n", n, 10)
        return max(10, n // 10) if self.name == "quick" else n

    def test_images(self, cpu: int | None = None) -> int | None:
        """Test images: ``cpu`` under ``cpu`` (``None``: all 10,000), 150 under ``quick``,
        all under ``full``."""
        check_int("cpu", cpu, 10, 10_000, allow_none=True)
        return cpu if self.name == "cpu" else self.n_test

    def plan(self, n_train: int | None, train_rate: float, n_test: int | None = None,
             test_rate: float | None = None, num_epochs: int = 1, n_probe: int = 0) -> str:
        """A line saying what this run will cost, printed before training.

        ``train_rate`` and ``test_rate`` are images per second on a 2-core CPU, as the
        chapter measured them; on other hardware the estimate is only an upper bound.
        ``n_probe`` test images are evaluated inside each epoch besides the ``n_test``
        after it (they count only when ``test_rate`` is given).

        Raises:
            ArgumentError: a rate is not a positive number, or an image count is not
                a positive int (or ``None``).
        """
        check_number("train_rate", train_rate, positive=True)
        if test_rate is not None:
            check_number("test_rate", test_rate, positive=True)
        check_int("n_train", n_train, 1, allow_none=True)
        check_int("n_test", n_test, 1, allow_none=True)
        check_int("num_epochs", num_epochs, 1)
        check_int("n_probe", n_probe, 0)
        n_tr = 60_000 if n_train is None else n_train
        n_te = 10_000 if n_test is None else n_test
        secs = n_tr * num_epochs / train_rate
        if test_rate:
            secs += (n_te + n_probe) * num_epochs / test_rate
        budget = f"budget {self.budget_s / 60:.0f} min, " if self.budget_s else ""
        what = "training and testing" if test_rate else "training"
        return (f"{self.name} profile: {budget}{n_tr:,} training images x {num_epochs} epoch(s), "
                f"{n_te:,} test images; {what} about {_took(secs)} on a 2-core CPU "
                f"(measured there: {train_rate:g} train img/s"
                + (f", {test_rate:g} test img/s)" if test_rate else ")"))

    def __str__(self) -> str:
        if self.name == "full":
            size = "all 60,000 train / 10,000 test images, the seed's epochs"
        elif self.name == "cpu":
            size = (f"about {self.budget_s / 60:.0f} min of training per chapter on a 2-core CPU: "
                    "one pass over as many balanced training images as fit")
        else:
            size = (f"{self.n_train:,} train / {self.n_test:,} test images (balanced), "
                    f"at most {self.max_epochs} epoch(s): a smoke run, its accuracy means nothing")
        return f"profile {self.name}: {size} ({self.reason})"


def _took(secs: float) -> str:
    # minutes with a decimal, as the pace line prints them: whole minutes would hide a
    # 10% miss in a 15-minute budget
    return f"{secs / 60:.1f} min" if secs >= 90 else f"{secs:.0f} s"


PROFILES = {
    "full": Profile("full", None, None, None),
    "cpu": Profile("cpu", None, None, None, budget_s=BUDGET_S),
    "quick": Profile("quick", 300, 150, 1, probe_images=50),
}


def get_profile(name: str | None = None) -> Profile:
    """The profile to run: ``name``, else ``$D2L_PROFILE``, else by hardware."""
    if name is None and os.environ.get(ENV_PROFILE, "").strip():
        name, reason = os.environ[ENV_PROFILE].strip().lower(), f"set by ${ENV_PROFILE}"
        if name not in PROFILES:
            raise ArgumentError(f"unknown profile {name!r}: ${ENV_PROFILE}={os.environ[ENV_PROFILE]!r}; "
                                f"set it to one of {', '.join(sorted(PROFILES))}, or unset it to choose "
                                "by hardware")
    elif name is not None:
        if not isinstance(name, str):
            raise ArgumentError(f"name must be a str, one of {sorted(PROFILES)}; got {name!r}")
        name, reason = name.strip().lower(), "chosen in the notebook"
    elif torch.cuda.is_available():
        name, reason = "full", f"a CUDA GPU is present; set {ENV_PROFILE}=cpu or quick for less"
    else:
        name, reason = "cpu", f"no CUDA GPU found; set {ENV_PROFILE}=full to train as the seed did"
    if name not in PROFILES:
        raise ArgumentError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    return replace(PROFILES[name], reason=reason)


def peak_memory_gb() -> float | None:
    """The largest resident memory this process has used so far, in GB (``None``
    where the OS does not report it). A chapter prints it at its end: Colab's CPU
    runtime has about 12 GB."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**30 if sys.platform == "darwin" else peak / 2**20  # bytes on macOS, KiB on Linux
