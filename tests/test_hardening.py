"""Bad input gets a clear error, nothing is lost, and no file we load runs code.

One named test per case found by trying the package as a careless or hostile user
would; the property-based tests are in test_properties.py."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from torch import nn

import d2lutils as d2l
from d2lutils.checkpoint import CheckpointLock


def small_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 12 * 12, 10))


@pytest.fixture(scope="module")
def data(raw_dir):
    return d2l.load_data_fashion_mnist(50, root=raw_dir, n_train=200, n_test=100, seed=0)


def train(data, net=None, opt=None, **kw):
    net = net if net is not None else small_net()
    opt = opt if opt is not None else torch.optim.Adam(net.parameters(), lr=1e-3)
    kw.setdefault("progress", False)
    return d2l.train_ch5(net, *data, 50, opt, "cpu", kw.pop("num_epochs", 1), **kw)


# ---- checkpoints: no code runs, nothing is overwritten by a refused resume -------

class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['EVIL_MARKER']}",))


def test_crafted_checkpoint_cannot_run_code(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    bad = tmp_path / "evil.pt"
    torch.save({"model": _Evil(), "format": "d2lutils-checkpoint/2"}, bad)
    with pytest.raises(d2l.CheckpointCorruptError, match="cannot be read"):
        d2l.load_checkpoint(bad, small_net())
    assert not marker.exists()
    with pytest.raises(d2l.CheckpointError):
        d2l.load_weights(bad, small_net())
    assert not marker.exists()


def test_plain_state_dict_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(small_net().state_dict(), path)
    with pytest.raises(d2l.CheckpointError, match="not a checkpoint written by d2lutils.*load_state_dict"):
        d2l.load_checkpoint(path, small_net())


@pytest.mark.parametrize("change, key", [
    (lambda n: torch.optim.Adam(n.parameters(), lr=1e-2), "optimizer.groups[0].lr"),
    (lambda n: torch.optim.SGD(n.parameters(), lr=1e-3), "optimizer.class"),
])
def test_resume_refuses_another_optimizer_and_names_it(data, tmp_path, change, key):
    ck = tmp_path / "c.pt"
    train(data, checkpoint=ck)
    net = small_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(d2l.CheckpointMismatchError, match="nothing was loaded") as e:
        train(data, net, change(net), checkpoint=ck, resume=True, num_epochs=2)
    assert key in str(e.value)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_resume_refuses_another_seed_and_resize(data, raw_dir, tmp_path):
    ck = tmp_path / "c.pt"
    train(data, checkpoint=ck)
    with pytest.raises(d2l.CheckpointMismatchError, match="net.start_weights"):
        train(data, small_net(seed=1), checkpoint=ck, resume=True, num_epochs=2)
    other = d2l.load_data_fashion_mnist(50, root=raw_dir, n_train=200, n_test=100, seed=7)
    with pytest.raises(d2l.CheckpointMismatchError, match="run.data_seed: checkpoint 0, this run 7"):
        train(other, checkpoint=ck, resume=True, num_epochs=2)
    resized = d2l.load_data_fashion_mnist(50, resize=32, root=raw_dir, n_train=200, n_test=100, seed=0)
    with pytest.raises(d2l.CheckpointMismatchError, match=r"run.resize: checkpoint None, this run \[32, 32\]"):
        train(resized, small_net(), checkpoint=ck, resume=True, num_epochs=2)


def test_a_finished_run_is_one_file_and_a_run_in_progress_keeps_the_one_before(data, tmp_path):
    ck = tmp_path / "c.pt"
    train(data, checkpoint=ck, num_epochs=2, probes_per_epoch=2)   # saves mid-epoch, then per epoch
    assert not (tmp_path / "c.pt.prev").exists() and d2l.read_checkpoint(ck)["epoch"] == 2
    d2l.save_checkpoint(ck, small_net(), torch.optim.SGD(small_net().parameters(), lr=0.1), d2l.History(), 3)
    assert d2l.read_checkpoint(tmp_path / "c.pt.prev")["epoch"] == 2


def test_corrupt_but_unpickling_checkpoint_falls_back_to_the_previous_one(data, tmp_path, capsys):
    ck = tmp_path / "c.pt"
    train(data, checkpoint=ck, num_epochs=1)
    net = small_net()
    d2l.save_checkpoint(ck, net, torch.optim.Adam(net.parameters(), lr=1e-3), d2l.History(), 2)
    assert (tmp_path / "c.pt.prev").exists()                     # the finished epoch 1, kept
    state = torch.load(ck, weights_only=True)
    first = next(iter(state["model"]))
    state["model"][first] += 1.0                                    # same structure, altered values
    torch.save(state, ck)                                           # still unpickles, digest unchanged
    with pytest.raises(d2l.CheckpointCorruptError):
        d2l.checkpoint._read_one(ck)
    net = small_net()
    got = d2l.load_checkpoint(ck, net)                              # falls back, and says so
    assert got["path"].endswith("c.pt.prev") and got["epoch"] == 1
    assert "do not match their SHA-256 digest" in capsys.readouterr().out
    (tmp_path / "c.pt.prev").write_bytes(b"not a checkpoint")
    with pytest.raises(d2l.CheckpointCorruptError, match="No good checkpoint is left"):
        d2l.load_checkpoint(ck, small_net())


def test_two_runs_cannot_share_a_checkpoint(data, tmp_path):
    ck = tmp_path / "c.pt"
    with CheckpointLock(ck):                         # another run holds it
        with pytest.raises(d2l.CheckpointLockedError, match=f"process {os.getpid()}"):
            train(data, checkpoint=ck)
    assert not ck.exists()
    train(data, checkpoint=ck)                       # free again once released
    assert ck.exists()


def test_unwritable_checkpoint_path_fails_before_training(data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    net = small_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(d2l.ArgumentError, match="cannot write in"):
        train(data, net, checkpoint=blocker / "sub" / "c.pt")   # a folder inside a file
    with pytest.raises(d2l.ArgumentError, match="is a folder"):
        train(data, net, checkpoint=tmp_path)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())   # no step was taken


# ---- silent wrong results ---------------------------------------------------------------

def test_optimizer_of_another_net_is_refused(data):
    net, other = small_net(), small_net(1)
    with pytest.raises(d2l.ArgumentError, match="optimizer holds .* from outside net"):
        train(data, net, torch.optim.SGD(other.parameters(), lr=0.1))


def test_altered_idx_file_of_the_right_size_is_caught(raw_dir, tmp_path):
    from conftest import copy_raw

    root = copy_raw(raw_dir, tmp_path / "mine")
    f = root / "t10k-images-idx3-ubyte"
    raw = bytearray(f.read_bytes())
    raw[5000] ^= 0xFF                                    # same size, one byte changed
    f.write_bytes(bytes(raw))
    with pytest.raises(d2l.CorruptDatasetError, match="content is not Fashion-MNIST's"):
        d2l.read_fashion_mnist(False, root, download=False)


def test_altered_cache_file_is_decompressed_again(debian_dir, isolated, monkeypatch):
    monkeypatch.setenv("D2L_DEBIAN_DIR", str(debian_dir))
    folder = d2l.find_fashion_mnist(download=False)
    f = folder / "t10k-labels-idx1-ubyte"
    raw = bytearray(f.read_bytes())
    raw[100] = (raw[100] + 1) % 10
    f.write_bytes(bytes(raw))
    d2l.find_fashion_mnist(download=False)               # notices the changed stamp, re-verifies
    x, y = d2l.read_fashion_mnist(False, download=False)
    assert torch.bincount(y).tolist() == [1000] * 10


def test_labels_outside_0_to_9_are_refused():
    images = torch.zeros(3, 28, 28, dtype=torch.uint8)
    with pytest.raises(d2l.ArgumentError, match="labels must lie in 0-9"):
        d2l.FashionMNISTIter(images, torch.tensor([0, 10, 3]), 2)
    with pytest.raises(d2l.ArgumentError, match="labels must lie in 0-9"):
        d2l.FashionMNISTIter(images, torch.tensor([0, -1, 3]), 2)


def test_layer_table_one_row_per_call_of_a_shared_module():
    shared = nn.Linear(8, 8)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = shared

        def forward(self, x):
            return self.fc(torch.relu(self.fc(x)))

    t = d2l.layer_table(Twice(), (2, 8))
    assert [r.name for r in t.rows] == ["fc", "fc (call 2)"]
    assert [r.params for r in t.rows] == [72, 0] and t.total_params == 72   # counted once
    assert t.rows[0].flops == t.rows[1].flops == 2 * 8 * 8


def test_layer_table_tuple_and_dict_outputs():
    class Pair(nn.Module):
        def forward(self, x):
            return x[:, :3], x

    class Named(nn.Module):
        def forward(self, x):
            return {"logits": x[:, :2], "features": x}

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pair, self.named = Pair(), Named()

        def forward(self, x):
            return self.named(self.pair(x)[1])["logits"]

    rows = d2l.layer_table(Net(), (2, 5)).rows
    assert [r.name for r in rows] == ["pair", "named"]
    assert rows[0].output_shape == (3,) and rows[0].outputs == "(0: 3, 1: 5)"
    assert rows[1].output_shape == (2,) and rows[1].outputs == "{logits: 2, features: 5}"
    assert "{logits: 2, features: 5}" in str(d2l.layer_table(Net(), (2, 5)))


def test_layer_table_names_the_layer_that_failed():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(100, 10))
    with pytest.raises(d2l.ArgumentError, match=r"failed in layer '2' \(Linear\)"):
        d2l.layer_table(net, (1, 1, 28, 28))
    assert net.training                                  # mode restored after the failure


# ---- unhelpful crashes, now clear errors ------------------------------------------------

@pytest.mark.parametrize("kwargs, name", [
    ({"resize": 96.0}, "resize"), ({"resize": "224"}, "resize"), ({"resize": (224,)}, "resize"),
    ({"resize": 0}, "resize"), ({"batch_size": 2.5}, "batch_size"), ({"n_train": 0}, "n_train"),
    ({"n_test": 10_001}, "n_test"), ({"seed": -1}, "seed"), ({"device": "gpu"}, "device"),
])
def test_bad_data_arguments_name_themselves(kwargs, name):
    args = {"batch_size": 32, **kwargs}
    with pytest.raises(d2l.ArgumentError, match=rf"^{name}"):
        d2l.load_data_fashion_mnist(**args)


@pytest.mark.parametrize("kwargs, name", [
    ({"check_every": 0}, "check_every"), ({"num_epochs": 0}, "num_epochs"),
    ({"probe_images": -5}, "probe_images"), ({"amp": "int8"}, "amp"), ({"resume": "yes"}, "resume"),
])
def test_bad_trainer_arguments_name_themselves(data, kwargs, name):
    with pytest.raises(d2l.ArgumentError, match=rf"^{name}"):
        train(data, **kwargs)


def test_read_only_cache_folder_is_explained(debian_dir, monkeypatch):
    monkeypatch.setenv("D2L_DEBIAN_DIR", str(debian_dir))
    monkeypatch.setenv("D2L_CACHE", "/proc/d2lutils-cache")   # unwritable even for root
    monkeypatch.delenv("D2L_FASHION_MNIST", raising=False)
    with pytest.raises(d2l.ArgumentError, match="D2L_CACHE to a writable folder"):
        d2l.find_fashion_mnist(download=False)


def test_cache_variable_pointing_to_a_file_is_explained(tmp_path, monkeypatch):
    f = tmp_path / "cache.txt"
    f.write_text("")
    monkeypatch.setenv("D2L_CACHE", str(f))
    monkeypatch.delenv("D2L_FASHION_MNIST", raising=False)
    with pytest.raises(d2l.ArgumentError, match=r"\$D2L_CACHE=.* is a file, not a folder"):
        d2l.find_fashion_mnist(download=False)


def test_alexnet_fed_96_px_says_what_it_takes():
    from d2lutils.models import AlexNet, googlenet, lenet, vgg, VGG_ARCHS

    with pytest.raises(d2l.InputSizeError, match=r"AlexNet takes N x 1 x H x W with H and W 195 to 226 px; "
                                                 r"got \(2, 1, 96, 96\)"):
        AlexNet()(torch.zeros(2, 1, 96, 96))
    with pytest.raises(d2l.InputSizeError, match="LeNet takes N x 1 x H x W with H and W 28 to 31 px"):
        lenet()(torch.zeros(1, 1, 224, 224))
    with pytest.raises(d2l.InputSizeError, match="VGG takes N x 1 x H x W with H and W 224 to 255 px"):
        vgg(VGG_ARCHS["VGG-11"], ratio=8, fc_hidden=512)(torch.zeros(1, 1, 96, 96))
    with pytest.raises(d2l.InputSizeError, match="GoogLeNet takes N x 1 x H x W"):
        googlenet()(torch.zeros(1, 3, 96, 96))             # wrong channels
    with pytest.raises(d2l.ArgumentError, match="image_size"):
        AlexNet(image_size=64)                            # at build time: too small for the net


def test_every_documented_error_is_a_d2l_error():
    for name in d2l.errors.__all__:
        assert issubclass(getattr(d2l, name), d2l.D2LError)
    assert issubclass(d2l.ArgumentError, ValueError) and issubclass(d2l.ArgumentError, TypeError)
    assert issubclass(d2l.DatasetNotFoundError, FileNotFoundError)
