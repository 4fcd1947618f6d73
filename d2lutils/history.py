"""What a training run measured (:class:`History`), its JSON file, and the lines
``train_ch5`` prints about it, all in one place: the printed formats and the
fields the site and the comparison chapter read are defined here and nowhere else."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ._io import atomic_write_text
from .errors import ArgumentError

__all__ = ["History", "epoch_line", "probe_line", "header_line", "printed_epochs", "marks"]


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

    ``test_confusion``: the last test pass's counts, row = the true class, column = the
    predicted one (its trace over its sum is ``test_acc[-1]``), so that per-class accuracy and
    what each miss was taken for can be read without the trained weights (kept for nets of up
    to 100 classes, so that a history stays a small file).
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
    test_confusion: list[list[int]] = field(default_factory=list)
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
        known = {f.name: f for f in fields(cls)}
        lists = [n for n, f in known.items() if str(f.type).startswith("list")]
        bad = [n for n in lists if n in d and not isinstance(d[n], list)]
        if bad:
            raise ArgumentError(f"d[{bad[0]!r}] must be a list (one value per epoch or point); got {d[bad[0]]!r}")
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def load_json(cls, path: str | os.PathLike) -> "History":
        """Read a history written by :meth:`save_json` (plain JSON: loading runs no code).

        Raises:
            ArgumentError: the file is missing, not JSON, or not a history; the
                message names the file.
        """
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ArgumentError(f"{path}: no such history file (runs are written by train_ch5's "
                                "callers, e.g. Recipe.fit, into runs/<name>-<profile>.json)") from None
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise ArgumentError(f"{path}: not a readable history JSON file ({type(e).__name__}: {e}); "
                                "delete it and run the training again") from None
        if not isinstance(d, dict) or not isinstance(d.get("epoch", []), list):
            raise ArgumentError(f"{path}: holds JSON, but not a history written by History.save_json")
        return cls.from_dict(d)

    def save_json(self, path: str | os.PathLike) -> None:
        """Write the history as JSON, atomically (a small file the comparison chapter reads)."""
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=1), what="history")

    def add_point(self, sums: list[float], at: float) -> None:
        """A training-curve point: (loss sum, correct, images) of a stretch ending at epoch ``at``."""
        loss, correct, n = sums
        self.step_epoch.append(at)
        self.step_loss.append(loss / n)
        self.step_acc.append(correct / n)

    def summary(self) -> str:
        """One line: device, profile, images, epochs, wall time, final test accuracy."""
        if not self.epoch:
            return f"no finished epoch ({self.profile} profile, {self.device})"
        procs = f"{self.world_size} processes x " if self.world_size > 1 else ""
        return (f"{procs}{self.device} | profile {self.profile} | {_count(self.n_train)} train images x "
                f"{len(self.epoch)} epoch(s) | {self.wall_time / 60:.1f} min | "
                f"test acc {self.test_acc[-1]:.3f} on {_count(self.n_test)} images")


def _count(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def marks(n: int, parts: int) -> list[int]:
    """Counts that split ``n`` (batches, or epochs) into ``parts`` near-equal stretches."""
    return sorted({max(1, round(n * k / parts)) for k in range(1, parts + 1)})


def printed_epochs(num_epochs: int) -> set[int]:
    """The epochs whose line is printed: the first and four evenly spaced ones, the last
    included, so a 10-epoch run prints 5 lines and a training cell stays short."""
    return {1, *marks(num_epochs, min(num_epochs, 4))}


def header_line(h: History, device: str, num_epochs: int, batch_size: int, procs: str = "") -> str:
    """The first line of a run: where, which profile, how much data."""
    return (f"training on {procs}{device} | profile {h.profile} | "
            f"{h.n_train if h.n_train is not None else '?'} train / "
            f"{h.n_test if h.n_test is not None else '?'} test images | "
            f"{num_epochs} epochs | batch {batch_size}"
            + (f" | {h.precision}" if h.precision != "fp32" else ""))


def epoch_line(h: History, i: int) -> str:
    """The line printed after epoch ``h.epoch[i]``."""
    return (f"epoch {h.epoch[i]}, loss {h.train_loss[i]:.4f}, train acc {h.train_acc[i]:.3f}, "
            f"test acc {h.test_acc[i]:.3f}, time {h.seconds[i]:.1f} sec, "
            f"{h.images_per_sec[i]:.0f} img/s")


def probe_line(h: History, n: int, elapsed: float) -> str:
    """The line printed at a probe inside an epoch (``n`` images trained so far)."""
    return (f"  epoch {h.probe_epoch[-1]:.2f}: {n} images, loss {h.step_loss[-1]:.4f}, "
            f"train acc {h.step_acc[-1]:.3f}, test acc {h.probe_acc[-1]:.3f} "
            f"({h.probe_n} images), {elapsed:.0f} s")
