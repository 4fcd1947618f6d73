"""The pace line: a run's own first batches, timed, say what the whole run will cost here.

The plan line printed before training reads the images per second measured on the book's
2-core CPU, and another machine of the same kind trained the same nets 1.7-1.8 times
slower (a matmul timed on it ran at 93% of the book's rate, so no scaling of the plan by a
matmul would have caught it). What does predict a run is the run itself: after its first
batches, ``train_ch5`` times the batches it has just trained and prints, once::

      pace here: batches 2-9 in 15.2 s, 16.8 train img/s; at this pace the run takes about 12.4 min

The first batch is left out of the window (it allocates, and oneDNN builds its kernels), and
the window closes before the first probe, which tests instead of training. Testing is
counted at three test images for the time of one training image: one forward pass against a
forward and a backward one, as the benchmark counts FLOPs (``benchmarks/speed.py``
measured 2.3-3.7 test images per training image across the book's nets).
"""

from __future__ import annotations

import time
from typing import Callable

import torch

TEST_PER_TRAIN = 3.0   # test images per training image of time (forward only vs forward + backward)


def sync(device: torch.device) -> None:
    """Wait for the GPU's queued work, so that a clock read after it means something."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def took(secs: float) -> str:
    """``secs`` as the pace line prints it: seconds under 90 s, else minutes with a decimal."""
    return f"{secs / 60:.1f} min" if secs >= 90 else f"{secs:.0f} s"


class Pace:
    """Times batches ``2..k`` of one ``train_ch5`` call and prints the run's cost once.

    Args:
        say: prints a line (only rank 0's prints).
        device: synchronised at both ends of the window, so a GPU's queue is counted.
        images_per_batch: images of one global batch (every rank's share together).
        images_left: training images still to train in this call, the first batch's included.
        test_images: test images still to evaluate (test passes and probes).
        seconds_before: wall time the run has already recorded (a resumed run's earlier part).
        limit: the last batch the window may include (the one before the first probe).
        min_seconds, min_batches: the window closes at the first batch past both.
    """

    def __init__(self, say: Callable[[str], None], device: torch.device, *, images_per_batch: int,
                 images_left: int, test_images: int, seconds_before: float, limit: int,
                 min_seconds: float = 15.0, min_batches: int = 5):
        self.say, self.device = say, device
        self.images_per_batch, self.images_left, self.test_images = images_per_batch, images_left, test_images
        self.seconds_before, self.limit = seconds_before, limit
        self.min_seconds, self.min_batches = min_seconds, min_batches
        self.t1: float | None = None
        self.done = limit < 3   # too few batches before the first probe to time any

    def tick(self, k: int, epoch_start: float) -> None:
        """Called after batch ``k`` (1, 2, ...) of this call; ``epoch_start`` is when its epoch began."""
        if self.done:
            return
        if k == 1:
            sync(self.device)
            self.t1 = time.perf_counter()
            return
        now = time.perf_counter()
        if self.t1 is None or (k < self.limit and (k - 1 < self.min_batches or now - self.t1 < self.min_seconds)):
            return
        sync(self.device)
        now, self.done = time.perf_counter(), True
        window = now - self.t1
        rate = (k - 1) * self.images_per_batch / window
        rest = max(0, self.images_left - k * self.images_per_batch) / rate
        total = self.seconds_before + (now - epoch_start) + rest + self.test_images / (TEST_PER_TRAIN * rate)
        self.say(f"  pace here: batches 2-{k} in {window:.1f} s, {rate:,.1f} train img/s; "
                 f"at this pace the run takes about {took(total)}")
