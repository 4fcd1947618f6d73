"""Misuse of the training loop and its files, each ending in one clear error or the
right result (issue: no result silently wrong, no raw internal error, nothing lost)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

import d2lutils as d2l


def tiny(out=10):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, out))


@pytest.fixture(scope="module")
def small(raw_dir):
    return d2l.load_data_fashion_mnist(50, root=raw_dir, n_train=200, n_test=100, seed=0)


def fit(net, train_iter, test_iter, **kw):
    opt = kw.pop("optimizer", None) or torch.optim.SGD([p for p in net.parameters()], lr=0.05)
    return d2l.train_ch5(net, train_iter, test_iter, 50, opt, "cpu", kw.pop("epochs", 1), progress=False, **kw)


def test_an_empty_test_set_is_refused_not_scored_zero(small):
    train_iter, _ = small
    with pytest.raises(d2l.ArgumentError, match="test_iter holds no batch"):
        fit(tiny(), train_iter, [])


@pytest.mark.parametrize("make, shape", [
    (lambda: tiny(5)[:-1].append(nn.Linear(784, 1)), r"\(50, 1\)"),                 # 1 output
    (lambda: nn.Sequential(tiny(), nn.Unflatten(1, (10, 1))), r"\(50, 10, 1\)"),       # N x 10 x 1
])
def test_an_output_that_is_not_batch_by_classes_is_named(small, make, shape):
    train_iter, test_iter = small
    with pytest.raises(d2l.ArgumentError, match=shape + r".*expected \(50, classes\)"):
        fit(make(), train_iter, test_iter)
    with pytest.raises(d2l.ArgumentError, match=shape):
        d2l.evaluate_accuracy(test_iter, make())


class _WithAux(nn.Module):
    """GoogLeNet-style: (logits, aux) in training, logits alone in eval."""

    def __init__(self):
        super().__init__()
        self.main, self.aux = tiny(), tiny()

    def forward(self, x):
        return (self.main(x), self.aux(x)) if self.training else self.main(x)


def test_a_logits_aux_tuple_trains_both_heads_and_is_judged_by_its_logits(small):
    train_iter, test_iter = small
    torch.manual_seed(0)
    net = _WithAux()
    before = net.aux[1].weight.detach().clone()
    h = fit(net, train_iter, test_iter)
    assert not torch.equal(before, net.aux[1].weight)          # the side head got a gradient
    assert h.test_acc[-1] == pytest.approx(d2l.evaluate_accuracy(test_iter, net))
    net.train()
    assert d2l.evaluate_accuracy(test_iter, net) == pytest.approx(h.test_acc[-1])   # tuple in train mode


def test_a_net_with_every_parameter_frozen_is_refused(small):
    net = tiny()
    for p in net.parameters():
        p.requires_grad_(False)
    with pytest.raises(d2l.ArgumentError, match="frozen"):
        fit(net, *small)


def test_schedulers_that_cannot_run_per_batch_are_refused(small):
    net = tiny()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(d2l.ArgumentError, match="ReduceLROnPlateau needs a metric"):
        fit(net, *small, optimizer=opt, scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau(opt))
    with pytest.raises(d2l.ArgumentError, match="not the class StepLR"):
        fit(net, *small, optimizer=opt, scheduler=torch.optim.lr_scheduler.StepLR)


def test_a_loss_without_reduction_is_refused(small):
    with pytest.raises(d2l.ArgumentError, match="reduction='none'"):
        fit(tiny(), *small, loss=nn.CrossEntropyLoss(reduction="none"))


def test_lists_of_batches_train_to_the_end(small):
    train_iter, test_iter = small
    torch.manual_seed(0)
    h = fit(tiny(), list(train_iter), list(test_iter), epochs=2)
    assert h.epoch == [1, 2] and h.n_train == 200 and "200 train images x 2 epoch(s)" in h.summary()


class _Stream(IterableDataset):
    def __init__(self, it):
        self.it = it

    def __iter__(self):
        for X, y in self.it:
            yield from zip(X, y)


def test_a_dataloader_over_an_iterable_dataset_trains(small):
    train_iter, test_iter = small
    h = fit(tiny(), DataLoader(_Stream(train_iter), batch_size=50), test_iter)
    assert h.n_train == 200 and h.epoch == [1]


def test_a_full_disk_during_a_save_names_the_disk_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    net, opt = tiny(), None
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    path = tmp_path / "c.pt"
    d2l.save_checkpoint(path, net, opt, d2l.History(), 1)
    good = path.read_bytes()

    def full(obj, f, *a, **k):
        f.write(b"x" * 10)
        raise RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing "
                           "file data/0: file write failed")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(d2l.CheckpointError, match=f"no space left on the disk that holds {tmp_path}"):
        d2l.save_checkpoint(path, net, opt, d2l.History(), 2)
    monkeypatch.undo()
    assert path.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]
    assert d2l.read_checkpoint(path)["epoch"] == 1


def test_a_damaged_history_file_is_named(tmp_path):
    bad = tmp_path / "run.json"
    bad.write_text('{"epoch": [1], "test_acc": [0.')
    with pytest.raises(d2l.ArgumentError, match=f"{bad}: not a readable history"):
        d2l.History.load_json(bad)
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(d2l.ArgumentError, match="not a history"):
        d2l.History.load_json(bad)


def test_a_link_planted_at_the_lock_file_is_not_followed(tmp_path, small):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    ckpt = tmp_path / "c.pt"
    os.symlink(victim, tmp_path / "c.pt.lock")
    with pytest.raises(d2l.ArgumentError, match="symbolic link"):
        fit(tiny(), *small, checkpoint=ckpt)
    assert victim.read_text() == "keep me"


def test_a_checkpoint_path_that_is_a_link_is_not_written_through(tmp_path):
    victim = tmp_path / "elsewhere.pt"
    victim.write_text("not a checkpoint")
    os.symlink(victim, tmp_path / "c.pt")
    net = tiny()
    with pytest.raises(d2l.ArgumentError, match="symbolic link"):
        d2l.save_checkpoint(tmp_path / "c.pt", net, torch.optim.SGD(net.parameters(), lr=0.1), d2l.History(), 1)
    assert victim.read_text() == "not a checkpoint"
