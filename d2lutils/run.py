"""Train a chapter's net from the shell, with the chapter's own recipe and profile.

For long runs that must outlive a notebook tab (Colab disconnects idle sessions)::

    python -m d2lutils.run --list
    python -m d2lutils.run alexnet --profile cpu
    torchrun --nproc_per_node=2 -m d2lutils.run alexnet --profile full   # two GPUs

The recipes are the chapters' own (``d2lutils.models`` is generated from their
``#@save`` cells). The run writes the same files the chapter reads,
``<folder>/checkpoints/<name>-<profile>.pt`` and ``<folder>/runs/<name>-<profile>.json``
(``--folder`` defaults to ``notebooks`` when run from the repository root), so
opening the chapter afterwards loads the finished run instead of training again,
and a run that was killed resumes where its last checkpoint left it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from . import distributed as dist
from . import models
from .devices import as_device, try_gpu
from .errors import ArgumentError, D2LError
from .profile import PROFILES, get_profile
from .recipe import Recipe


def recipes() -> dict:
    """Every recipe defined in the chapters, by name."""
    return {r.name: r for r in vars(models).values() if isinstance(r, Recipe)}


# What each numeric flag allows: a zero is a value, not "not given", so it is refused
# rather than silently read as the recipe's default (all 60,000 images).
_RANGES = {"images": ("--images", 10, 60_000), "test_images": ("--test-images", 10, 10_000),
           "seed": ("--seed", 0, 2**64 - 1)}


def _range_error(args: argparse.Namespace) -> str | None:
    """A one-line message for the first numeric flag outside its range, else ``None``."""
    for attr, (flag, low, high) in _RANGES.items():
        value = getattr(args, attr)
        if value is not None and not low <= value <= high:
            return f"{flag} must be a whole number from {low:,} to {high:,}; got {value}"
    return None


def _parser(found: dict, profiles: list[str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m d2lutils.run", description=__doc__.splitlines()[0])
    p.add_argument("recipe", nargs="?", help=f"one of: {', '.join(sorted(found))}")
    p.add_argument("--list", action="store_true", help="list the recipes and exit")
    p.add_argument("--profile", choices=profiles, default=None,
                   help="default: $D2L_PROFILE, else full on a CUDA GPU and cpu otherwise")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: the best one here)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--folder", default=None,
                   help="where checkpoints/ and runs/ go (default: notebooks/ if it exists here, else .)")
    p.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    p.add_argument("--images", type=int, default=None,
                   help="cpu profile only: train on this many images instead of the recipe's budget")
    p.add_argument("--test-images", type=int, default=None,
                   help="cpu profile only: test on this many images instead of the recipe's")
    p.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"], default="auto",
                   help="mixed precision: auto = bf16 or fp16 on a CUDA GPU, fp32 on a CPU")
    return p


def main(argv: list[str] | None = None) -> int:
    found = recipes()
    p = _parser(found, sorted(PROFILES))
    args = p.parse_args(argv)
    if args.list or not args.recipe:
        width = max(map(len, found)) if found else 0
        for name, r in sorted(found.items()):
            print(f"{name:{width}s}  {r.describe()}, {r.num_epochs} epoch(s) under full ({r.source})")
        return 0 if args.list else 2
    if args.recipe not in found:
        print(f"unknown recipe {args.recipe!r}; choose one of: {', '.join(sorted(found))}", file=sys.stderr)
        return 2
    problem = _range_error(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    folder = Path(args.folder) if args.folder else (Path("notebooks") if Path("notebooks").is_dir() else Path("."))
    if folder.exists() and not folder.is_dir():
        print(f"error: --folder {folder} is a file; give a folder (checkpoints/ and runs/ are made in it)",
              file=sys.stderr)
        return 2
    try:
        profile = get_profile(args.profile)
        device = as_device(args.device, "--device") if args.device else try_gpu()
        amp = {"auto": True, "off": False, "bf16": "bf16", "fp16": "fp16"}[args.amp]
        recipe = found[args.recipe]
        if args.images is not None or args.test_images is not None:
            if profile.name != "cpu":
                raise ArgumentError("--images and --test-images change the cpu profile's budget; "
                                    "use them with --profile cpu")
            recipe = dataclasses.replace(
                recipe, cpu_images=recipe.cpu_images if args.images is None else args.images,
                cpu_test_images=recipe.cpu_test_images if args.test_images is None else args.test_images)
        recipe.fit(profile, device, seed=args.seed, folder=folder, resume=not args.no_resume, amp=amp,
                   live_plot=False)
    except D2LError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if dist.is_main():
        ckpt, runs = recipe.files(profile, folder)
        print(f"checkpoint: {ckpt}\nhistory:    {runs}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("D2L_PROGRESS", "1")
    raise SystemExit(main())
