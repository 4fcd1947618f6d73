"""Where a training step's time goes, layer by layer, and what each candidate change buys.

For ZFNet and VGG-11 / 8 (or ``--nets``) at the batch their recipe trains with on a CPU, in
one run:

1. **The profile** (``torch.profiler``): each layer's forward and backward time in the
   recipe's own training step (backward ops are matched to their layer through autograd's
   sequence numbers), its share of the step, its FLOP rate as a fraction of a 2048 x 2048
   matmul timed in the same run, and, for the layers that do little arithmetic, how many passes
   over their output that time would buy at the machine's copy bandwidth (memory-bound layers
   show it).
2. **oneDNN's choices**: the implementation oneDNN picked for each convolution primitive of
   one step (``ONEDNN_VERBOSE``), its time, and the time of the reorders between layouts.
3. **Each layer on its own**, forward and backward on an input of its shape: memory layout
   (channels-last against contiguous), oneDNN against PyTorch's own convolution, the LRN
   implementations. A layer can win alone and lose in the net (its neighbours then convert).
4. **Whole training steps** with one change at a time against the recipe as it trains, in the
   same run: each round times the baseline, every candidate, the baseline again, and the next
   round runs the candidates in reverse order; each candidate's ratio is its rate over the mean
   of the baselines around it. Candidates: the other memory layout for the whole net; the
   layouts and the oneDNN choice the single layers preferred; oneDNN off; the LRN
   implementations; one thread; the batch halved, doubled and 128; and, each in its own
   process against a baseline process, one inter-op thread and ``ONEDNN_MAX_CPU_ISA=AVX2``.
   Each candidate comes with the one line that keeps it.

    python benchmarks/layer_profile.py                     # about 15 minutes on 2 CPU cores
    python benchmarks/layer_profile.py --quick --out /tmp/layers.json   # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import d2lutils as d2l
from d2lutils._io import atomic_write_text
from d2lutils.layers import onednn_off
from d2lutils.run import recipes

from bench import matmul_flops  # noqa: E402  (the script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
NETS = {"ZFNet": "zfnet", "VGG-11/8": "vgg11-div8", "AlexNet": "alexnet", "NiN": "nin",
        "GoogLeNet": "googlenet", "LeNet": "lenet"}
# Where each net's keep-line goes: the recipe and the net are defined in the chapter's #@save cells.
WHERE = {"zfnet": ("notebooks/03_zfnet.ipynb", "ZFNET = d2l.Recipe(", "ZFNet(in_channels=1, num_classes=10)"),
         "vgg11-div8": ("notebooks/04_vgg.ipynb", "VGG11_DIV8 = d2l.Recipe(",
                        'vgg(VGG_ARCHS["VGG-11"], ratio=8, fc_hidden=512)'),
         "alexnet": ("notebooks/02_alexnet.ipynb", "ALEXNET = d2l.Recipe(", "AlexNet(in_channels=1, num_classes=10)"),
         "nin": ("notebooks/05_nin.ipynb", "NIN = d2l.Recipe(", "nin()"),
         "googlenet": ("notebooks/06_googlenet.ipynb", "GOOGLENET = d2l.Recipe(", "googlenet()"),
         "lenet": ("notebooks/01_lenet.ipynb", "LENET = ", "lenet(nn.ReLU, nn.MaxPool2d)")}
TIMED = (nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, d2l.LocalResponseNorm,
         nn.LocalResponseNorm)


# ---- the net as its recipe trains it ---------------------------------------------------------

class Setup:
    """A recipe's cpu net, optimizer and one fixed batch of its data, in its layout."""

    def __init__(self, recipe, batch=None, channels_last=None, change=None, seed=0):
        self.recipe = recipe.for_profile("cpu")
        self.batch = batch or self.recipe.batch_size
        self.channels_last = self.recipe.channels_last if channels_last is None else channels_last
        torch.manual_seed(seed)
        net, self.optimizer, _ = self.recipe.build(seed, total_steps=1_000_000)
        if change is not None:
            net = change(net)
        train_iter, _ = self.recipe.but(batch_size=self.batch).data("cpu", seed=seed)
        self.X, self.y = next(iter(train_iter))
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
            self.X = self.X.contiguous(memory_format=torch.channels_last)
        self.net = net

    def step(self):
        out = self.net(self.X)
        out = out[0] if isinstance(out, (tuple, list)) else out
        loss = F.cross_entropy(out, self.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def leaves(net):
    return [(n, m) for n, m in net.named_modules() if n and not list(m.children())]


def copy_bandwidth(seconds=1.0) -> float:
    """Bytes per second of copying a 128 MB float32 tensor (read + write counted)."""
    src, dst = torch.rand(32 * 2**20), torch.empty(32 * 2**20)
    dst.copy_(src)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        dst.copy_(src)
        n += 1
    return 2 * src.numel() * 4 * n / (time.perf_counter() - t0)


# ---- 1. the profile ---------------------------------------------------------------------------

def profile_layers(s: Setup, steps: int, matmul: float, copy_bw: float) -> dict:
    from torch.profiler import ProfilerActivity, profile, record_function

    handles, open_ = [], {}
    for name, m in leaves(s.net):
        def pre(mod, args, name=name):
            open_[name] = record_function(f"layer:{name}")
            open_[name].__enter__()

        def post(mod, args, out, name=name):
            open_.pop(name).__exit__(None, None, None)
        handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    try:
        s.step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                with record_function("STEP"):
                    s.step()
    finally:
        for h in handles:
            h.remove()
    events = prof.events()
    step_us = sum(e.cpu_time_total for e in events if e.name == "STEP") / steps
    layer_of_seq, fwd = {}, {}
    for e in events:
        if e.name.startswith("layer:"):
            name = e.name[len("layer:"):]
            fwd[name] = fwd.get(name, 0.0) + e.cpu_time_total
            stack = list(e.cpu_children)
            while stack:
                c = stack.pop()
                if c.sequence_nr >= 0:
                    layer_of_seq.setdefault(c.sequence_nr, name)
                stack += c.cpu_children
    bwd, other = {}, {"optimizer step": 0.0, "zero_grad": 0.0, "loss": 0.0, "weight-gradient accumulation": 0.0}
    for e in events:
        if e.name.startswith("autograd::engine::evaluate_function"):   # the backward of one autograd node
            name = layer_of_seq.get(e.sequence_nr)
            if name is not None:
                bwd[name] = bwd.get(name, 0.0) + e.cpu_time_total
            elif "AccumulateGrad" in e.name:
                other["weight-gradient accumulation"] += e.cpu_time_total
            else:
                other["loss"] += e.cpu_time_total
        elif e.cpu_parent is not None and e.cpu_parent.name == "STEP":
            if e.name.startswith("Optimizer.step"):
                other["optimizer step"] += e.cpu_time_total
            elif e.name.startswith("Optimizer.zero_grad"):
                other["zero_grad"] += e.cpu_time_total
            elif e.name.startswith("aten::cross_entropy") or e.name.startswith("aten::nll"):
                other["loss"] += e.cpu_time_total
    side = s.recipe.resize or 28
    table = {r.name: r for r in d2l.layer_table(s.recipe.net(), (1, 1, side, side)).rows}
    first = leaves(s.net)[0][0]
    rows = []
    for name, m in leaves(s.net):
        f_ms, b_ms = fwd.get(name, 0.0) / steps / 1e3, bwd.get(name, 0.0) / steps / 1e3
        r = table.get(name)
        flops = (r.flops if r else 0) * s.batch
        train_flops = flops * (2 if name == first else 3)   # the first layer computes no input gradient
        out_bytes = 4 * s.batch * (int(torch.tensor(r.output_shape).prod()) if r and r.output_shape else 0)
        ms = f_ms + b_ms
        rows.append({"name": name, "type": type(m).__name__, "output_shape": list(r.output_shape) if r else None,
                     "fwd_ms": f_ms, "bwd_ms": b_ms, "ms": ms, "share": ms * 1e3 / step_us,
                     "gflop": train_flops / 1e9,
                     "gflops_s": train_flops / (ms / 1e3) / 1e9 if ms and flops else None,
                     "fraction_of_matmul": train_flops / (ms / 1e3) / matmul if ms and flops else None,
                     "out_mb": out_bytes / 2**20,
                     "copy_passes": (ms / 1e3) * copy_bw / out_bytes if out_bytes else None})
    other = {k: v / steps / 1e3 for k, v in other.items()}
    other["rest"] = step_us / 1e3 - sum(r["ms"] for r in rows) - sum(other.values())
    total_flops = sum(r["gflop"] for r in rows) * 1e9
    top = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    return {"step_ms": step_us / 1e3, "profiled_steps": steps, "layers": rows, "other_ms": other,
            "fraction_of_matmul": total_flops / (step_us / 1e6) / matmul, "top_ops": top.splitlines()}


# ---- 2. oneDNN's choices ------------------------------------------------------------------------

@contextlib.contextmanager
def captured_stdout_fd():
    """What C code writes to file descriptor 1 inside the block (oneDNN's verbose lines)."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 1)
        lines: list[str] = []
        try:
            yield lines
        finally:
            libc.fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
            tmp.seek(0)
            lines += tmp.read().decode(errors="replace").splitlines()


def onednn_choices(s: Setup) -> dict:
    s.step()
    with captured_stdout_fd() as lines:
        with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
            s.step()
    prims = {}
    for line in lines:
        f = line.split(",")
        if "exec" not in f or "cpu" not in f:
            continue
        i = f.index("cpu", f.index("exec"))
        kind, impl, prop = f[i + 1], f[i + 2], f[i + 3]
        try:
            ms = float(f[-1])
        except ValueError:
            continue
        problem = f[-2]
        key = (kind, prop, problem)
        p = prims.setdefault(key, {"kind": kind, "prop": prop, "problem": problem, "impl": impl, "ms": 0.0, "calls": 0})
        p["ms"] += ms
        p["calls"] += 1
    rows = sorted(prims.values(), key=lambda p: -p["ms"])
    return {"primitives": [p for p in rows if p["kind"] != "reorder"][:40],
            "reorder_ms": sum(p["ms"] for p in rows if p["kind"] == "reorder"),
            "reorders": sum(p["calls"] for p in rows if p["kind"] == "reorder"),
            "total_ms": sum(p["ms"] for p in rows), "lines": len(lines)}


# ---- 3. each layer on its own ---------------------------------------------------------------------

def layer_inputs(s: Setup) -> dict:
    shapes, handles = {}, []
    for name, m in leaves(s.net):
        if isinstance(m, TIMED):
            handles.append(m.register_forward_pre_hook(
                lambda mod, args, name=name: shapes.setdefault(name, tuple(args[0].shape)) and None))
    with torch.no_grad():
        s.net(s.X)
    for h in handles:
        h.remove()
    return shapes


def time_layer(layer, shape, fmt, needs_grad, context, reps) -> float:
    """Seconds of one forward and backward pass of ``layer`` on a random input of ``shape``."""
    layer = layer.to(memory_format=fmt)
    x = torch.rand(shape)
    x = x.contiguous(memory_format=fmt) if x.dim() == 4 else x
    x.requires_grad_(needs_grad)
    with context():
        y = layer(x)
        g = torch.rand_like(y)
        y.backward(g)
        times = []
        for _ in range(reps):
            layer.zero_grad(set_to_none=True)
            x.grad = None
            t0 = time.perf_counter()
            layer(x).backward(g)
            times.append(time.perf_counter() - t0)
    return min(times)


def isolated(s: Setup, reps: int) -> list[dict]:
    shapes = layer_inputs(s)
    base_fmt = torch.channels_last if s.channels_last else torch.contiguous_format
    other_fmt = torch.contiguous_format if s.channels_last else torch.channels_last
    first = leaves(s.net)[0][0]
    rows = []
    for name, m in leaves(s.net):
        if name not in shapes:
            continue
        grad = name != first
        cands = []
        if len(shapes[name]) == 4:
            cands.append(("other layout", copy.deepcopy(m), other_fmt, contextlib.nullcontext))
        if isinstance(m, nn.Conv2d):
            cands.append(("oneDNN off", copy.deepcopy(m), base_fmt, onednn_off))
        if isinstance(m, d2l.LocalResponseNorm):
            for impl in ("matmul", "shifted"):
                if impl != m.impl:
                    cands.append((f"impl={impl}", d2l.LocalResponseNorm(m.size, m.alpha, m.beta, m.k, impl=impl),
                                  base_fmt, contextlib.nullcontext))
            cands.append(("nn.LocalResponseNorm", nn.LocalResponseNorm(m.size, m.alpha, m.beta, m.k), base_fmt,
                          contextlib.nullcontext))
        base = copy.deepcopy(m)
        for label, layer, fmt, ctx in cands:
            a, b = [], []   # A B B A
            a.append(time_layer(base, shapes[name], base_fmt, grad, contextlib.nullcontext, reps))
            b.append(time_layer(layer, shapes[name], fmt, grad, ctx, reps))
            b.append(time_layer(layer, shapes[name], fmt, grad, ctx, reps))
            a.append(time_layer(base, shapes[name], base_fmt, grad, contextlib.nullcontext, reps))
            rows.append({"layer": name, "type": type(m).__name__, "input": list(shapes[name]), "candidate": label,
                         "baseline_ms": 1e3 * min(a), "candidate_ms": 1e3 * min(b), "speedup": min(a) / min(b)})
    return rows


# ---- 4. whole steps, one change at a time -----------------------------------------------------------

def rate(make, seconds, min_steps, context=contextlib.nullcontext) -> float:
    s = make()
    with context():
        s.step()                                   # a fresh net's first step: Adam's state, new kernels
        n, t0 = 0, time.perf_counter()
        while n < min_steps or time.perf_counter() - t0 < seconds:
            s.step()
            n += 1
        dt = time.perf_counter() - t0
    batch = s.batch
    del s
    return n * batch / dt


@contextlib.contextmanager
def threads(n):
    was = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(was)


def lrn_change(impl):
    def change(net):
        for name, layer in list(net.named_modules()):
            if isinstance(layer, d2l.LocalResponseNorm):
                parent = net.get_submodule(name.rpartition(".")[0]) if "." in name else net
                new = (nn.LocalResponseNorm(layer.size, layer.alpha, layer.beta, layer.k) if impl == "torch"
                       else d2l.LocalResponseNorm(layer.size, layer.alpha, layer.beta, layer.k, impl=impl))
                setattr(parent, name.rpartition(".")[2], new)
        return net
    return change


def candidates(recipe, s: Setup, single: list[dict], gain: float) -> list[dict]:
    """The changes to time against the baseline, each with the one line that keeps it."""
    path, recipe_line, net_call = WHERE.get(recipe.name, ("the chapter", f"{recipe.name} recipe", "the net"))
    cl, b = s.channels_last, s.batch          # (the lambdas below must not keep s and its net alive)
    other = "contiguous" if cl else "channels_last"
    out = [{"name": f"{other} layout", "make": lambda: Setup(recipe, channels_last=not cl),
            "keep": f"{path}, {recipe_line}...: add channels_last={not cl}"}]
    wins = {}
    for r in single:
        if r["speedup"] >= gain and r["candidate"] == "other layout":
            wins.setdefault(r["layer"], {})["memory_format"] = other
        if r["speedup"] >= gain and r["candidate"] == "oneDNN off":
            wins.setdefault(r["layer"], {})["onednn"] = False
    layouts = {k: {"memory_format": v["memory_format"]} for k, v in wins.items() if "memory_format" in v}
    no_dnn = {k: {"onednn": False} for k, v in wins.items() if "onednn" in v}
    for label, settings in (("layouts the single layers preferred", layouts),
                            ("oneDNN off where the single layers preferred it", no_dnn)):
        if settings:
            out.append({"name": label, "settings": settings,
                        "make": lambda settings=settings: Setup(recipe, change=lambda n: d2l.with_layer_settings(n, settings)),
                        "keep": f"{path}, {recipe_line}...: net=lambda: d2l.with_layer_settings({net_call}, {settings!r})"})
    convs = {n: {"onednn": False} for n, m in leaves(s.net) if isinstance(m, nn.Conv2d)}
    out.append({"name": "oneDNN off", "make": lambda: Setup(recipe), "context": onednn_off,
                "keep": f"{path}, {recipe_line}...: net=lambda: d2l.with_layer_settings({net_call}, {convs!r})"})
    if any(isinstance(m, d2l.LocalResponseNorm) for _, m in leaves(s.net)):
        for impl, label in (("matmul", "d2l.LocalResponseNorm(impl='matmul')"), ("torch", "nn.LocalResponseNorm")):
            out.append({"name": label, "make": lambda impl=impl: Setup(recipe, change=lrn_change(impl)),
                        "keep": f"{path}, the net's LRN (ZFNet: `norm = lambda: d2l.LocalResponseNorm(...)`): "
                                + ("add impl=\"matmul\"" if impl == "matmul" else "nn.LocalResponseNorm (what it replaced)")})
    out.append({"name": "1 thread", "make": lambda: Setup(recipe), "context": lambda: threads(1),
                "keep": "torch.set_num_threads(1) before training (not a recipe field)"})
    for other_b in sorted({max(1, b // 2), 2 * b, 128} - {b}):
        out.append({"name": f"batch {other_b}", "make": lambda other_b=other_b: Setup(recipe, batch=other_b),
                    "keep": f"{path}, {recipe_line}...: cpu={{'batch_size': {other_b}, ...}} (changes what the run "
                            "learns, and its budget)"})
    return out


def whole_steps(recipe, cands, rounds, seconds, min_steps) -> dict:
    """Each round: the baseline, every candidate, the baseline again; the next round runs the
    candidates in reverse order. A candidate's ratio is its rate over its round's two baselines."""
    base = lambda: rate(lambda: Setup(recipe), seconds, min_steps)
    results = {c["name"]: [] for c in cands}
    bases = []
    for k in range(rounds):
        order = cands if k % 2 == 0 else cands[::-1]
        before = base()
        rates = {c["name"]: rate(c["make"], seconds, min_steps, c.get("context", contextlib.nullcontext))
                 for c in order}
        after = base()
        bases += [before, after]
        for name, r in rates.items():
            results[name].append({"img_s": r, "ratio": r / ((before + after) / 2)})
        print(f"    round {k + 1}: baseline {before:.1f} and {after:.1f} img/s", flush=True)
    rows = []
    for c in cands:
        rs = results[c["name"]]
        rows.append({"name": c["name"], "img_s": statistics.median(x["img_s"] for x in rs),
                     "ratio": statistics.median(x["ratio"] for x in rs), "ratios": [x["ratio"] for x in rs],
                     "keep": c["keep"], **({"settings": c["settings"]} if "settings" in c else {})})
    return {"baseline_img_s": statistics.median(bases), "baseline_spread": [min(bases), max(bases)],
            "candidates": rows}


def in_processes(recipe_name, args) -> list[dict]:
    """Candidates that must be set before the process starts: each timed in its own process,
    against a baseline process, alternately (A B B A)."""
    script = str(Path(__file__).resolve())
    out = []
    for label, env, keep in [
            ("1 inter-op thread", {"D2L_INTEROP_THREADS": "1"}, "torch.set_num_interop_threads(1) at start-up"),
            ("ONEDNN_MAX_CPU_ISA=AVX2", {"ONEDNN_MAX_CPU_ISA": "AVX2"},
             "ONEDNN_MAX_CPU_ISA=AVX2 in the environment (the Makefile's export list)")]:
        a, b = [], []
        for extra in ({}, env, env, {}):
            cmd = [sys.executable, script, "--worker", recipe_name, "--seconds", str(args.seconds),
                   "--min-steps", str(args.min_steps)]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env={**os.environ, **extra})
            line = next((x for x in p.stdout.splitlines() if x.startswith("RATE ")), None)
            if p.returncode or line is None:
                raise RuntimeError(f"{label}: worker failed:\n{p.stderr[-2000:]}")
            (b if extra else a).append(float(line.split()[1]))
        out.append({"name": label, "img_s": statistics.median(b), "baseline_img_s": statistics.median(a),
                    "ratio": statistics.median(b) / statistics.median(a), "keep": keep, "process": True})
    return out


def worker(recipe_name, args) -> int:
    if os.environ.get("D2L_INTEROP_THREADS"):
        torch.set_num_interop_threads(int(os.environ["D2L_INTEROP_THREADS"]))
    recipe = recipes()[recipe_name]
    print(f"RATE {rate(lambda: Setup(recipe), args.seconds, args.min_steps)}", flush=True)
    return 0


# ---- the run -------------------------------------------------------------------------------------------

def profile_net(label, recipe, args, matmul, copy_bw) -> dict:
    s = Setup(recipe)
    print(f"{label}: batch {s.batch}, {'channels_last' if s.channels_last else 'contiguous'}", flush=True)
    prof = profile_layers(s, args.profile_steps, matmul, copy_bw)
    print(f"  profile: {prof['step_ms']:.0f} ms a step, {100 * prof['fraction_of_matmul']:.0f}% of the matmul rate",
          flush=True)
    dnn = onednn_choices(s)
    single = isolated(s, args.layer_reps)
    for r in single:
        print(f"  {r['layer']:12s} {r['type']:18s} {r['candidate']:22s} {r['baseline_ms']:8.1f} -> "
              f"{r['candidate_ms']:8.1f} ms ({r['speedup']:.2f}x)", flush=True)
    cands = candidates(recipe, s, single, args.gain)
    del s
    steps = whole_steps(recipe, cands, args.rounds, args.seconds, args.min_steps)
    if args.processes:
        steps["candidates"] += in_processes(recipe.name, args)
    for c in steps["candidates"]:
        print(f"  {c['name']:48s} {c['img_s']:8.1f} img/s ({c['ratio']:.3f} of the baseline)", flush=True)
    best = max(steps["candidates"], key=lambda c: c["ratio"])
    side = recipe.resize or 28
    flops = 3 * d2l.layer_table(recipe.net(), (1, 1, side, side)).total_flops
    return {"net": label, "recipe": recipe.name, "batch_size": recipe.for_profile("cpu").batch_size,
            "input": side, "channels_last": recipe.for_profile("cpu").channels_last, "train_flops_per_image": flops,
            "profile": prof, "onednn": dnn, "isolated": single, "steps": steps,
            "baseline_fraction_of_matmul": flops * steps["baseline_img_s"] / matmul,
            "best": {"name": best["name"], "ratio": best["ratio"], "keep": best["keep"],
                     "fraction_of_matmul": flops * steps["baseline_img_s"] * best["ratio"] / matmul}}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="VGG-11/8 only, one round, short windows: a smoke run")
    p.add_argument("--nets", nargs="*", default=None, help=f"labels ({', '.join(NETS)}) or recipe names")
    p.add_argument("--rounds", type=int, default=None, help="rounds of whole-step timing (default 2)")
    p.add_argument("--seconds", type=float, default=None, help="least seconds per whole-step window (default 6)")
    p.add_argument("--min-steps", type=int, default=None, help="fewest timed steps per window (default 2)")
    p.add_argument("--profile-steps", type=int, default=None, help="steps under torch.profiler (default 3)")
    p.add_argument("--layer-reps", type=int, default=None, help="timed passes per single-layer timing (default 2)")
    p.add_argument("--gain", type=float, default=1.05, help="a single layer's speed-up that makes it a candidate")
    p.add_argument("--processes", action=argparse.BooleanOptionalAction, default=None,
                   help="also time the start-up settings in their own processes (default: on, off with --quick)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help="JSON report (default benchmarks/results/layers/<device>-<date>.json)")
    args = p.parse_args(argv)
    q = args.quick
    args.nets = args.nets or (["VGG-11/8"] if q else ["ZFNet", "VGG-11/8"])
    args.rounds = args.rounds or (1 if q else 2)
    args.seconds = args.seconds if args.seconds is not None else (0.5 if q else 6.0)
    args.min_steps = args.min_steps or (1 if q else 2)
    args.profile_steps = args.profile_steps or (1 if q else 3)
    args.layer_reps = args.layer_reps or (1 if q else 2)
    args.processes = (not q) if args.processes is None else args.processes
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args.worker, args)
    found = recipes()
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / "layers" / f"cpu-{date[:10]}.json"
    t0 = time.perf_counter()
    report = {"date": date, "device": d2l.device_name("cpu"), "platform": platform.platform(),
              "cpu": d2l.cpu_model(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "mode": "quick" if args.quick else "full",
              "command": " ".join(["python", "benchmarks/layer_profile.py", *(sys.argv[1:] if argv is None else argv)]),
              "timing": {k: getattr(args, k) for k in ("rounds", "seconds", "min_steps", "profile_steps", "layer_reps",
                                                      "gain", "processes")},
              "malloc_env": {k: os.environ.get(k) for k in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")},
              "matmul": {}, "nets": [], "wall_seconds": 0.0}
    mm = [matmul_flops(torch.device("cpu"), 1.0 if args.quick else 3.0)["flops"]]
    copy_bw = copy_bandwidth(0.5 if args.quick else 1.0)
    report["copy_gb_s"] = copy_bw / 1e9
    for name in args.nets:
        recipe = found.get(NETS.get(name, name))
        if recipe is None:
            raise SystemExit(f"unknown net {name!r}: use {', '.join(NETS)} or a recipe name")
        report["nets"].append(profile_net(name if name in NETS else recipe.name, recipe, args, mm[0], copy_bw))
        mm.append(matmul_flops(torch.device("cpu"), 1.0 if args.quick else 3.0)["flops"])
        report["matmul"] = {"flops": statistics.median(mm), "spread": [min(mm), max(mm)], "samples": len(mm),
                            "how": "2048 x 2048 float32 matmul, at the start and after each net"}
        report["wall_seconds"] = time.perf_counter() - t0
        atomic_write_text(out, json.dumps(report, indent=1), what="report")
    print(f"wrote {out} ({report['wall_seconds'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    from _malloc import reexec_with_malloc_env  # the script's folder is on sys.path

    reexec_with_malloc_env()
    raise SystemExit(main())
