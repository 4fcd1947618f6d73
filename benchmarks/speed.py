"""Speed at the batch the book trains with: each chapter's net, at its recipe's ``cpu`` batch
and at 128, through a bare loop and through ``train_ch5``, in one run.

``benchmarks/bench.py`` compares data pipelines at batch 128. This script measures what the
chapters run. For each net and batch (a *cell*), interleaved and repeated so that a machine
drifting during the run does not bias one figure against the other:

* **matmul**: a 2048 x 2048 fp32 matrix product, timed before and after every figure; each
  figure is given as a fraction of the mean of the two (training FLOPs = 3 x forward);
* **bare**: forward, backward and the recipe's optimizer step on one fixed batch, in the
  recipe's memory layout; then forward passes alone under ``inference_mode`` (the
  evaluation rate);
* **bare, new batches** (``bare_fresh``): the same step over the recipe's own next batches,
  made beforehand, so that every step sees new data as in ``train_ch5`` but nothing is spent
  making it; ``train_ch5``'s loop over this rate (``loop_vs_bare_fresh``) is what the trainer
  itself adds, and the bare loop over it is what reusing one batch flatters;
* **train_ch5**: ``Recipe.fit``, the chapters' own path (the recipe's data, initialisation,
  optimizer and schedule, ``train_ch5`` with its curve points, a probe and checkpoints, here
  written to a scratch folder), on a fixed number of training images. Every step's end is
  time-stamped inside ``train_ch5``, and so is every evaluation pass and checkpoint save, so
  the steady loop rate (``loop_img_s``) leaves out the first step and excludes evaluation
  and saves, which are measured on their own.

From these, for each recipe at its own batch: ``trainer_vs_bare`` (the loop's rate with the
real run's saves spread over it, over the bare loop's: what ``train_ch5`` costs), and the
planning rates ``cpu_img_per_s`` and ``cpu_test_img_per_s`` to put in the recipe, so that a
chapter's plan line predicts its wall time (the script prints the lines to change).

    python benchmarks/speed.py                    # the six nets, about 15 minutes on 2 CPU cores
    python benchmarks/speed.py --minutes 30       # longer windows, steadier figures
    python benchmarks/speed.py --quick --out /tmp/speed.json   # a smoke run, about a minute
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime
import io
import itertools
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import d2lutils as d2l
from d2lutils import checkpoint as ckpt_mod
from d2lutils import train as train_mod
from d2lutils._io import atomic_write_text
from d2lutils.devices import as_device
from d2lutils.run import recipes

from bench import matmul_flops, sync  # noqa: E402  (the script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
NETS = {"LeNet": "lenet", "AlexNet": "alexnet", "ZFNet": "zfnet", "VGG-11/8": "vgg11-div8",
        "NiN": "nin", "GoogLeNet": "googlenet", "ResNet-18": "resnet18"}   # the chapters' main recipes
OTHER_BATCH = 128


def _lrn_variant(impl):
    def change(recipe):
        def net():
            m = recipe.net()
            for name, layer in list(m.named_modules()):
                if isinstance(layer, d2l.LocalResponseNorm):
                    parent = m.get_submodule(name.rpartition(".")[0]) if "." in name else m
                    new = (torch.nn.LocalResponseNorm(layer.size, layer.alpha, layer.beta, layer.k) if impl == "torch"
                           else d2l.LocalResponseNorm(layer.size, layer.alpha, layer.beta, layer.k, impl=impl))
                    setattr(parent, name.rpartition(".")[2], new)
            return m
        return recipe.but(net=net)
    return change


# Recipe changes that can be measured beside the recipes, at the recipe's batch, in the same run
# (--variants): the "before" or "after" of a change to a recipe.
VARIANTS = {
    "zfnet-lrn-torch": ("ZFNet", "nn.LocalResponseNorm", _lrn_variant("torch")),
    "zfnet-lrn-matmul": ("ZFNet", "d2l.LocalResponseNorm(impl='matmul')", _lrn_variant("matmul")),
    "zfnet-contiguous": ("ZFNet", "contiguous layout", lambda r: r.but(channels_last=False)),
    "vgg-contiguous": ("VGG-11/8", "contiguous layout", lambda r: r.but(channels_last=False)),
    "alexnet-contiguous": ("AlexNet", "contiguous layout", lambda r: r.but(channels_last=False)),
}


# ---- what train_ch5 does, time-stamped from inside ---------------------------------------

@contextlib.contextmanager
def instrumented(device):
    """Record, while inside, the end of every ``train_ch5`` step, and the start and end of every
    evaluation pass and checkpoint save (the functions are wrapped, not changed)."""
    log = {"step_ends": [], "step_sizes": [], "evals": [], "saves": []}
    step, evaluate, save = train_mod._step, train_mod._evaluate, ckpt_mod.TrainState.save

    def timed_step(net, X, y, **kw):
        out = step(net, X, y, **kw)
        sync(device)
        log["step_ends"].append(time.perf_counter())
        log["step_sizes"].append(int(y.numel()))
        return out

    def timed_evaluate(run, data_iter):
        t0 = time.perf_counter()
        acc = evaluate(run, data_iter)
        log["evals"].append((t0, time.perf_counter(), int(getattr(data_iter, "num_examples", 0))))
        return acc

    def timed_save(self, *a, **kw):
        t0 = time.perf_counter()
        save(self, *a, **kw)
        log["saves"].append((t0, time.perf_counter()))

    train_mod._step, train_mod._evaluate, ckpt_mod.TrainState.save = timed_step, timed_evaluate, timed_save
    try:
        yield log
    finally:
        train_mod._step, train_mod._evaluate, ckpt_mod.TrainState.save = step, evaluate, save


def loop_rate(log, skip: int = 1) -> tuple[float, int]:
    """Images/s of the training loop from the end of step ``skip`` to the last step, evaluation
    passes and saves that fell in between taken out; and the number of steps it covers."""
    ends, sizes = log["step_ends"], log["step_sizes"]
    if len(ends) <= skip:
        return float("nan"), 0
    t0, t1 = ends[skip - 1], ends[-1]
    out = sum(min(b, t1) - max(a, t0) for a, b, *_ in log["evals"] + log["saves"] if b > t0 and a < t1)
    return sum(sizes[skip:]) / (t1 - t0 - out), len(ends) - skip


# ---- the bare loop -----------------------------------------------------------------------

def bare_parts(recipe, batch, device, seed=0):
    """The recipe's net and optimizer, and one fixed batch of its own data, in its layout."""
    net, optimizer, _ = recipe.build(seed, total_steps=1_000_000)
    net = net.to(device)
    train_iter, _ = recipe.but(batch_size=batch).data("cpu", seed=seed)
    X, y = next(iter(train_iter))
    X, y = X.to(device), y.to(device)
    if recipe.channels_last:
        net = net.to(memory_format=torch.channels_last)
        X = X.contiguous(memory_format=torch.channels_last)
    return net, optimizer, X, y


def fresh_batches(recipe, batch, device, seed=0, budget_mb=256):
    """The recipe's own next batches, made beforehand (at least 2, within ``budget_mb``): a bare
    loop over them sees new data every step, as ``train_ch5`` does, but pays nothing to make it."""
    train_iter, _ = recipe.but(batch_size=batch).data("cpu", seed=seed)
    made = []
    for X, y in train_iter:
        X = X.to(device).contiguous(memory_format=torch.channels_last) if recipe.channels_last else X.to(device)
        made.append((X, y.to(device)))
        if len(made) >= 2 and (len(made) + 1) * X.numel() * X.element_size() > budget_mb * 2**20:
            break
    return made


def bare_step_fn(net, optimizer, X, y, aux_weight=0.3):
    """One step on the fixed batch ``X, y``; with lists of batches, on the next one each call."""
    batches = itertools.cycle(list(zip(X, y)) if isinstance(X, list) else [(X, y)])

    def step():
        Xb, yb = next(batches)
        out = net(Xb)
        y_hat, aux = (out[0], out[1:]) if isinstance(out, (tuple, list)) else (out, ())
        loss = F.cross_entropy(y_hat, yb) + sum(aux_weight * F.cross_entropy(a, yb) for a in aux)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def eval_step_fn(net, X):
    def step():
        net.eval()
        with torch.inference_mode():
            out = net(X)
            (out[0] if isinstance(out, (tuple, list)) else out).argmax(1)
        net.train()
    return step


def window(step, batch, device, seconds, min_steps, warmup) -> dict:
    """Images/s of ``step()`` over at least ``seconds`` and ``min_steps`` steps, after ``warmup``."""
    for _ in range(warmup):
        step()
    sync(device)
    n, t0 = 0, time.perf_counter()
    while n < min_steps or time.perf_counter() - t0 < seconds:
        step()
        n += 1
    sync(device)
    dt = time.perf_counter() - t0
    return {"img_s": n * batch / dt, "steps": n, "step_s": dt / n}


# ---- train_ch5, through the recipe ---------------------------------------------------------

def fit_recipe(recipe, batch, n_train, n_test):
    """The recipe under the cpu profile with this run's batch and budget, one epoch."""
    r = recipe.for_profile("cpu")
    return dataclasses.replace(r, name=f"speed-{recipe.name}-b{batch}", batch_size=batch, cpu_images=n_train,
                               cpu_test_images=n_test, cpu_epochs=1, cpu={})


def run_fit(recipe, batch, steps, n_test, device, scratch: Path, probes_per_epoch: int) -> dict:
    """``Recipe.fit`` on ``steps`` batches, instrumented; the folder is removed afterwards."""
    r = fit_recipe(recipe, batch, steps * batch, n_test)
    folder = Path(tempfile.mkdtemp(prefix="speed-", dir=scratch))
    printed = io.StringIO()
    try:
        with instrumented(device) as log, contextlib.redirect_stdout(printed):
            t0 = time.perf_counter()
            _, h = r.fit("cpu", device, folder=folder, resume=False, live_plot=False, progress=False,
                         probes_per_epoch=probes_per_epoch, probe_images=max(10, n_test // 2))
            wall = time.perf_counter() - t0
        ckpt_bytes = sum(f.stat().st_size for f in (folder / "checkpoints").glob("*.pt"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rate, timed = loop_rate(log)
    evals = [{"images": n, "seconds": b - a} for a, b, n in log["evals"]]
    later = evals[1:] or evals     # the first pass also creates the inference kernels
    saves = [b - a for a, b in log["saves"]]
    eval_s = sum(e["seconds"] for e in evals)
    return {"n_train": h.n_train, "n_test": h.n_test, "steps": len(log["step_ends"]), "timed_steps": timed,
            "loop_img_s": rate, "history_img_s": h.images_per_sec[0], "history_seconds": h.wall_time,
            "fit_seconds": wall, "img_s_excl_eval": h.n_train / max(h.wall_time - eval_s, 1e-9),
            "evals": evals, "eval_img_s": sum(e["images"] for e in later) / max(sum(e["seconds"] for e in later), 1e-9),
            "saves_s": saves, "checkpoint_mb": ckpt_bytes / 2**20, "test_acc": h.test_acc[0],
            "printed": printed.getvalue().splitlines()[:3]}


# ---- one cell: a net at one batch -------------------------------------------------------------

def median_spread(values):
    values = [v for v in values if v == v]
    return (statistics.median(values), [min(values), max(values)]) if values else (float("nan"), [])


def measure_cell(label, recipe, batch, args, device, scratch, timing, matmuls) -> dict:
    r = recipe.for_profile("cpu")
    side = r.resize or 28
    flops = d2l.layer_table(r.net(), (1, 1, side, side)).total_flops

    def mm():
        matmuls.append(matmul_flops(device, timing["matmul_s"])["flops"])
        return matmuls[-1]

    cell = {"net": label, "recipe": recipe.name, "batch_size": batch, "recipe_batch": batch == r.batch_size,
            "input": side, "channels_last": r.channels_last, "optimizer": r.optimizer, "forward_flops": flops,
            "bare": {"windows": []}, "eval": {"windows": []}, "train_ch5": {"runs": []}}
    torch.manual_seed(0)
    net, optimizer, X, y = bare_parts(r, batch, device)
    step, evaluate = bare_step_fn(net, optimizer, X, y), eval_step_fn(net, X)
    made = fresh_batches(r, batch, device)
    step_fresh = bare_step_fn(net, optimizer, [b[0] for b in made], [b[1] for b in made])
    cell["bare_fresh"] = {"windows": [], "batches": len(made)}
    before = mm()
    for rep in range(args.repeats):
        w = window(step, batch, device, timing["seconds"], args.min_steps, args.warmup)
        cell["bare_fresh"]["windows"].append(window(step_fresh, batch, device, timing["seconds"], args.min_steps, 0))
        e = window(evaluate, batch, device, timing["seconds"] / 4, args.min_steps, 1)
        after = mm()
        w["matmul_flops"] = e["matmul_flops"] = cell["bare_fresh"]["windows"][-1]["matmul_flops"] = (before + after) / 2
        cell["bare"]["windows"].append(w)
        cell["eval"]["windows"].append(e)
        steps = max(args.min_steps, math.ceil(timing["seconds"] / w["step_s"])) + 1   # + the untimed first step
        steps = min(steps, 60_000 // batch)                                              # the training set
        n_test = max(10, min(10_000, args.test_batches * batch))
        f = run_fit(recipe, batch, steps, n_test, device, scratch, args.probes)
        before = mm()
        f["matmul_flops"] = (after + before) / 2
        cell["train_ch5"]["runs"].append(f)
        print(f"  {label:10s} batch {batch:3d} rep {rep + 1}: bare {w['img_s']:8.1f} img/s "
              f"(new batches {cell['bare_fresh']['windows'][-1]['img_s']:8.1f}), train_ch5 loop "
              f"{f['loop_img_s']:8.1f} ({f['loop_img_s'] / w['img_s']:.3f}), eval {e['img_s']:8.1f}, "
              f"save {statistics.mean(f['saves_s'] or [0]):.2f} s", flush=True)
    del net, optimizer, made
    for key, field, runs in (("bare", "img_s", cell["bare"]["windows"]), ("eval", "img_s", cell["eval"]["windows"]),
                             ("bare_fresh", "img_s", cell["bare_fresh"]["windows"]),
                             ("train_ch5", "loop_img_s", cell["train_ch5"]["runs"])):
        fractions = [3 * flops * x[field] / x["matmul_flops"] for x in runs] if key != "eval" else \
            [flops * x[field] / x["matmul_flops"] for x in runs]   # evaluation: forward FLOPs only
        cell[key]["img_s"], cell[key]["spread"] = median_spread([x[field] for x in runs])
        cell[key]["fraction_of_matmul"] = statistics.median(fractions)
    t = cell["train_ch5"]
    t["eval_img_s"] = statistics.median(x["eval_img_s"] for x in t["runs"])
    t["save_s"] = statistics.median([s for x in t["runs"] for s in x["saves_s"]] or [0.0])
    cell["loop_vs_bare"] = statistics.median(x["loop_img_s"] / w["img_s"] for x, w in
                                             zip(t["runs"], cell["bare"]["windows"]))
    # the same, against a bare loop that also sees a new batch every step: what is left is
    # the trainer's own work (making each batch, the running sums, the checks)
    cell["loop_vs_bare_fresh"] = statistics.median(x["loop_img_s"] / w["img_s"] for x, w in
                                                   zip(t["runs"], cell["bare_fresh"]["windows"]))
    cell.update(real_run(recipe, batch, cell))
    return cell


def real_run(recipe, batch, cell) -> dict:
    """The recipe's own cpu run at this batch, from the rates measured: its saves spread over its
    training time, the rate that predicts that time, and what train_ch5 costs against the bare loop."""
    r = recipe.for_profile("cpu").but(batch_size=batch)
    prof = d2l.get_profile("cpu")
    n = prof.train_images(cpu=r.cpu_images) or 60_000
    epochs = r.epochs(prof)
    probes = train_mod.train_ch5.__kwdefaults__["probes_per_epoch"]
    saves = probes * epochs               # one at each probe, one at each epoch's end
    t = cell["train_ch5"]
    train_s = n * epochs / t["img_s"] + saves * t["save_s"]
    rate = n * epochs / train_s
    return {"real_run": {"n_train": n, "epochs": epochs, "saves": saves, "save_share": saves * t["save_s"] / train_s,
                         "cpu_img_per_s": rate, "cpu_test_img_per_s": t["eval_img_s"]},
            "trainer_vs_bare": rate / cell["bare"]["img_s"]}


# ---- the trainer's additions per step, counted (the same under any load) --------------------

def count_ops(recipe, batch, device, steps: int = 60) -> dict:
    """Top-level operators per step, counted (a count does not depend on the machine's load): in the
    bare loop's step, inside ``train_ch5``'s step, and between two of its steps (what the trainer
    adds: the next batch, the running sums, the checks), gaps with an evaluation or a save left out."""
    from torch.profiler import ProfilerActivity, profile, record_function

    steps = min(steps, 60_000 // batch)
    r = fit_recipe(recipe, batch, steps * batch, max(10, batch))
    net, optimizer, X, y = bare_parts(r, batch, device)
    bare = bare_step_fn(net, optimizer, X, y)
    bare()
    with profile(activities=[ProfilerActivity.CPU]) as p:
        with record_function("STEP"):
            bare()
    bare_ops = sum(len(e.cpu_children) for e in p.events() if e.name == "STEP")
    originals = train_mod._step, train_mod._evaluate, ckpt_mod.TrainState.save

    def marked(name, f):
        def g(*a, **kw):
            with record_function(name):
                return f(*a, **kw)
        return g

    train_mod._step, train_mod._evaluate = marked("STEP", originals[0]), marked("EVAL", originals[1])
    ckpt_mod.TrainState.save = marked("SAVE", originals[2])
    folder = Path(tempfile.mkdtemp(prefix="speed-ops-"))
    try:
        with profile(activities=[ProfilerActivity.CPU]) as p, contextlib.redirect_stdout(io.StringIO()):
            r.fit("cpu", device, folder=folder, resume=False, live_plot=False, progress=False)
    finally:
        train_mod._step, train_mod._evaluate, ckpt_mod.TrainState.save = originals
        shutil.rmtree(folder, ignore_errors=True)
    top = sorted((e for e in p.events() if e.cpu_parent is None), key=lambda e: e.time_range.start)
    marks = [i for i, e in enumerate(top) if e.name in ("STEP", "EVAL", "SAVE")]
    step_ops = [len(top[i].cpu_children) for i in marks if top[i].name == "STEP"][2:]
    gaps = []   # the operators between two consecutive steps, with nothing else marked between them
    for a, b in zip(marks, marks[1:]):
        if top[a].name == "STEP" and top[b].name == "STEP" and a > marks[1]:
            gaps.append(collections.Counter(e.name for e in top[a + 1:b]))
    typical = statistics.median(sum(g.values()) for g in gaps) if gaps else float("nan")
    plain = [g for g in gaps if sum(g.values()) == typical] or gaps
    names = collections.Counter()
    for g in plain:
        names.update(g)
    return {"net": recipe.name, "batch_size": batch, "steps": len(step_ops) + 2, "bare_step_ops": bare_ops,
            "train_step_ops": statistics.median(step_ops) if step_ops else float("nan"),
            "between_steps_ops": typical,
            "between_steps_mean_ops": statistics.mean(sum(g.values()) for g in gaps) if gaps else float("nan"),
            "between_steps": {n: c / max(1, len(plain)) for n, c in names.most_common()}}


# ---- the run -------------------------------------------------------------------------------

def plan_timing(cells, args) -> dict:
    """Window length so that the run takes about ``--minutes``, from the recipes' own rates (an
    evaluation step taken as a third of a training step). Where even the shortest windows would
    not fit, fewer timed steps (2) and test images (2 batches) are used, and the estimate says so."""
    matmul_s = 0.6 if args.quick else 1.5

    def cost(seconds):
        total = matmul_s
        for recipe, batch in cells:
            st = batch / (recipe.cpu_img_per_s or 50.0)
            ev = st / 3
            bare = (args.warmup + max(args.min_steps, seconds / st)) * st
            evals = (1 + max(args.min_steps, seconds / 4 / ev)) * ev
            fit = (max(args.min_steps, math.ceil(seconds / st)) + 1) * st + 1.5 * args.test_batches * ev + 8.0
            total += args.repeats * (bare + evals + fit + 2 * matmul_s)
        return total

    budget = args.minutes * 60
    while cost(0.0) > budget and (args.min_steps > 2 or args.test_batches > 2):
        if args.min_steps > 2:
            args.min_steps = 2
        else:
            args.test_batches = 2
    lo, hi = 0.0, 600.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cost(mid) <= budget else (lo, mid)
    return {"seconds": max(lo, 0.5), "matmul_s": matmul_s, "estimate_s": cost(max(lo, 0.5))}


def recipe_lines(report) -> list[str]:
    lines = []
    for c in report["cells"]:
        if c["recipe_batch"] and not c.get("variant"):
            rr = c["real_run"]
            lines.append(f"{c['recipe']}: cpu_img_per_s={rr['cpu_img_per_s']:.3g}, "
                         f"cpu_test_img_per_s={rr['cpu_test_img_per_s']:.3g}")
    return lines


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="LeNet and GoogLeNet, short windows: a smoke run")
    p.add_argument("--minutes", type=float, default=None, help="about how long the run takes (default 15; 1 with --quick)")
    p.add_argument("--nets", nargs="*", default=None, help=f"labels ({', '.join(NETS)}) or recipe names")
    p.add_argument("--variants", nargs="*", default=[], choices=list(VARIANTS), help="recipe changes measured beside")
    p.add_argument("--repeats", type=int, default=None, help="bare/train_ch5 pairs per cell (default 2; 1 with --quick)")
    p.add_argument("--min-steps", type=int, default=None, help="fewest timed steps per figure (default 3; 2 with --quick)")
    p.add_argument("--warmup", type=int, default=1, help="untimed bare steps before each window")
    p.add_argument("--test-batches", type=int, default=None, help="test images per train_ch5 run, in batches (default 4)")
    p.add_argument("--probes", type=int, default=2, help="train_ch5's probes_per_epoch in the runs (2: one probe)")
    p.add_argument("--count-ops", nargs="*", default=None, help="nets whose operators per step are counted (default LeNet)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--scratch", default=None, help="folder for the runs' checkpoints (default .cache/ of the repository)")
    p.add_argument("--out", default=None, help="JSON report (default benchmarks/results/speed/<device>-<date>.json)")
    args = p.parse_args(argv)
    args.minutes = args.minutes or (1.0 if args.quick else 15.0)
    args.repeats = args.repeats or (1 if args.quick else 2)
    args.min_steps = args.min_steps or (2 if args.quick else 3)
    args.test_batches = args.test_batches or (2 if args.quick else 4)
    if args.nets is None:
        args.nets = ["LeNet", "GoogLeNet"] if args.quick else list(NETS)
    if args.count_ops is None:
        args.count_ops = ["LeNet"] if "LeNet" in args.nets else []
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("D2L_PROGRESS", "0")
    device = as_device(args.device, "--device")
    found = recipes()
    chosen = []
    for name in args.nets:
        recipe = found.get(NETS.get(name, name))
        if recipe is None:
            raise SystemExit(f"unknown net {name!r}: use {', '.join(NETS)} or a recipe name ({', '.join(sorted(found))})")
        label = name if name in NETS else recipe.name
        batches = sorted({recipe.for_profile("cpu").batch_size, OTHER_BATCH},
                         key=lambda b: b != recipe.for_profile("cpu").batch_size)
        chosen += [(label, recipe, b, None) for b in batches]
        for key, (net_label, what, change) in VARIANTS.items():
            if key in args.variants and net_label == label:
                chosen.append((f"{label}, {what}", change(recipe), recipe.for_profile("cpu").batch_size, key))
    timing = plan_timing([(r, b) for _, r, b, _ in chosen], args)
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / "speed" / f"{device.type}-{date[:10]}.json"
    scratch = Path(args.scratch) if args.scratch else ROOT / ".cache" / "speed"
    scratch.mkdir(parents=True, exist_ok=True)
    print(f"{len(chosen)} cells, windows of {timing['seconds']:.1f} s: about {timing['estimate_s'] / 60:.0f} min "
          f"(from the recipes' rates)", flush=True)
    report = {"date": date, "device": d2l.device_name(device), "platform": platform.platform(),
              "cpu": d2l.cpu_model(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "mode": "quick" if args.quick else "full",
              "command": " ".join(["python", "benchmarks/speed.py", *(sys.argv[1:] if argv is None else argv)]),
              "timing": {"minutes": args.minutes, "seconds": timing["seconds"], "repeats": args.repeats,
                         "min_steps": args.min_steps, "warmup": args.warmup, "probes_per_epoch": args.probes,
                         "test_batches": args.test_batches, "other_batch": OTHER_BATCH},
              "malloc_env": {k: os.environ.get(k) for k in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")},
              "how": {"flops": "training = 3 x forward FLOPs (d2l.layer_table); evaluation = forward",
                      "loop_img_s": "train_ch5 steps after the first, evaluation passes and checkpoint saves excluded",
                      "trainer_vs_bare": "the recipe's real run: its loop rate with its saves spread over it, "
                                         "over the bare loop's rate",
                      "bare_fresh": "the bare loop over the recipe's own next batches, made beforehand: new data "
                                    "every step, as in train_ch5, at no cost of making it",
                      "loop_vs_bare_fresh": "loop_img_s over bare_fresh: the trainer's own work per step "
                                            "(making each batch, the running sums, the checks)"},
              "matmul": {}, "cells": [], "ops": [], "wall_seconds": 0.0}
    t_start, matmuls = time.perf_counter(), []
    for label, recipe, batch, variant in chosen:
        cell = measure_cell(label, recipe, batch, args, device, scratch, timing, matmuls)
        if variant:
            cell["variant"] = variant
        report["cells"].append(cell)
        flops, spread = median_spread(matmuls)
        report["matmul"] = {"flops": flops, "spread": spread, "samples": len(matmuls),
                            "how": "2048 x 2048 float32 matmul, before and after every figure"}
        report["wall_seconds"] = time.perf_counter() - t_start
        atomic_write_text(out, json.dumps(report, indent=1), what="report")   # a cut-short run keeps its cells
    for label in args.count_ops:
        recipe = found[NETS.get(label, label)]
        report["ops"].append(count_ops(recipe, recipe.for_profile("cpu").batch_size, device))
    report["recipe_lines"] = recipe_lines(report)
    report["wall_seconds"] = time.perf_counter() - t_start
    atomic_write_text(out, json.dumps(report, indent=1), what="report")
    print(f"\n{'net':28s} {'batch':>5s} {'bare img/s':>10s} {'%mm':>4s} {'train_ch5':>9s} {'%mm':>4s} "
          f"{'loop/bare':>9s} {'loop/new':>8s} {'trainer/bare':>12s} {'eval img/s':>10s}")
    for c in report["cells"]:
        print(f"{c['net']:28s} {c['batch_size']:5d} {c['bare']['img_s']:10.1f} {100 * c['bare']['fraction_of_matmul']:4.0f} "
              f"{c['train_ch5']['img_s']:9.1f} {100 * c['train_ch5']['fraction_of_matmul']:4.0f} "
              f"{c['loop_vs_bare']:9.3f} {c['loop_vs_bare_fresh']:8.3f} {c['trainer_vs_bare']:12.3f} "
              f"{c['eval']['img_s']:10.1f}")
    for o in report["ops"]:
        print(f"{o['net']} batch {o['batch_size']}: {o['bare_step_ops']} operators in a bare step, "
              f"{o['train_step_ops']:.0f} in train_ch5's, {o['between_steps_ops']:.0f} between two of its steps: "
              + ", ".join(f"{n} {c:g}" for n, c in o["between_steps"].items()))
    print("planning rates measured at the recipes' batches (cpu_img_per_s includes the real run's saves):")
    for line in report["recipe_lines"]:
        print("  " + line)
    print(f"wrote {out} ({report['wall_seconds'] / 60:.1f} min; estimated {timing['estimate_s'] / 60:.1f})")
    return 0


if __name__ == "__main__":
    from _malloc import reexec_with_malloc_env  # the script's folder is on sys.path

    reexec_with_malloc_env()   # as bench.py and the Makefile's chapter runs
    raise SystemExit(main())
