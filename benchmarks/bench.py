"""Benchmark: the seed-style pipeline against this book's, for the six nets.

For each net at its chapter's input size, in one run on one machine:

(a) seed style: torchvision ``Resize`` + ``ToTensor`` on PIL images in a
    ``DataLoader`` with 4 workers (as seed 000), fp32, default memory layout,
    a host-to-device copy per batch;
(b) this book: the split held as one uint8 tensor on the training device and
    resized per batch with tensor ops, ``channels_last``, bf16 autocast on CUDA,
    non-blocking copies;
(c) pure compute: training steps on one batch already in memory, with (b)'s
    settings: the ceiling for (b).

It reports images/s for the data alone and for training, the ratios (b)/(a)
and (b)/(c), the rate at which the machine can merely allocate and fill batches
of that size (the memory floor of any data pipeline), and the fraction of the machine's peak FLOP rate that (b)
reaches. Results go to a JSON file.

    python benchmarks/bench.py --quick          # < 2 minutes on 2 CPU cores
    python benchmarks/bench.py --out results.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import d2lutils as d2l
from d2lutils import models

NETS = {  # name: (constructor, input side), as in the comparison chapter
    "LeNet": (lambda: models.lenet(nn.ReLU, nn.MaxPool2d), 28),
    "AlexNet": (lambda: models.AlexNet(), 224),
    "ZFNet": (lambda: models.ZFNet(), 224),
    "VGG-11/8": (lambda: models.vgg(models.VGG_ARCHS["VGG-11"], ratio=8, fc_hidden=512), 224),
    "NiN": (lambda: models.nin(), 224),
    "GoogLeNet": (lambda: models.googlenet(), 96),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_flops(device: torch.device) -> tuple[float, str]:
    """The machine's peak FLOP/s for the precision (b) uses, and how it was estimated."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        table = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "T4": 65e12,
                 "V100": 125e12}  # dense bf16/fp16 tensor-core peaks from the vendors' data sheets
        for key, value in table.items():
            if key in name:
                return value, f"{name}, dense bf16 tensor-core peak"
        return float("nan"), f"{name}: peak unknown"
    flags, mhz = "", 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = line
            if line.startswith("cpu MHz"):
                mhz = max(mhz, float(line.split(":")[1]))
    except OSError:
        pass
    per_cycle = 64 if "avx512f" in flags else 32 if ("avx2" in flags and "fma" in flags) else 8
    cores = torch.get_num_threads()
    peak = cores * mhz * 1e6 * per_cycle
    return peak, (f"{cores} threads x {mhz:.0f} MHz x {per_cycle} fp32 FLOPs/cycle "
                  f"({'AVX-512' if per_cycle == 64 else 'AVX2 FMA' if per_cycle == 32 else 'SSE'})")


def torchvision_root(raw: Path) -> Path:
    """A folder in torchvision's layout (ROOT/FashionMNIST/raw) for the files in ``raw``."""
    if raw.name == "raw" and raw.parent.name == "FashionMNIST":
        return raw.parent.parent
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="fmnist-"))
    (tmp / "FashionMNIST" / "raw").mkdir(parents=True)
    for f in raw.iterdir():
        (tmp / "FashionMNIST" / "raw" / f.name).symlink_to(f.resolve())
    return tmp


def seed_style_loader(side: int, batch_size: int, n: int, root: Path):
    """Seed 000's load_data_fashion_mnist, on the same files, without the download."""
    import torchvision
    from torch.utils.data import DataLoader, Subset

    trans = torchvision.transforms.Compose(
        [torchvision.transforms.Resize(size=side), torchvision.transforms.ToTensor()])
    ds = torchvision.datasets.FashionMNIST(str(torchvision_root(root)), train=True, download=False,
                                           transform=trans)
    return DataLoader(Subset(ds, range(n)), batch_size=batch_size, shuffle=True, num_workers=4)


WARMUP_BATCHES = 8  # = 4 workers x prefetch 2: batches a DataLoader has ready before timing


def timed_data(loader, device, n_batches) -> float:
    """Images/s of producing batches on ``device`` (nothing else), in steady state:
    worker start-up and the prefetched batches are not timed."""
    it = iter(loader)
    for _ in range(WARMUP_BATCHES):
        X, _ = next(it)
        X.to(device)
    sync(device)
    t0, n = time.perf_counter(), 0
    for _ in range(n_batches):
        X, y = next(it)
        X = X.to(device, non_blocking=True)
        n += y.numel()
    sync(device)
    return n / (time.perf_counter() - t0)


def write_bound(batch_size, side, device, n_batches) -> float:
    """Images/s of merely allocating and filling float32 batches of this size: the memory
    traffic that any pipeline producing them must pay, a ceiling for (b)'s data rate."""
    for _ in range(WARMUP_BATCHES):
        torch.empty(batch_size, 1, side, side, device=device).fill_(0.5)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n_batches):
        torch.empty(batch_size, 1, side, side, device=device).fill_(0.5)
    sync(device)
    return n_batches * batch_size / (time.perf_counter() - t0)


def train_steps(net, batches, device, amp, channels_last, non_blocking=True) -> float:
    """Images/s of Adam training steps over ``batches`` (an iterator of (X, y))."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    # bf16 autocast: on CUDA as train_ch5(amp=True); on a CPU only when measuring the option
    dtype = torch.bfloat16 if amp else None
    n, t0 = 0, None
    for i, (X, y) in enumerate(batches):
        if i == 1:  # the first step (allocations, kernel choice, compilation) is not timed
            sync(device)
            t0 = time.perf_counter()
        X = X.to(device, non_blocking=non_blocking)
        y = y.to(device, non_blocking=non_blocking)
        if channels_last:
            X = X.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(net(X), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 1:
            n += y.numel()
    sync(device)
    return n / (time.perf_counter() - t0)


def eval_steps(net, X, steps, device, mode) -> float:
    """Images/s of evaluation forward passes on ``X`` under ``mode``: ``inference_mode``
    (as train_ch5), ``no_grad``, or ``autograd`` (grad mode on, as the seeds evaluate)."""
    ctx = {"inference_mode": torch.inference_mode, "no_grad": torch.no_grad,
           "autograd": contextlib.nullcontext}[mode]
    net.eval()
    with ctx():
        (net(X).argmax(1) == 0).sum().item()  # warm-up, not timed
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            (net(X).argmax(1) == 0).sum().item()
        sync(device)
    return steps * X.shape[0] / (time.perf_counter() - t0)


def bench_options(name, args, device, root) -> list[dict]:
    """Each trainer option measured on its own, for one net: the book's configuration
    against the same with that one option changed, in the same run."""
    make, side = NETS[name]
    images, labels = d2l.read_fashion_mnist(True, root)
    steps, bs = args.steps + 1, args.batch_size
    cuda = device.type == "cuda"

    def train(*, amp=cuda, channels_last=True, non_blocking=True, data_device=device, compiled=False,
              bs=bs, steps=steps):
        torch.manual_seed(0)
        net = make().to(device)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        if compiled:
            net = torch.compile(net)
        batches = iter(d2l.FashionMNISTIter(images[:steps * bs], labels[:steps * bs], bs, resize=side,
                                            shuffle=True, device=data_device))
        return train_steps(net, batches, device, amp, channels_last, non_blocking)

    book = train()
    rows = []

    def row(option, default, other, changed, note=""):
        # ratio: the book's default setting against the other one (> 1: the default is faster)
        rows.append({"net": name, "option": option, "default": default, "other": other,
                     "default_img_s": book if changed is not None else None,
                     "other_img_s": changed, "ratio": book / changed if changed else None,
                     "note": note})

    row("channels_last", "on", "off", train(channels_last=False))
    if cuda:
        row("bf16 autocast", "on", "off (fp32)", train(amp=False))
        row("dataset resident on the GPU", "on", "off (host tensor, copied per batch)",
            train(data_device="cpu"))
        row("non-blocking copies", "on", "off", train(data_device="cpu", non_blocking=False),
            note="both with the data on the host, where the copy happens")
    else:
        # fp32 stays the CPU default; this shows why (no native bf16 arithmetic on most CPUs).
        # bf16 is so slow here that it is timed on a small batch, and fp32 on the same batch.
        if args.quick:
            row("bf16 autocast", "off (fp32)", "on", None, note="not measured with --quick")
        else:
            small = max(4, bs // 8)
            fp32, bf16 = train(amp=False, bs=small, steps=2), train(amp=True, bs=small, steps=2)
            rows.append({"net": name, "option": "bf16 autocast", "default": "off (fp32)", "other": "on",
                         "default_img_s": fp32, "other_img_s": bf16, "ratio": fp32 / bf16,
                         "note": f"batch {small}, one timed step"})
        row("dataset resident on the GPU", "-", "-", None, note="no GPU in this run")
        row("non-blocking copies", "-", "-", None, note="no GPU in this run")
    if args.compile:
        t0 = time.perf_counter()
        rate = train(compiled=True)
        row("torch.compile", "off", "on", rate,
            note=f"{time.perf_counter() - t0:.0f} s for compilation and the timed steps")
    else:
        row("torch.compile", "off", "on", None, note="not measured (run with --compile)")
    X = next(iter(d2l.FashionMNISTIter(images[:bs], labels[:bs], bs, resize=side, device=device)))[0]
    X = X.contiguous(memory_format=torch.channels_last)
    torch.manual_seed(0)
    net = make().to(device).to(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
        ev = {mode: eval_steps(net, X, args.steps, device, mode)
              for mode in ("inference_mode", "no_grad", "autograd")}
    for mode in ("no_grad", "autograd"):
        rows.append({"net": name, "option": "evaluation under inference_mode", "default": "on",
                     "other": f"off ({mode})", "default_img_s": ev["inference_mode"],
                     "other_img_s": ev[mode], "ratio": ev["inference_mode"] / ev[mode],
                     "note": "evaluation forward passes"})
    return rows


def bench_net(name, make, side, args, device, root, peak):
    steps, bs = args.steps + 1, args.batch_size
    data_bs, n_data = 128, (args.data_batches + WARMUP_BATCHES) * 128  # the seeds' batch size
    result = {"net": name, "input": side, "batch_size": bs, "timed_steps": args.steps,
              "data_batch_size": data_bs, "data_batches": args.data_batches}
    flops = d2l.layer_table(make(), (1, 1, side, side)).total_flops
    result["forward_flops"] = flops
    images, labels = d2l.read_fashion_mnist(True, root)

    def ours(batch_size, n):
        return d2l.FashionMNISTIter(images[:n], labels[:n], batch_size, resize=side,
                                    shuffle=True, device=device)

    cuda = device.type == "cuda"  # (b) uses bf16 autocast on CUDA only, as train_ch5(amp=True)
    result["data_seed_img_s"] = timed_data(seed_style_loader(side, data_bs, n_data, root), device,
                                           args.data_batches)
    # Ours makes a batch in a few ms: time ten times as many batches, so that its timing
    # window (about a second, like the seed style's) is not at the mercy of one hiccup.
    book_batches = 10 * args.data_batches
    result["data_book_batches"] = book_batches
    result["data_book_img_s"] = timed_data(ours(data_bs, (book_batches + WARMUP_BATCHES) * data_bs),
                                           device, book_batches)
    result["data_write_bound_img_s"] = write_bound(data_bs, side, device, book_batches)

    torch.manual_seed(0)
    net = make().to(device)
    result["train_seed_img_s"] = train_steps(net, iter(seed_style_loader(side, bs, steps * bs, root)),
                                             device, amp=False, channels_last=False)
    torch.manual_seed(0)
    net = make().to(device).to(memory_format=torch.channels_last)
    result["train_book_img_s"] = train_steps(net, iter(ours(bs, steps * bs)), device, amp=cuda,
                                             channels_last=True)
    X, y = next(iter(ours(bs, bs)))
    torch.manual_seed(0)
    net = make().to(device).to(memory_format=torch.channels_last)
    result["train_compute_img_s"] = train_steps(net, ((X, y) for _ in range(steps)), device,
                                                amp=cuda, channels_last=True)
    result["data_speedup"] = result["data_book_img_s"] / result["data_seed_img_s"]
    result["train_speedup"] = result["train_book_img_s"] / result["train_seed_img_s"]
    result["book_vs_compute"] = result["train_book_img_s"] / result["train_compute_img_s"]
    # training ~ 3 x forward FLOPs (forward, and backward for inputs and weights)
    result["fraction_of_peak"] = 3 * flops * result["train_book_img_s"] / peak
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="few steps, small batches (< 2 min on 2 cores)")
    p.add_argument("--nets", nargs="*", default=list(NETS), choices=list(NETS))
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="timed training steps per config")
    p.add_argument("--data-batches", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--options-net", default="AlexNet", choices=list(NETS) + ["none"],
                   help="net on which each trainer option is measured on its own ('none' skips)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="also measure torch.compile (default: on, except with --quick)")
    p.add_argument("--out", default=None, help="JSON file (default: benchmarks/results/<device>-<date>.json)")
    args = p.parse_args(argv)
    import warnings

    # Seed 000 uses 4 workers whatever the machine; torch warns about that on 2 cores.
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    args.batch_size = args.batch_size or (16 if args.quick else 64)
    args.steps = args.steps or (2 if args.quick else 4)
    args.data_batches = args.data_batches or (20 if args.quick else 40)
    if args.compile is None:
        args.compile = not args.quick
    device = torch.device(args.device) if args.device else d2l.try_gpu()
    root = d2l.find_fashion_mnist()
    peak, peak_how = peak_flops(device)
    t_start = time.perf_counter()
    runs = []
    for name in args.nets:
        make, side = NETS[name]
        r = bench_net(name, make, side, args, device, root, peak)
        runs.append(r)
        print(f"{name:10s} {side:3d}px | data: seed {r['data_seed_img_s']:8.0f} img/s, book "
              f"{r['data_book_img_s']:9.0f} img/s ({r['data_speedup']:5.1f}x, write bound "
              f"{r['data_write_bound_img_s']:.0f}) | train: seed "
              f"{r['train_seed_img_s']:7.1f}, book {r['train_book_img_s']:7.1f} ({r['train_speedup']:4.2f}x), "
              f"compute {r['train_compute_img_s']:7.1f} img/s (book/compute {r['book_vs_compute']:.2f}) "
              f"| {100 * r['fraction_of_peak']:.1f}% of peak", flush=True)
    options = []
    if args.options_net != "none":
        options = bench_options(args.options_net, args, device, root)
        print(f"each option on its own, {args.options_net}:")
        for o in options:
            rate = (f"{o['default_img_s']:8.1f} img/s against {o['other_img_s']:8.1f} "
                    f"({o['ratio']:.2f}x)") if o["ratio"] else "not measured"
            print(f"  {o['option']:32s} default {o['default']:11s} other {o['other']:38s} {rate} "
                  f"{o['note']}", flush=True)
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": d2l.device_name(device), "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
        "peak_flops": peak, "peak_estimate": peak_how, "mode": "quick" if args.quick else "full",
        "malloc_env": {k: os.environ.get(k) for k in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")},
        "wall_seconds": time.perf_counter() - t_start, "runs": runs, "options": options,
    }
    out = Path(args.out) if args.out else (Path(__file__).parent / "results" /
                                           f"{device.type}-{report['date'][:10]}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out} ({report['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    from _malloc import reexec_with_malloc_env  # the script's folder is on sys.path

    reexec_with_malloc_env()  # both pipelines run under the same malloc settings
    raise SystemExit(main())
