"""``python -m d2lutils.gpu_check``: run this first on a new GPU machine.

It prints the device, its compute capability, the precision the book's policy picks
there and why, then times one AlexNet training step (224 px) in that precision, the
peak memory, and a one-line verdict. Without a GPU it says so and times the step on
the CPU, so the script itself is tested everywhere.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch import nn

from . import models
from .devices import device_name, precision_policy, try_gpu
from .notebook import cuda_memory_lines
from .profile import peak_memory_gb
from .train import _step


def _one_step(device: torch.device, batch: int, amp: bool) -> tuple[float, float]:
    """Seconds of one warm AlexNet training step (after one untimed step), and its loss."""
    policy = precision_policy(device, amp)
    torch.manual_seed(0)
    net = models.ALEXNET.net().to(device)
    channels_last = device.type == "cpu" or policy.channels_last
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    X = torch.rand(batch, 1, 224, 224, device=device)
    if channels_last:
        X = X.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    kw = dict(loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam(net.parameters(), 1e-3), scheduler=None,
              autocast=policy.autocast(device), scaler=policy.grad_scaler(device), aux_weight=0.3)
    _step(net, X, y, **kw)   # the first step pays for kernel selection and allocation
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    _, l = _step(net, X, y, **kw)
    loss = float(l.detach())   # waits for the step
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0, loss


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m d2lutils.gpu_check", description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=None, help="default: 128 on a GPU, 8 on a CPU")
    args = p.parse_args(argv)
    device = try_gpu()
    print(f"torch {torch.__version__}, device: {device_name(device)}")
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        total = torch.cuda.get_device_properties(device).total_memory / 2**30
        print(f"compute capability {major}.{minor}, {total:.1f} GB, {torch.cuda.device_count()} GPU(s)")
    else:
        print("no CUDA GPU here: the step below runs on the CPU, and the chapters use the cpu profile")
    policy = precision_policy(device, True)
    print(f"precision with amp=True: {policy.name} ({policy.reason})")
    batch = args.batch or (128 if device.type == "cuda" else 8)
    if batch < 1:
        print("error: --batch must be at least 1", file=sys.stderr)
        return 2
    try:
        secs, loss = _one_step(device, batch, True)
    except torch.cuda.OutOfMemoryError:
        print(f"verdict: out of memory at batch {batch}; try --batch 32")
        return 1
    ok = torch.isfinite(torch.tensor(loss)).item()
    print(f"one AlexNet training step at batch {batch}, 224 px: {secs * 1000:.0f} ms, "
          f"{batch / secs:,.0f} img/s, loss {loss:.3f}")
    for line in cuda_memory_lines():
        print(line)
    peak = peak_memory_gb()
    if peak is not None:
        print(f"peak host memory: {peak:.2f} GB")
    if not ok:
        print(f"verdict: the loss is {loss}: {policy.name} does not work here; pass amp=False")
        return 1
    minutes = 60_000 * 5 / (batch / secs) / 60
    where = "GPU" if device.type == "cuda" else "CPU"
    print(f"verdict: works on this {where}; AlexNet's full run (5 epochs x 60,000 images) would take "
          f"about {minutes:,.0f} min of training at this step's speed (an estimate from one step)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
