"""Helper for test_distributed.py: one small real-data run, alone or under torchrun.

Every process builds the same net from the same seed and trains with the same global
batch; under torchrun each reads its shard. Rank 0 writes the final weights to --out.
--kill-at E,B makes rank 1 SIGKILL itself at batch B of epoch E (0-based), as a crashed
machine would; --fail-at E,B makes rank 1 raise instead.
"""

import argparse
import os
import signal

import torch
from torch import nn

import d2lutils as d2l

p = argparse.ArgumentParser()
p.add_argument("--root", required=True)
p.add_argument("--out", required=True)
p.add_argument("--ckpt", default=None)
p.add_argument("--resume", action="store_true")
p.add_argument("--epochs", type=int, default=2)
p.add_argument("--kill-at", default=None)
p.add_argument("--fail-at", default=None)
p.add_argument("--n-train", type=int, default=640)
a = p.parse_args()

torch.set_num_threads(1)
d2l.set_seed(0)
net = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                    nn.Linear(400, 64), nn.ReLU(), nn.Linear(64, 10))   # no dropout: same maths on any split
optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
train_iter, test_iter = d2l.load_data_fashion_mnist(64, root=a.root, n_train=a.n_train, n_test=200, seed=3)


class Stop:
    """Wraps the iterator; rank 1 dies (kill) or raises (fail) at a given batch."""

    def __init__(self, it, at, how):
        self.it, self.at, self.how, self.epoch = it, tuple(map(int, at.split(","))), how, 0

    def __getattr__(self, name):
        return getattr(self.it, name)

    def __len__(self):
        return len(self.it)

    def shard(self, rank, world):
        return Stop(self.it.shard(rank, world), ",".join(map(str, self.at)), self.how) if rank == 1 else self.it.shard(rank, world)

    def set_epoch(self, e):
        self.epoch = e
        self.it.set_epoch(e)

    def iter_from(self, start):
        return self._wrap(self.it.iter_from(start), start)

    def __iter__(self):
        return self._wrap(iter(self.it), 0)

    def _wrap(self, batches, start):
        for i, batch in enumerate(batches, start=start):
            if (self.epoch, i) == self.at:
                if self.how == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                raise RuntimeError("rank 1: simulated failure (disk gone)")
            yield batch


it = train_iter
if a.kill_at:
    it = Stop(train_iter, a.kill_at, "kill")
if a.fail_at:
    it = Stop(train_iter, a.fail_at, "fail")
h = d2l.train_ch5(net, it, test_iter, 64, optimizer, "cpu", a.epochs, checkpoint=a.ckpt,
                  resume=a.resume, progress=False, points_per_epoch=5, probes_per_epoch=2, probe_images=100)
if d2l.distributed.is_main():
    torch.save({"model": net.state_dict(), "history": h.to_dict()}, a.out)
