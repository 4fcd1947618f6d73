import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import d2lutils as d2l


def lenet():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), d2l.FlattenLayer(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


@pytest.fixture(scope="module")
def small(raw_dir):
    return d2l.load_data_fashion_mnist(100, root=raw_dir, n_train=2000, n_test=500, seed=0)


def test_training_lowers_the_loss_on_real_data(small, capsys):
    train_iter, test_iter = small
    d2l.set_seed(0)
    net = lenet()
    h = d2l.train_ch5(net, train_iter, test_iter, 100, torch.optim.Adam(net.parameters(), 2e-3),
                      "cpu", 3, progress=False, profile="test")
    assert h.epoch == [1, 2, 3]
    assert h.train_loss[-1] < h.train_loss[0] < 2.31
    assert h.test_acc[-1] > 0.6  # chance is 0.1
    assert h.n_train == 2000 and h.n_test == 500 and h.device.startswith("cpu")
    out = capsys.readouterr().out
    assert "training on cpu" in out and "profile test" in out and "2000 train / 500 test images" in out
    assert out.count("epoch ") >= 3 and "img/s" in out and "sec" in out


def test_printed_averages_are_per_example_means(small):
    """With lr=0 the weights never move, so the epoch's loss and accuracy must
    equal those computed independently over the same images."""
    train_iter, test_iter = small
    d2l.set_seed(1)
    net = lenet()
    h = d2l.train_ch5(net, train_iter, test_iter, 100, torch.optim.SGD(net.parameters(), lr=0.0),
                      "cpu", 2, progress=False)
    with torch.no_grad():
        X = train_iter.transform(train_iter.images)
        y_hat = net(X)
        want_loss = nn.functional.cross_entropy(y_hat, train_iter.labels).item()
        want_acc = (y_hat.argmax(1) == train_iter.labels).float().mean().item()
    # The seeds divide by a batch count that is never reset: their epoch 2 would be half this.
    for e in range(2):
        assert h.train_loss[e] == pytest.approx(want_loss, rel=1e-5)
        assert h.train_acc[e] == pytest.approx(want_acc)
    assert h.test_acc[0] == pytest.approx(d2l.evaluate_accuracy(test_iter, net))


def test_the_last_test_pass_is_stored_as_confusion_counts(small, tmp_path):
    """The history keeps the last test pass as true x predicted counts, so the comparison
    chapter can read per-class accuracy and each net's mistakes without its weights: the counts
    sum to the test set, their trace over that is the test accuracy, each row holds its class's
    images, and they equal the counts recomputed from the trained net."""
    train_iter, test_iter = small
    d2l.set_seed(2)
    net = lenet()
    h = d2l.train_ch5(net, train_iter, test_iter, 100, torch.optim.Adam(net.parameters(), 2e-3),
                      "cpu", 1, progress=False)
    counts = torch.tensor(h.test_confusion)
    assert counts.shape == (10, 10) and int(counts.sum()) == 500
    assert counts.trace().item() / 500 == h.test_acc[-1]
    assert counts.sum(1).tolist() == torch.bincount(test_iter.labels, minlength=10).tolist()
    net.eval()
    with torch.no_grad():
        y_hat = net(test_iter.transform(test_iter.images)).argmax(1)
    want = torch.zeros(10, 10, dtype=torch.long)
    want.index_put_((test_iter.labels, y_hat), torch.ones_like(y_hat), accumulate=True)
    assert torch.equal(counts, want)
    h.save_json(tmp_path / "h.json")
    assert d2l.History.load_json(tmp_path / "h.json").test_confusion == h.test_confusion


def test_a_net_of_over_100_classes_keeps_no_confusion_counts():
    """The counts stay in the history up to 100 classes (10,000 numbers); a 1,000-class net's
    would make every history file megabytes."""
    torch.manual_seed(0)

    def batches(n, c):
        X, y = torch.randn(n, 1, 4, 4), torch.randint(0, c, (n,))
        return [(X[i:i + 20], y[i:i + 20]) for i in range(0, n, 20)]

    for classes, kept in ((100, 100), (101, 0)):
        net = nn.Sequential(nn.Flatten(), nn.Linear(16, classes))
        h = d2l.train_ch5(net, batches(60, classes), batches(40, classes), 20,
                          torch.optim.SGD(net.parameters(), lr=0.1), "cpu", 1, progress=False)
        assert len(h.test_confusion) == kept and all(len(row) == classes for row in h.test_confusion)


def test_evaluating_labels_the_net_does_not_score_says_so(small):
    _, test_iter = small
    net = nn.Sequential(d2l.FlattenLayer(), nn.Linear(784, 5))   # 5 classes; the data has 10
    with pytest.raises(d2l.ArgumentError, match=r"the label 9, but y_hat scores 5 classes \(labels 0..4\)"):
        d2l.evaluate_accuracy(test_iter, net)


def test_evaluate_accuracy_both_orders_and_restores_mode(small):
    _, test_iter = small
    net = lenet().train()
    a = d2l.evaluate_accuracy(test_iter, net)          # the seeds' order
    b = d2l.evaluate_accuracy(net, test_iter, "cpu")   # d2l's newer order
    assert a == b and 0 <= a <= 1 and net.training


def test_try_gpu_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert d2l.try_gpu().type == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert d2l.try_gpu().type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert d2l.try_gpu() == torch.device("cuda", 0)
    assert d2l.try_gpu(1) == torch.device("cpu")   # d2l-en's try_gpu(i): GPU i only if it exists
    assert d2l.try_all_gpus() == [torch.device("cuda", 0)]


def test_set_seed_reproduces_init_and_dropout():
    d2l.set_seed(7); a = lenet()[0].weight.clone(); da = nn.Dropout(0.5)(torch.ones(100))
    d2l.set_seed(7); b = lenet()[0].weight.clone(); db = nn.Dropout(0.5)(torch.ones(100))
    assert torch.equal(a, b) and torch.equal(da, db)


def test_nan_loss_stops_with_a_clear_message(small, tmp_path):
    train_iter, test_iter = small
    d2l.set_seed(0)
    net = lenet()
    nan_loss = lambda y_hat, y: nn.functional.cross_entropy(y_hat, y) * float("nan")
    with pytest.raises(d2l.TrainingDivergedError, match=r"became nan.*Lower the learning rate") as e:
        d2l.train_ch5(net, train_iter, test_iter, 100, torch.optim.SGD(net.parameters(), lr=0.1),
                      "cpu", 2, progress=False, check_every=1, checkpoint=tmp_path / "c.pt", loss=nan_loss)
    assert "last good state" not in str(e.value)   # no checkpoint was written yet: none is named


def test_finite_but_exploding_loss_is_caught(small):
    """lr=1e6 makes the loss huge but finite for a while: it must not run on unnoticed."""
    train_iter, test_iter = small
    d2l.set_seed(0)
    net = lenet()
    with pytest.raises(d2l.TrainingDivergedError, match=r"exploded to .* times its start .* still finite"):
        d2l.train_ch5(net, train_iter, test_iter, 100, torch.optim.SGD(net.parameters(), lr=1e6),
                      "cpu", 1, progress=False)


class _OOMNet(nn.Module):
    """Stands in for a net too big for the GPU: raises what CUDA raises."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_gpu_out_of_memory_is_explained(small):
    train_iter, test_iter = small
    net = _OOMNet()
    with pytest.raises(RuntimeError, match=r"ran out of memory on a batch of shape \(100, 1, 28, 28\)"
                                           r".*Lower the batch size.*resize") as e:
        d2l.train_ch5(net, train_iter, test_iter, 100, torch.optim.SGD(net.parameters(), lr=0.1),
                      "cpu", 1, progress=False)
    assert isinstance(e.value.__cause__, torch.cuda.OutOfMemoryError)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    import os

    net, h = lenet(), d2l.History()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    path = tmp_path / "c.pt"
    d2l.save_checkpoint(path, net, opt, h, 1)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        d2l.save_checkpoint(path, lenet(), opt, h, 2)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]


def test_finished_checkpoint_is_loaded_not_retrained(small, tmp_path, capsys):
    train_iter, test_iter = small
    ck = tmp_path / "c.pt"
    d2l.set_seed(0); net = lenet(); opt = torch.optim.Adam(net.parameters())
    h1 = d2l.train_ch5(net, train_iter, test_iter, 100, opt, "cpu", 1, checkpoint=ck, progress=False)
    d2l.set_seed(0); net2 = lenet(); opt2 = torch.optim.Adam(net2.parameters())  # as a re-run cell builds it
    capsys.readouterr()
    h2 = d2l.train_ch5(net2, train_iter, test_iter, 100, opt2, "cpu", 1, checkpoint=ck, resume=True,
                       progress=False)
    assert "loaded a finished run" in capsys.readouterr().out
    assert h2.test_acc == h1.test_acc
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values()))


def test_resume_refuses_a_checkpoint_of_another_run(small, raw_dir, tmp_path):
    train_iter, test_iter = small
    ck = tmp_path / "c.pt"
    net = lenet(); opt = torch.optim.SGD(net.parameters(), lr=0.0)
    d2l.train_ch5(net, train_iter, test_iter, 100, opt, "cpu", 1, checkpoint=ck, progress=False)
    other, _ = d2l.load_data_fashion_mnist(100, root=raw_dir, n_train=300, n_test=500)
    d2l.set_seed(5)
    fresh = lenet()
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    opt2 = torch.optim.SGD(fresh.parameters(), lr=0.0)
    with pytest.raises(d2l.CheckpointMismatchError, match="Delete the checkpoint") as e:
        d2l.train_ch5(fresh, other, test_iter, 100, opt2, "cpu", 2, checkpoint=ck, resume=True,
                      progress=False)
    assert "run.n_train: checkpoint 2000, this run 300" in str(e.value)
    assert "net.start_weights" in str(e.value)             # another seed: other starting weights
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())  # untouched


def test_killed_run_resumes_to_the_same_weights(raw_dir, tmp_path):
    """A real SIGKILL in the middle of epoch 2, then resume=True from the probe
    checkpoint inside that epoch, ends with exactly the weights of an uninterrupted
    run with the same seed (dropout's RNG, the shuffle, the batches already seen,
    Adam's moments, the warm-up scheduler and the epoch's running sums all restored)."""
    script = Path(__file__).with_name("_resume_run.py")
    run = lambda *args: subprocess.run([sys.executable, str(script), "--root", str(raw_dir), *args],
                                       capture_output=True, text=True, timeout=300)
    full = run("--ckpt", str(tmp_path / "a.pt"), "--out", str(tmp_path / "full.pt"))
    assert full.returncode == 0, full.stderr
    killed = run("--ckpt", str(tmp_path / "b.pt"), "--out", str(tmp_path / "never.pt"), "--kill")
    assert killed.returncode == -9 and not (tmp_path / "never.pt").exists()
    saved = torch.load(tmp_path / "b.pt", weights_only=True)
    assert (saved["epoch"], saved["batch"]) == (1, 4)  # 4 batches into epoch 2, at a probe
    resumed = run("--ckpt", str(tmp_path / "b.pt"), "--out", str(tmp_path / "resumed.pt"), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming in epoch 2 after batch 4" in resumed.stdout
    a = torch.load(tmp_path / "full.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed.pt", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["history"]["test_acc"] == b["history"]["test_acc"]
    assert a["history"]["train_loss"] == b["history"]["train_loss"]
    assert a["history"]["probe_acc"] == b["history"]["probe_acc"]
    assert a["history"]["step_loss"] == b["history"]["step_loss"]


def test_history_round_trip_and_device_name(tmp_path):
    import json

    h = d2l.History(epoch=[1, 2], train_loss=[1.0, 0.5], train_acc=[0.5, 0.7], test_acc=[0.6, 0.7],
                    seconds=[2.0, 3.0], images_per_sec=[10.0, 11.0], device="cpu", profile="quick",
                    n_train=500, n_test=250)
    assert h.wall_time == 5.0
    h.save_json(tmp_path / "h.json")
    assert d2l.History.from_dict(json.loads((tmp_path / "h.json").read_text())) == h
    assert d2l.device_name("cpu") == f"cpu ({torch.get_num_threads()} threads)"
    model = d2l.cpu_model()   # the processor a benchmark report names: Linux's own name for it
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file() and "model name" in cpuinfo.read_text():
        assert f"model name\t: {model}\n" in cpuinfo.read_text()
    assert model.strip() == model and model
