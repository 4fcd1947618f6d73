"""NiN across seeds: d2l's recipe against Kaiming + warm-up, on a budget a CPU can afford.

The NiN chapter's own training cell runs both recipes for three seeds, ten epochs
at 224 px, under the ``full`` profile: hours on a GPU, about 80 hours on a 2-core
CPU. This script runs the same comparison smaller, so the chapter can show real
multi-seed curves from a CPU: the same net, recipes, batch size and learning rate
(``d2lutils.models.nin_recipe``, generated from the chapter), on fewer images at
112 px (every feature map exactly half as wide as at 224 px, a fifth of the cost).
Each run is written to the JSON report as soon as it ends, so a killed study keeps
what it finished and ``--resume`` skips those runs.

    python benchmarks/nin_seeds.py                 # 6 runs, about 45 minutes on 2 CPU cores
    python benchmarks/nin_seeds.py --quick --out /tmp/s.json   # seconds: a smoke test
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

import d2lutils as d2l
from d2lutils.models import nin_recipe

RECIPES = {"d2l": "Xavier, SGD 0.1 from the first step (d2l)",
           "kaiming": "Kaiming, SGD warmed up over the first epoch (this book)"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=112, help="input side in pixels (112 or 224)")
    p.add_argument("--n-train", type=int, default=10000, help="training images (balanced subset)")
    p.add_argument("--n-test", type=int, default=1000, help="test images (balanced subset)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--quick", action="store_true", help="64 images, 1 epoch, 1 seed: a smoke test")
    p.add_argument("--resume", action="store_true", help="keep the runs already in --out")
    p.add_argument("--out", help="JSON report (default: benchmarks/results/nin_seeds/<device>-<date>.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test, args.epochs, args.seeds, args.batch_size = 64, 64, 1, [0], 32
    return args


def write_atomic(path: Path, report: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, path)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = d2l.try_gpu()
    t_start = time.perf_counter()
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    out = Path(args.out) if args.out else (Path(__file__).parent / "results" / "nin_seeds" /
                                           f"{device.type}-{date[:10]}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    setting = {k: getattr(args, k) for k in ("size", "n_train", "n_test", "epochs", "batch_size", "lr")}
    report = {"date": date, "device": d2l.device_name(device), "platform": platform.platform(),
              "torch": torch.__version__, "mode": "quick" if args.quick else "study",
              "command": " ".join(["python", "benchmarks/nin_seeds.py", *sys.argv[1:]]),
              "setting": setting, "recipes": RECIPES, "runs": [], "wall_seconds": 0.0}
    if args.resume and out.exists():
        old = json.loads(out.read_text())
        if old["setting"] != setting:
            raise SystemExit(f"{out} holds runs of another setting ({old['setting']}); "
                             f"choose another --out or drop --resume")
        report["runs"], report["wall_seconds"] = old["runs"], old["wall_seconds"]
    done = {(r["recipe"], r["seed"]) for r in report["runs"]}
    train_iter, test_iter = d2l.load_data_fashion_mnist(
        args.batch_size, resize=args.size, n_train=args.n_train, n_test=args.n_test, seed=0)
    # The seeds alternate between the recipes, so a study cut short still compares like with like.
    for seed in args.seeds:
        for recipe in RECIPES:
            if (recipe, seed) in done:
                continue
            print(f"--- {RECIPES[recipe]}, seed {seed} ---", flush=True)
            net, optimizer, scheduler = nin_recipe(recipe, seed, len(train_iter), lr=args.lr)
            h = d2l.train_ch5(net, train_iter, test_iter, args.batch_size, optimizer, device,
                              args.epochs, scheduler=scheduler, channels_last=True,
                              profile=f"nin-seeds {args.size}px", live_plot=False)
            report["runs"].append({"recipe": recipe, "seed": seed, "history": h.to_dict()})
            report["wall_seconds"] += h.wall_time
            write_atomic(out, report)
    print(f"wrote {out} ({time.perf_counter() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    from _malloc import reexec_with_malloc_env  # the script's folder is on sys.path

    reexec_with_malloc_env()  # steadier, faster CPU training, as under the Makefile
    raise SystemExit(main())
