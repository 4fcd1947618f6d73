"""Run profiles: ``full`` trains as the seed did; ``quick`` shrinks the data so a
chapter runs on a laptop CPU or in CI in about a minute.

Choose with ``$D2L_PROFILE`` (``quick`` or ``full``). Unset, it is ``full``
where a CUDA GPU is present and ``quick`` otherwise. ``quick`` keeps the
seed's image size (the classic nets only accept their own input size) and
shrinks the number of images and epochs instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

__all__ = ["Profile", "get_profile", "PROFILES"]

ENV_PROFILE = "D2L_PROFILE"


@dataclass(frozen=True)
class Profile:
    """How much to train. ``None`` means "as the seed did"."""

    name: str
    n_train: int | None
    n_test: int | None
    max_epochs: int | None
    reason: str = ""

    def epochs(self, num_epochs: int) -> int:
        """The seed's ``num_epochs``, capped by this profile."""
        return num_epochs if self.max_epochs is None else min(num_epochs, self.max_epochs)

    def __str__(self) -> str:
        if self.n_train is None:
            size = "all 60,000 train / 10,000 test images, the seed's epochs"
        else:
            size = (f"{self.n_train:,} train / {self.n_test:,} test images (balanced), "
                    f"at most {self.max_epochs} epoch(s)")
        return f"profile {self.name}: {size} ({self.reason})"


PROFILES = {
    "full": Profile("full", None, None, None),
    "quick": Profile("quick", 300, 150, 1),
}


def get_profile(name: str | None = None) -> Profile:
    """The profile to run: ``name``, else ``$D2L_PROFILE``, else by hardware."""
    if name is None and os.environ.get(ENV_PROFILE):
        name, reason = os.environ[ENV_PROFILE].strip().lower(), f"set by ${ENV_PROFILE}"
    elif name is not None:
        reason = "chosen in the notebook"
    elif torch.cuda.is_available():
        name, reason = "full", f"a CUDA GPU is present; set {ENV_PROFILE}=quick for a smoke run"
    else:
        name, reason = "quick", f"no CUDA GPU found; set {ENV_PROFILE}=full to train as the seed did"
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    p = PROFILES[name]
    return Profile(p.name, p.n_train, p.n_test, p.max_epochs, reason)
