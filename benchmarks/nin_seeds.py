"""NiN across seeds: from d2l's recipe to this book's, one change at a time, on a CPU budget.

The NiN chapter's main run trains this book's recipe once, on its full CPU budget. This
script asks the other question, whether each recipe leaves the plateau at chance with
every seed, and which change makes the difference: four arms from d2l's recipe
(``d2lutils.models.NIN_D2L``) to this book's (``NIN``), each one change away from the
one before (``RECIPES``), seeds 0, 1 and 2, on the same balanced subset of the training set, one pass,
at the chapter's own 224 px (where the global average pool sees 5 x 5 maps, as in the
chapter). Each run is written to the JSON report as soon as it ends, so a killed study
keeps what it finished and ``--resume`` skips those runs.

    python benchmarks/nin_seeds.py                 # 12 runs, about 45 minutes on 2 CPU cores
    python benchmarks/nin_seeds.py --resume --out R.json --arms d2l-b32   # add an arm to report R
    python benchmarks/nin_seeds.py --quick --out /tmp/s.json   # a smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import torch

import d2lutils as d2l
from d2lutils._io import atomic_write_text
from d2lutils.models import NIN, NIN_D2L, init_kaiming

# The arms of the study, each one change away from the arm before it, on the same images:
# d2l's recipe; the same at batch 32 (the book's 150 steps instead of 37); then Kaiming
# initialisation; then this book's CPU recipe (Adam with a warm-up and a cosine decay).
RECIPES = {"d2l": "d2l's recipe: Xavier, SGD 0.1, batch 128",
           "d2l-b32": "d2l's recipe at batch 32 (the same steps as the book's)",
           "d2l-b32-kaiming": "the same, with Kaiming initialisation",
           "book": "this book's CPU recipe: Kaiming, Adam 0.001, batch 32, warm-up, cosine"}
BASES = {"d2l": ("d2l", {}), "d2l-b32": ("d2l", {"batch_size": 32}),
         "d2l-b32-kaiming": ("d2l", {"batch_size": 32, "init": init_kaiming}), "book": ("book", {})}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=224, help="input side in pixels (the chapter's 224)")
    p.add_argument("--n-train", type=int, default=4_800, help="training images (balanced subset), one pass")
    p.add_argument("--n-test", type=int, default=1_000, help="test images (balanced subset)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--arms", nargs="+", choices=list(RECIPES), default=list(RECIPES),
                   help="which arms to run (all by default)")
    p.add_argument("--quick", action="store_true", help="64 images, 1 seed: a smoke test")
    p.add_argument("--resume", action="store_true", help="keep the runs already in --out")
    p.add_argument("--out", help="JSON report (default: benchmarks/results/nin_seeds/<device>-<date>.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test, args.seeds = 64, 50, [0]
    return args


def recipe(name: str, args) -> d2l.Recipe:
    """The chapter's recipe with the study's budget and input size."""
    which, changes = BASES[name]
    base = {"d2l": NIN_D2L, "book": NIN}[which].for_profile("cpu")
    return dataclasses.replace(base, name=f"nin-seeds-{name}", resize=args.size, cpu_images=args.n_train,
                               cpu_test_images=args.n_test, **changes)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = d2l.try_gpu()
    t_start = time.perf_counter()
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    out = Path(args.out) if args.out else (Path(__file__).parent / "results" / "nin_seeds" /
                                           f"{device.type}-{date[:10]}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    setting = {"size": args.size, "n_train": args.n_train, "n_test": args.n_test,
               "recipes": {k: recipe(k, args).describe() for k in RECIPES}}
    report = {"date": date, "device": d2l.device_name(device), "platform": platform.platform(),
              "cpu": d2l.cpu_model(), "torch": torch.__version__, "mode": "quick" if args.quick else "study",
              "command": " ".join(["python", "benchmarks/nin_seeds.py", *sys.argv[1:]]),
              "setting": setting, "recipes": RECIPES, "runs": [], "wall_seconds": 0.0}
    if args.resume and out.exists():
        old = json.loads(out.read_text())
        same = {k: old["setting"][k] for k in ("size", "n_train", "n_test")} == \
            {k: setting[k] for k in ("size", "n_train", "n_test")}
        clash = {k for k, v in old["setting"]["recipes"].items() if setting["recipes"].get(k) != v}
        if not same or clash:
            raise SystemExit(f"{out} holds runs of another setting ({old['setting']}); "
                             f"choose another --out or drop --resume")
        # Runs kept from an earlier report carry that report's date; new arms may join it.
        for r in old["runs"]:
            r.setdefault("date", old["date"])
        report["runs"], report["wall_seconds"] = old["runs"], old["wall_seconds"]
        report["date"] = date
    done = {(r["recipe"], r["seed"]) for r in report["runs"]}
    cpu = d2l.get_profile("cpu")
    # The seeds alternate between the recipes, so a study cut short still compares like with like.
    for seed in args.seeds:
        for name in args.arms:
            if (name, seed) in done:
                continue
            print(f"--- {RECIPES[name]}, seed {seed} ---", flush=True)
            r = recipe(name, args)
            train_iter, test_iter = r.data(cpu, seed=0)           # the same images for every run
            net, optimizer, scheduler = r.build(seed, total_steps=len(train_iter))
            h = d2l.train_ch5(net, train_iter, test_iter, r.batch_size, optimizer, device, 1,
                              scheduler=scheduler, channels_last=True, live_plot=False,
                              profile=f"nin-seeds {args.size}px", probe_images=min(250, args.n_test))
            report["runs"].append({"recipe": name, "seed": seed, "date": date, "history": h.to_dict()})
            report["wall_seconds"] += h.wall_time
            atomic_write_text(out, json.dumps(report, indent=1), what="report")
    print(f"wrote {out} ({time.perf_counter() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    from _malloc import reexec_with_malloc_env  # the script's folder is on sys.path

    reexec_with_malloc_env()  # steadier, faster CPU training, as under the Makefile
    raise SystemExit(main())
