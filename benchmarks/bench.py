"""Benchmark: the seed-style pipeline against this book's, for the six nets, in one run.

For each net at its chapter's input size and batch 128:

(a) seed style: torchvision ``Resize`` + ``ToTensor`` on PIL images in a
    ``DataLoader`` with 4 workers (as seed 000), fp32, default memory layout;
(b) this book: the split held as one uint8 tensor and resized per batch with tensor
    ops, ``channels_last``, bf16 autocast on CUDA;
(c) pure compute: training steps on one batch already in memory, with (b)'s settings.

Training speeds are steady-state: after warm-up steps, each figure times steps for
at least ``--seconds`` (and ``--min-steps``), is repeated ``--repeats`` times, and is
reported as the median with its spread. Each net's FLOP rate is given as a fraction
of a 2048 x 2048 fp32 matrix product timed in the same run (what this machine really
does, not a nominal clock). It also measures, in the same run:

* ZFNet with ``nn.LocalResponseNorm`` against ``d2l.LocalResponseNorm``;
* each trainer option on its own (channels_last, bf16, torch.compile, evaluation mode);
* one process with 2 threads against 2 processes with 1 thread each (data parallel,
  gloo, launched by torchrun), for AlexNet.

    python benchmarks/bench.py --quick          # a few minutes on 2 CPU cores
    python benchmarks/bench.py --out results.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import d2lutils as d2l
from d2lutils import models

NETS = {  # name: (constructor, input side), as in the chapters
    "LeNet": (lambda: models.lenet(nn.ReLU, nn.MaxPool2d), 28),
    "AlexNet": (lambda: models.AlexNet(), 224),
    "ZFNet": (lambda: models.ZFNet(), 224),
    "VGG-11/8": (lambda: models.vgg(models.VGG_ARCHS["VGG-11"], ratio=8, fc_hidden=512), 224),
    "NiN": (lambda: models.nin(), 224),
    "GoogLeNet": (lambda: models.googlenet(), 96),
}
WARMUP_BATCHES = 8  # = 4 workers x prefetch 2: batches a DataLoader has ready before timing


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops(device: torch.device, seconds: float) -> dict:
    """FLOP/s of a 2048 x 2048 matrix product in the dtype training uses (fp32 on a CPU; on a GPU
    the precision policy's: bf16 from compute capability 8.0, fp16 on 7.x, fp32 below): the
    machine's practical limit."""
    dtype = (d2l.precision_policy(device, True).dtype or torch.float32) if device.type == "cuda" else torch.float32
    a = torch.randn(2048, 2048, device=device, dtype=dtype)
    b = torch.randn(2048, 2048, device=device, dtype=dtype)
    rates = []
    for _ in range(3):
        a @ b
        sync(device)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 3 or n < 3:
            a @ b
            n += 1
        sync(device)
        rates.append(2 * 2048**3 * n / (time.perf_counter() - t0))
    return {"flops": statistics.median(rates), "spread": [min(rates), max(rates)],
            "how": f"2048 x 2048 {str(dtype).replace('torch.', '')} matmul, median of 3"}


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


def seed_style_loader(side: int, batch_size: int, root: Path):
    """Seed 000's load_data_fashion_mnist, on the same files, without the download."""
    import torchvision
    from torch.utils.data import DataLoader

    trans = torchvision.transforms.Compose(
        [torchvision.transforms.Resize(size=side), torchvision.transforms.ToTensor()])
    ds = torchvision.datasets.FashionMNIST(str(torchvision_root(root)), train=True, download=False,
                                           transform=trans)
    return DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=4, persistent_workers=True)


def endless(make_iter):
    """Batches forever from a re-iterable (a new pass when one ends)."""
    while True:
        yield from make_iter()


def timed_data(batches, device, n_batches) -> float:
    """Images/s of producing batches on ``device`` (nothing else), after warm-up batches."""
    for _ in range(WARMUP_BATCHES):
        next(batches)[0].to(device)
    sync(device)
    t0, n = time.perf_counter(), 0
    for _ in range(n_batches):
        X, y = next(batches)
        X.to(device, non_blocking=True)
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


def steady(step, batch_size, device, args) -> dict:
    """Images/s of ``step()`` in steady state: ``args.warmup`` untimed steps, then
    ``args.repeats`` windows of at least ``args.seconds`` and ``args.min_steps`` steps."""
    for _ in range(args.warmup):
        step()
    sync(device)
    rates, steps = [], []
    for _ in range(args.repeats):
        n, t0 = 0, time.perf_counter()
        while n < args.min_steps or time.perf_counter() - t0 < args.seconds:
            step()
            n += 1
        sync(device)
        rates.append(n * batch_size / (time.perf_counter() - t0))
        steps.append(n)
    return {"img_s": statistics.median(rates), "spread": [min(rates), max(rates)], "steps": steps}


def train_step_fn(net, batches, device, amp, channels_last, non_blocking=True):
    """One Adam training step on the next batch from ``batches``."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    # The CPU row times bf16 on purpose; a GPU gets what train_ch5(amp=True) would pick
    # there (fp16 with a scaler on a T4, fp32 on a P100), not emulated bf16.
    policy = d2l.precision_policy(device, "bf16" if device.type == "cpu" else True) if amp else \
        d2l.precision_policy(device, False)
    dtype, scaler = policy.dtype, policy.grad_scaler(device)

    def step():
        X, y = next(batches)
        X = X.to(device, non_blocking=non_blocking)
        y = y.to(device, non_blocking=non_blocking)
        if channels_last:
            X = X.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(net(X), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    return step


def eval_step_fn(net, X, device, mode):
    """One evaluation forward pass under ``mode``: ``inference_mode`` (as train_ch5),
    ``no_grad``, or ``autograd`` (grad mode on, as the seeds evaluate)."""
    ctx = {"inference_mode": torch.inference_mode, "no_grad": torch.no_grad,
           "autograd": contextlib.nullcontext}[mode]
    net.eval()

    def step():
        with ctx():
            (net(X).argmax(1) == 0).sum().item()
    return step


def book_iter(images, labels, side, bs, device):
    it = d2l.FashionMNISTIter(images, labels, bs, resize=side, shuffle=True, device=device)
    return endless(lambda: iter(it))


def bench_net(name, args, device, root, images, labels, matmul) -> dict:
    make, side = NETS[name]
    bs = args.batch_size
    cuda = device.type == "cuda"  # (b) uses bf16 autocast on CUDA only, as train_ch5(amp=True)
    result = {"net": name, "input": side, "batch_size": bs}
    flops = d2l.layer_table(make(), (1, 1, side, side)).total_flops
    result["forward_flops"] = flops
    seed_loader = seed_style_loader(side, 128, root)
    result["data_seed_img_s"] = timed_data(endless(lambda: iter(seed_loader)), device, args.data_batches)
    book_batches = 10 * args.data_batches   # ours is fast: a longer window, so one hiccup does not decide
    result["data_book_img_s"] = timed_data(book_iter(images, labels, side, 128, device), device, book_batches)
    result["data_write_bound_img_s"] = write_bound(128, side, device, book_batches)

    torch.manual_seed(0)
    seed_train = seed_style_loader(side, bs, root)
    r = steady(train_step_fn(make().to(device), endless(lambda: iter(seed_train)), device, False, False),
               bs, device, args)
    result["train_seed_img_s"], result["train_seed_spread"] = r["img_s"], r["spread"]
    torch.manual_seed(0)
    net = make().to(device).to(memory_format=torch.channels_last)
    r = steady(train_step_fn(net, book_iter(images, labels, side, bs, device), device, cuda, True),
               bs, device, args)
    result["train_book_img_s"], result["train_book_spread"], result["train_book_steps"] = r["img_s"], r["spread"], r["steps"]
    X, y = next(book_iter(images, labels, side, bs, device))
    torch.manual_seed(0)
    net = make().to(device).to(memory_format=torch.channels_last)
    r = steady(train_step_fn(net, endless(lambda: [(X, y)]), device, cuda, True), bs, device, args)
    result["train_compute_img_s"], result["train_compute_spread"] = r["img_s"], r["spread"]
    result["data_speedup"] = result["data_book_img_s"] / result["data_seed_img_s"]
    result["train_speedup"] = result["train_book_img_s"] / result["train_seed_img_s"]
    result["book_vs_compute"] = result["train_book_img_s"] / result["train_compute_img_s"]
    # training ~ 3 x forward FLOPs (forward, and backward for inputs and weights)
    result["train_flops_per_s"] = 3 * flops * result["train_book_img_s"]
    result["fraction_of_matmul"] = result["train_flops_per_s"] / matmul["flops"]
    del seed_loader, seed_train
    return result


def bench_lrn(args, device, images, labels) -> dict:
    """ZFNet's training speed with PyTorch's LRN (before) and the book's (now)."""
    side, bs = 224, args.batch_size
    out = {"net": "ZFNet", "batch_size": bs}
    for label in ("nn.LocalResponseNorm", "d2l.LocalResponseNorm"):
        torch.manual_seed(0)
        net = models.ZFNet()
        if label.startswith("nn."):
            for i, m in enumerate(net.features):
                if isinstance(m, d2l.LocalResponseNorm):
                    net.features[i] = nn.LocalResponseNorm(m.size, alpha=m.alpha, beta=m.beta, k=m.k)
        net = net.to(device).to(memory_format=torch.channels_last)
        r = steady(train_step_fn(net, book_iter(images, labels, side, bs, device), device,
                                 device.type == "cuda", True), bs, device, args)
        out[label] = r
    out["speedup"] = out["d2l.LocalResponseNorm"]["img_s"] / out["nn.LocalResponseNorm"]["img_s"]
    return out


def bench_options(name, args, device, images, labels) -> list[dict]:
    """Each trainer option measured on its own, for one net: the book's configuration
    against the same with that one option changed, in the same run."""
    make, side = NETS[name]
    bs = args.batch_size
    cuda = device.type == "cuda"

    def train(*, amp=cuda, channels_last=True, non_blocking=True, data_device=device, compiled=False,
              bs=bs, quick_window=False):
        torch.manual_seed(0)
        net = make().to(device)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        if compiled:
            net = torch.compile(net)
        a = argparse.Namespace(**vars(args))
        if quick_window:   # bf16 on a CPU without bf16 units is very slow: one short window
            a.repeats, a.seconds, a.min_steps, a.warmup = 1, 1.0, 1, 1
        return steady(train_step_fn(net, book_iter(images, labels, side, bs, data_device), device, amp,
                                    channels_last, non_blocking), bs, device, a)

    book = train()
    rows = []

    def row(option, default, other, changed, note=""):
        # ratio: the book's default setting against the other one (> 1: the default is faster)
        rows.append({"net": name, "option": option, "default": default, "other": other,
                     "default_img_s": book["img_s"] if changed is not None else None,
                     "other_img_s": changed["img_s"] if changed else None,
                     "ratio": book["img_s"] / changed["img_s"] if changed else None, "note": note})

    row("channels_last", "on", "off", train(channels_last=False))
    if cuda:
        row("bf16 autocast", "on", "off (fp32)", train(amp=False))
        row("dataset resident on the GPU", "on", "off (host tensor, copied per batch)", train(data_device="cpu"))
        row("non-blocking copies", "on", "off", train(data_device="cpu", non_blocking=False),
            note="both with the data on the host, where the copy happens")
    else:
        if args.quick:
            row("bf16 autocast", "off (fp32)", "on", None, note="not measured with --quick")
        else:
            small = max(4, bs // 16)
            fp32 = train(amp=False, bs=small, quick_window=True)
            bf16 = train(amp=True, bs=small, quick_window=True)
            rows.append({"net": name, "option": "bf16 autocast", "default": "off (fp32)", "other": "on",
                         "default_img_s": fp32["img_s"], "other_img_s": bf16["img_s"],
                         "ratio": fp32["img_s"] / bf16["img_s"], "note": f"batch {small}, one short window"})
        row("dataset resident on the GPU", "-", "-", None, note="no GPU in this run")
        row("non-blocking copies", "-", "-", None, note="no GPU in this run")
    if args.compile:
        t0 = time.perf_counter()
        rate = train(compiled=True)
        row("torch.compile", "off", "on", rate,
            note=f"{time.perf_counter() - t0:.0f} s for compilation and the timed steps")
    else:
        row("torch.compile", "off", "on", None, note="not measured (run with --compile)")
    X = next(book_iter(images, labels, side, bs, device))[0].contiguous(memory_format=torch.channels_last)
    torch.manual_seed(0)
    net = make().to(device).to(memory_format=torch.channels_last)
    ev = {}
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
        for mode in ("inference_mode", "no_grad", "autograd"):
            ev[mode] = steady(eval_step_fn(net, X, device, mode), bs, device, args)["img_s"]
    for mode in ("no_grad", "autograd"):
        rows.append({"net": name, "option": "evaluation under inference_mode", "default": "on",
                     "other": f"off ({mode})", "default_img_s": ev["inference_mode"],
                     "other_img_s": ev[mode], "ratio": ev["inference_mode"] / ev[mode],
                     "note": "evaluation forward passes"})
    return rows


# ---- one process with 2 threads against 2 processes with 1 thread each ----------------

def ddp_worker(args) -> int:
    """Run by itself (2 threads) or under torchrun (1 thread per process): steady training
    of one net on a global batch of ``args.batch_size``; rank 0 prints a JSON line."""
    import torch.distributed as dist

    from d2lutils import distributed as ddist

    device = ddist.init(torch.device("cpu"))
    world, rank = ddist.world_size(), ddist.rank()
    # Every rank must take the same steps (each waits for the others' gradients), so the
    # windows are a fixed number of steps here, not a minimum time.
    args.seconds, args.min_steps = 0.0, args.ddp_steps
    make, side = NETS[args.ddp_net]
    images, labels = d2l.read_fashion_mnist(True)
    torch.manual_seed(0)
    net = make().to(memory_format=torch.channels_last)
    model = nn.parallel.DistributedDataParallel(net) if world > 1 else net
    it = d2l.FashionMNISTIter(images[:4096], labels[:4096], args.batch_size, resize=side, shuffle=True)
    it = it.shard(rank, world)
    r = steady(train_step_fn(model, endless(lambda: iter(it)), device, False, True),
               args.batch_size // world, device, args)
    if world > 1:   # every rank timed its own share; the job's rate is the sum
        rates = ddist.all_sum([r["img_s"]], device)
        r = {**r, "img_s": float(rates[0]), "spread": [s * world for s in r["spread"]]}
        dist.destroy_process_group()
    if rank == 0:
        print("DDP-RESULT " + json.dumps({"world": world, "threads": torch.get_num_threads(), **r}), flush=True)
    return 0


def bench_processes(args) -> dict:
    """AlexNet (or --ddp-net) trained by one process with 2 threads, then by 2 processes
    with 1 thread each, on the same global batch; images/s of the whole job."""
    script = str(Path(__file__).resolve())
    common = ["--ddp-worker", "--ddp-net", args.ddp_net, "--batch-size", str(args.batch_size),
              "--repeats", str(args.repeats), "--ddp-steps", str(args.ddp_steps), "--warmup", str(args.warmup)]
    env = {**os.environ, "D2L_PROGRESS": "0"}
    runs = {}
    for label, cmd, threads in [
            ("1 process x 2 threads", [sys.executable, script, *common], "2"),
            ("2 processes x 1 thread", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                        "--nproc_per_node=2", script, *common], "1")]:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800,
                             env={**env, "OMP_NUM_THREADS": threads})
        line = next((l for l in out.stdout.splitlines() if l.startswith("DDP-RESULT ")), None)
        if out.returncode or line is None:
            raise RuntimeError(f"{label} failed:\n{out.stderr[-2000:]}")
        runs[label] = json.loads(line[len("DDP-RESULT "):])
    return {"net": args.ddp_net, "batch_size": args.batch_size, "runs": runs,
            "ratio": runs["2 processes x 1 thread"]["img_s"] / runs["1 process x 2 threads"]["img_s"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short windows, one repeat (a few minutes)")
    p.add_argument("--nets", nargs="*", default=list(NETS), choices=list(NETS))
    p.add_argument("--batch-size", type=int, default=None, help="training batch (default 128; 32 with --quick)")
    p.add_argument("--seconds", type=float, default=None, help="minimum seconds per timed window")
    p.add_argument("--min-steps", type=int, default=None, help="minimum steps per timed window")
    p.add_argument("--repeats", type=int, default=None, help="timed windows per figure")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps before the windows")
    p.add_argument("--data-batches", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--options-net", default="AlexNet", choices=list(NETS) + ["none"],
                   help="net on which each trainer option is measured on its own ('none' skips)")
    p.add_argument("--lrn", action=argparse.BooleanOptionalAction, default=True,
                   help="measure ZFNet with nn.LocalResponseNorm against d2l.LocalResponseNorm")
    p.add_argument("--processes", action=argparse.BooleanOptionalAction, default=None,
                   help="measure 1 process x 2 threads against 2 processes x 1 thread (CPU only)")
    p.add_argument("--ddp-net", default="AlexNet", choices=list(NETS))
    p.add_argument("--ddp-steps", type=int, default=None, help="steps per timed window of that comparison")
    p.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="also measure torch.compile (default: on, except with --quick)")
    p.add_argument("--out", default=None, help="JSON file (default: benchmarks/results/<device>-<date>.json)")
    args = p.parse_args(argv)
    args.batch_size = args.batch_size or (32 if args.quick else 128)
    args.seconds = args.seconds if args.seconds is not None else (1.0 if args.quick else 12.0)
    args.min_steps = args.min_steps or (2 if args.quick else 5)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    args.data_batches = args.data_batches or (20 if args.quick else 40)
    args.ddp_steps = args.ddp_steps or (2 if args.quick else 6)
    if args.ddp_worker:
        return ddp_worker(args)
    import warnings

    # Seed 000 uses 4 workers whatever the machine; torch warns about that on 2 cores.
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    if args.compile is None:
        args.compile = not args.quick
    device = torch.device(args.device) if args.device else d2l.try_gpu()
    if args.processes is None:
        args.processes = device.type == "cpu"
    root = d2l.find_fashion_mnist()
    images, labels = d2l.read_fashion_mnist(True, root)
    t_start = time.perf_counter()
    matmul = matmul_flops(device, 3.0 if args.quick else 10.0)
    print(f"matmul: {matmul['flops'] / 1e9:.0f} GFLOP/s ({matmul['how']})", flush=True)
    runs = []
    for name in args.nets:
        r = bench_net(name, args, device, root, images, labels, matmul)
        runs.append(r)
        print(f"{name:10s} {r['input']:3d}px | data: seed {r['data_seed_img_s']:8.0f} img/s, book "
              f"{r['data_book_img_s']:9.0f} ({r['data_speedup']:5.1f}x, write bound "
              f"{r['data_write_bound_img_s']:.0f}) | train: seed {r['train_seed_img_s']:7.1f}, book "
              f"{r['train_book_img_s']:7.1f} [{r['train_book_spread'][0]:.1f}-{r['train_book_spread'][1]:.1f}] "
              f"({r['train_speedup']:4.2f}x), compute {r['train_compute_img_s']:7.1f} (book/compute "
              f"{r['book_vs_compute']:.2f}) | {100 * r['fraction_of_matmul']:.0f}% of the matmul rate",
              flush=True)
    lrn = bench_lrn(args, device, images, labels) if args.lrn else None
    if lrn:
        print(f"ZFNet LRN: nn {lrn['nn.LocalResponseNorm']['img_s']:.1f} img/s, d2l "
              f"{lrn['d2l.LocalResponseNorm']['img_s']:.1f} img/s ({lrn['speedup']:.2f}x)", flush=True)
    options = []
    if args.options_net != "none":
        options = bench_options(args.options_net, args, device, images, labels)
        print(f"each option on its own, {args.options_net}:")
        for o in options:
            rate = (f"{o['default_img_s']:8.1f} img/s against {o['other_img_s']:8.1f} "
                    f"({o['ratio']:.2f}x)") if o["ratio"] else "not measured"
            print(f"  {o['option']:32s} default {o['default']:11s} other {o['other']:38s} {rate} "
                  f"{o['note']}", flush=True)
    processes = bench_processes(args) if args.processes else None
    if processes:
        for label, r in processes["runs"].items():
            print(f"{processes['net']} {label}: {r['img_s']:.1f} img/s", flush=True)
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": d2l.device_name(device), "platform": platform.platform(),
        "cpu": d2l.cpu_model(), "torch": torch.__version__,
        "matmul": matmul, "mode": "quick" if args.quick else "full",
        "timing": {k: getattr(args, k) for k in ("batch_size", "seconds", "min_steps", "repeats", "warmup")},
        "malloc_env": {k: os.environ.get(k) for k in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")},
        "wall_seconds": time.perf_counter() - t_start, "runs": runs, "lrn": lrn, "options": options,
        "processes": processes,
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
