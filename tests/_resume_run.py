"""Helper for test_train.py: train a small net with a checkpoint; with --kill,
the process SIGKILLs itself in the middle of epoch 2, as a crash or a closed
Colab tab would."""

import argparse
import os
import signal

import torch
from torch import nn

import d2lutils as d2l

p = argparse.ArgumentParser()
p.add_argument("--root", required=True)
p.add_argument("--ckpt", required=True)
p.add_argument("--out", required=True)
p.add_argument("--kill", action="store_true")
p.add_argument("--resume", action="store_true")
a = p.parse_args()

torch.set_num_threads(1)
d2l.set_seed(0)
net = nn.Sequential(nn.Conv2d(1, 4, 5), nn.ReLU(), nn.MaxPool2d(2), d2l.FlattenLayer(),
                    nn.Linear(4 * 12 * 12, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))
optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
# A warm-up over 15 steps (1.5 epochs): resuming must restore the scheduler's step count too.
scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=15)
train_iter, test_iter = d2l.load_data_fashion_mnist(32, root=a.root, n_train=320, n_test=64, seed=3)


class KillMidEpoch2:
    """Wraps the iterator; kills the process at batch 5 of epoch 2 (of 10 batches: the
    last probe checkpoint was written after batch 4)."""

    def __init__(self, it):
        self.it, self.epoch = it, 0
        self.num_examples = it.num_examples

    def __len__(self):
        return len(self.it)

    def __getattr__(self, name):   # seed, size, ...: the run record must match the plain iterator's
        return getattr(self.it, name)

    def set_epoch(self, e):
        self.epoch = e
        self.it.set_epoch(e)

    def __iter__(self):
        for i, batch in enumerate(self.it):
            if self.epoch == 1 and i == 5:
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch


it = KillMidEpoch2(train_iter) if a.kill else train_iter
h = d2l.train_ch5(net, it, test_iter, 32, optimizer, "cpu", 3, checkpoint=a.ckpt,
                  resume=a.resume, progress=False, scheduler=scheduler)
torch.save({"model": net.state_dict(), "history": h.to_dict()}, a.out)
