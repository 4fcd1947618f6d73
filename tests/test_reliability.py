"""Issue 23, outside the training loop: every misuse gets a clear error, no result is
silently wrong, nothing is lost.

One named test per fault found. Each deliberate error is a ``D2LError`` whose message
names the cause (the argument, the file or the variable) and what to do. The data is
the real Fashion-MNIST (see conftest.py); nothing here trains a net.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import copy_raw, fake_debian

import d2lutils as d2l
from d2lutils import data as data_mod
from d2lutils import distributed as dist

SPLITS = ("images-idx3-ubyte", "labels-idx1-ubyte")



def break_deflate(path: Path) -> None:
    """Flip 64 bytes in the middle of a .gz: its header stays intact, its deflate stream breaks."""
    raw = bytearray(path.read_bytes())
    mid = len(raw) // 2
    for i in range(mid, mid + 64):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


# ---- 1. the test set under the training set's names, through symbolic links ----------

@pytest.mark.parametrize("via_env", [False, True], ids=["root", "env"])
def test_symlinked_test_files_under_training_names_are_refused(raw_dir, isolated, monkeypatch, via_env):
    root = isolated / "swapped"
    root.mkdir()
    for s in SPLITS:
        (root / f"t10k-{s}").symlink_to(raw_dir / f"t10k-{s}")
        (root / f"train-{s}").symlink_to(raw_dir / f"t10k-{s}")   # the swap
    arg = None
    if via_env:
        monkeypatch.setenv("D2L_FASHION_MNIST", str(root))
    else:
        arg = root
    x, _ = d2l.read_fashion_mnist(False, arg, download=False)      # verifies the t10k targets
    assert x.shape[0] == 10_000
    with pytest.raises(d2l.CorruptDatasetError, match=r"train-images-idx3-ubyte.*10,000.*60,000"):
        d2l.read_fashion_mnist(True, arg, download=False)


def test_swap_refused_even_when_the_cache_saw_the_target_first(raw_dir, isolated):
    """The verification cache remembers what each file *holds*, not that it is good."""
    d2l.read_fashion_mnist(False, raw_dir, download=False)        # remembers raw_dir/t10k-*
    root = isolated / "swapped"
    root.mkdir()
    for s in SPLITS:
        (root / f"train-{s}").symlink_to(raw_dir / f"t10k-{s}")
        (root / f"t10k-{s}").symlink_to(raw_dir / f"t10k-{s}")
    with pytest.raises(d2l.CorruptDatasetError, match="train-labels-idx1-ubyte|train-images-idx3-ubyte"):
        d2l.load_data_fashion_mnist(64, root=root, download=False)


def test_right_symlinks_still_load_and_are_remembered(raw_dir, isolated):
    root = isolated / "links"
    root.mkdir()
    for f in raw_dir.iterdir():
        if f.name.endswith("ubyte"):
            (root / f.name).symlink_to(f)
    for _ in range(2):                                             # second time from the cache
        x, y = d2l.read_fashion_mnist(True, root, download=False)
        assert x.shape == (60_000, 28, 28) and torch.bincount(y).tolist() == [6000] * 10
    stamps = json.loads((isolated / "cache" / "verified.json").read_text())
    assert str((raw_dir / "train-images-idx3-ubyte").resolve()) in stamps


# ---- 2. class names only for class indices ----------------------------------------------

@pytest.mark.parametrize("bad", [[-1], [10], [2.5], [True], torch.tensor([3, 11]),
                                 np.array([-2]), [float("nan")], ["3"], "39"],
                         ids=["-1", "10", "2.5", "bool", "tensor-11", "numpy--2", "nan", "str-in-list",
                              "str"])
def test_labels_outside_0_to_9_get_a_named_error(bad):
    with pytest.raises(d2l.ArgumentError, match=r"labels .*0 to 9"):
        d2l.get_fashion_mnist_labels(bad)


def test_valid_labels_in_every_container_still_work():
    want = ["ankle boot", "t-shirt", "bag"]
    for labels in ([9, 0, 8], (9, 0, 8), torch.tensor([9, 0, 8]), np.array([9, 0, 8]),
                   torch.tensor([9.0, 0.0, 8.0]), [np.int64(9), torch.tensor(0), 8]):
        assert d2l.get_fashion_mnist_labels(labels) == want
    assert d2l.get_fashion_mnist_labels(3) == ["dress"]
    assert d2l.get_fashion_mnist_labels(torch.tensor(7)) == ["sneaker"]
    assert d2l.get_fashion_mnist_labels(torch.tensor([], dtype=torch.long)) == []


# ---- 3. the command line: a zero is not "not given" ------------------------------------

@pytest.fixture
def no_training(monkeypatch):
    """Make any attempt to train fail the test loudly instead of running for minutes."""
    from d2lutils.recipe import Recipe

    def refuse(self, *a, **k):
        raise AssertionError(f"main() started training {self.name} "
                             f"(cpu_images={self.cpu_images}, cpu_test_images={self.cpu_test_images})")

    monkeypatch.setattr(Recipe, "fit", refuse)


@pytest.mark.parametrize("flag,value,allowed", [
    ("--images", "0", "10 to 60,000"), ("--images", "-5", "10 to 60,000"),
    ("--images", "70000", "10 to 60,000"), ("--test-images", "0", "10 to 10,000"),
    ("--test-images", "-1", "10 to 10,000"), ("--seed", "-1", "0 to"),
    ("--seed", str(2**64), "0 to"),
])
def test_cli_refuses_zero_and_out_of_range_counts(no_training, capsys, flag, value, allowed):
    from d2lutils.run import main

    rc = main(["lenet", "--profile", "cpu", flag, value])
    err = capsys.readouterr().err
    assert rc != 0 and flag in err and allowed in err
    assert len(err.strip().splitlines()) == 1, err                # one line, no traceback


# ---- 4. a .gz whose deflate stream is broken --------------------------------------------

def test_broken_deflate_stream_in_debian_archive_is_named(debian_dir, isolated, monkeypatch):
    bad = fake_debian(debian_dir, isolated, monkeypatch) / "t10k-labels-idx1-ubyte.gz"
    break_deflate(bad)
    with pytest.raises(d2l.CorruptDatasetError, match=r"t10k-labels-idx1-ubyte\.gz.*reinstall"):
        d2l.find_fashion_mnist(download=False)
    assert not list((isolated / "cache").rglob("*.part"))


def test_broken_deflate_stream_in_root_is_named(raw_dir, isolated):
    root = isolated / "gz"
    root.mkdir()
    for f in raw_dir.iterdir():
        with open(f, "rb") as src, gzip.open(root / (f.name + ".gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    break_deflate(root / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(d2l.CorruptDatasetError, match=r"t10k-labels-idx1-ubyte\.gz: cannot read"):
        d2l.read_fashion_mnist(False, root, download=False)


# ---- 5. plot_history takes what json.load returns ----------------------------------------

def _history_dict() -> dict:
    h = d2l.History(epoch=[1, 2], train_loss=[1.0, 0.6], train_acc=[0.6, 0.8], test_acc=[0.55, 0.75])
    return json.loads(json.dumps(h.to_dict()))                    # what notebooks/runs/*.json hold


def test_plot_history_takes_a_json_dict():
    import matplotlib.pyplot as plt

    ax_loss, ax_acc = d2l.plot_history(_history_dict())
    assert list(ax_loss.lines[0].get_ydata()) == [1.0, 0.6]
    assert list(ax_acc.lines[-1].get_ydata()) == [0.55, 0.75]
    plt.close("all")


def test_plot_history_takes_labels_to_json_dicts_and_histories():
    import matplotlib.pyplot as plt

    runs = {"a": _history_dict(), "b": d2l.History.from_dict(_history_dict())}
    ax_loss, _ = d2l.plot_history(runs)
    assert [line.get_label() for line in ax_loss.lines] == ["a: train loss", "b: train loss"]
    plt.close("all")


@pytest.mark.parametrize("bad,match", [
    (None, "history must be"), (42, "history must be"), ({"a": None}, "'a'"),
    ({"epoch": [1, 2], "train_loss": [1.0], "train_acc": [0.5, 0.6], "test_acc": [0.5, 0.6]},
     "train_loss"),
], ids=["None", "int", "label-None", "ragged"])
def test_plot_history_refuses_what_it_cannot_plot(bad, match):
    import matplotlib.pyplot as plt

    with pytest.raises(d2l.ArgumentError, match=match):
        d2l.plot_history(bad)
    plt.close("all")


# ---- 6. layers raise ArgumentError ---------------------------------------------------

@pytest.mark.parametrize("kwargs,name", [
    ({"size": 0}, "size"), ({"size": 2.0}, "size"), ({"size": True}, "size"),
    ({"size": 5, "alpha": "x"}, "alpha"), ({"size": 5, "beta": None}, "beta"),
    ({"size": 5, "k": float("nan")}, "k"), ({"size": 5, "alpha": float("inf")}, "alpha"),
])
def test_lrn_arguments_raise_argument_error(kwargs, name):
    with pytest.raises(d2l.ArgumentError, match=rf"^{name} must be"):
        d2l.LocalResponseNorm(**kwargs)


@pytest.mark.parametrize("layer,x,match", [
    (d2l.LocalResponseNorm(5), torch.zeros(4, 4), "N, C"),
    (d2l.LocalResponseNorm(5), torch.zeros(1, 4, 2, 2, dtype=torch.long), "floating"),
    (d2l.LocalResponseNorm(5), [[1.0]], "tensor"),
    (d2l.GlobalAvgPool2d(), torch.zeros(4, 4), "N, C, H, W"),
    (d2l.FlattenLayer(), torch.tensor(1.0), "batch"),
], ids=["lrn-2d", "lrn-int", "lrn-list", "gap-2d", "flatten-0d"])
def test_layer_inputs_raise_argument_error(layer, x, match):
    with pytest.raises(d2l.ArgumentError, match=match):
        layer(x)


# ---- 7a. environment variables: a bad value is named where it is used, never at import ----

def test_bad_dist_timeout_does_not_break_import_and_is_named(monkeypatch):
    env = {**os.environ, "D2L_DIST_TIMEOUT": "five minutes", "PYTHONPATH": str(Path(d2l.__file__).parents[1])}
    r = subprocess.run([sys.executable, "-c", "import d2lutils"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for bad in ("five minutes", "0", "-3", "nan", "inf"):
        monkeypatch.setenv("D2L_DIST_TIMEOUT", bad)
        with pytest.raises(d2l.ArgumentError, match=r"\$D2L_DIST_TIMEOUT=.*seconds"):
            dist.timeout()
    monkeypatch.setenv("D2L_DIST_TIMEOUT", "60")
    assert dist.timeout().total_seconds() == 60


@pytest.mark.parametrize("var,call", [("WORLD_SIZE", dist.launched_by_torchrun),
                                      ("LOCAL_RANK", dist.local_rank)])
def test_bad_torchrun_variables_are_named(monkeypatch, var, call):
    for bad in ("two", "-1", "1.5"):
        monkeypatch.setenv(var, bad)
        with pytest.raises(d2l.ArgumentError, match=rf"\${var}="):
            call()


def test_bad_rank_variable_is_named(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "first")
    with pytest.raises(d2l.ArgumentError, match=r"\$RANK="):
        dist.rank()


def test_unknown_profile_in_the_environment_names_the_variable(monkeypatch):
    monkeypatch.setenv("D2L_PROFILE", "fast")
    with pytest.raises(d2l.ArgumentError, match=r"\$D2L_PROFILE=.*fast.*cpu.*full.*quick"):
        d2l.get_profile()


def test_relative_xdg_cache_home_is_ignored(monkeypatch, tmp_path):
    """The XDG spec says a relative $XDG_CACHE_HOME is invalid and must be ignored:
    otherwise the cache would move with the working folder."""
    monkeypatch.delenv("D2L_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    assert data_mod.cache_dir() == tmp_path / ".cache" / "d2lutils"


def test_data_variable_without_the_files_is_named(raw_dir, isolated, monkeypatch):
    """An explicit $D2L_FASHION_MNIST that lacks the files is not silently skipped."""
    partial = copy_raw(raw_dir, isolated / "partial")
    (partial / "train-labels-idx1-ubyte").unlink()
    monkeypatch.setenv("D2L_FASHION_MNIST", str(partial))
    with pytest.raises(d2l.DatasetNotFoundError, match=r"\$D2L_FASHION_MNIST=.*train-labels-idx1-ubyte"):
        d2l.find_fashion_mnist(download=False)
    # a root that holds the files still wins, as before
    assert d2l.find_fashion_mnist(raw_dir, download=False) == raw_dir


# ---- 7b. integers and seeds at their extremes ---------------------------------------------

def test_huge_seeds_are_refused_or_work(raw_dir):
    x, y = torch.zeros(20, 28, 28, dtype=torch.uint8), torch.arange(20) % 10
    it = d2l.FashionMNISTIter(x, y, 8, shuffle=True, seed=2**64 - 1)
    assert sum(len(b[1]) for b in it) == 20                         # the shuffle seed does not overflow
    with pytest.raises(d2l.ArgumentError, match="seed must be an int from 0 to"):
        d2l.FashionMNISTIter(x, y, 8, seed=2**64)
    with pytest.raises(d2l.ArgumentError, match="seed must be an int from 0 to"):
        d2l.load_data_fashion_mnist(8, root=raw_dir, seed=2**64, download=False)
    for seed in (-1, 2**64, "0"):
        with pytest.raises(d2l.ArgumentError, match="seed"):
            it.subset(10, seed=seed)


def test_shape_helpers_refuse_bad_limits():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3))
    for largest in (0, -5, "big"):
        with pytest.raises(d2l.ArgumentError, match="largest"):
            d2l.input_sizes(net, 28, largest=largest)
        with pytest.raises(d2l.ArgumentError, match="largest"):
            d2l.min_input_size(net, largest=largest)


def test_show_images_refuses_an_empty_grid():
    for rows, cols in ((0, 3), (2, -1), (1.5, 2)):
        with pytest.raises(d2l.ArgumentError, match="num_rows|num_cols"):
            d2l.show_images(torch.zeros(3, 28, 28), rows, cols)


def test_profile_plan_refuses_a_zero_rate():
    with pytest.raises(d2l.ArgumentError, match="train_rate"):
        d2l.get_profile("cpu").plan(6000, 0)


# ---- 7c. files read or written through links, and damaged cache files -------------------

@pytest.mark.parametrize("content", ["[1, 2]", '"x"', "{not json", '{"a": 5}', "\x00\xff"])
def test_damaged_stamps_file_only_costs_a_rehash(raw_dir, isolated, content):
    cache = isolated / "cache"
    cache.mkdir()
    (cache / "verified.json").write_text(content, errors="surrogateescape")
    x, y = d2l.read_fashion_mnist(False, raw_dir, download=False)
    assert x.shape == (10_000, 28, 28) and torch.bincount(y).tolist() == [1000] * 10


def test_stamps_file_is_not_read_or_written_through_a_link(raw_dir, isolated):
    cache = isolated / "cache"
    cache.mkdir()
    victim = isolated / "victim.json"
    victim.write_text("{}")
    (cache / "verified.json").symlink_to(victim)
    d2l.read_fashion_mnist(False, raw_dir, download=False)
    assert victim.read_text() == "{}"                              # the link's target is untouched
    # and a fifo planted there (reading it would block forever) is not read
    (cache / "verified.json").unlink()
    os.mkfifo(cache / "verified.json")
    assert data_mod._read_stamps() == {}


def test_planted_link_in_the_cache_is_replaced_not_followed(debian_dir, isolated, monkeypatch):
    monkeypatch.setenv("D2L_DEBIAN_DIR", str(debian_dir))
    raw = isolated / "cache" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    victim = isolated / "victim"
    victim.write_bytes(b"keep me")
    (raw / "t10k-labels-idx1-ubyte").symlink_to(victim)
    d2l.find_fashion_mnist(download=False)
    assert victim.read_bytes() == b"keep me"
    assert not (raw / "t10k-labels-idx1-ubyte").is_symlink()
    x, y = d2l.read_fashion_mnist(False, download=False)
    assert torch.bincount(y).tolist() == [1000] * 10


def test_cache_file_name_taken_by_a_folder_is_named(debian_dir, isolated, monkeypatch):
    monkeypatch.setenv("D2L_DEBIAN_DIR", str(debian_dir))
    raw = isolated / "cache" / "FashionMNIST" / "raw"
    (raw / "t10k-images-idx3-ubyte").mkdir(parents=True)
    with pytest.raises(d2l.D2LError, match=r"raw/t10k-images-idx3-ubyte.*folder"):
        d2l.find_fashion_mnist(download=False)


def test_wrong_idx_dims_for_a_known_name_is_named(raw_dir, isolated):
    """A labels file's header under an images file's name says what it is."""
    root = copy_raw(raw_dir, isolated / "dims")
    shutil.copy(root / "t10k-labels-idx1-ubyte", root / "t10k-images-idx3-ubyte")
    with pytest.raises(d2l.CorruptDatasetError, match="t10k-images-idx3-ubyte: not an idx3"):
        d2l.read_fashion_mnist(False, root, download=False)


def test_cli_passes_counts_in_range_through(no_training):
    from d2lutils.run import main

    with pytest.raises(AssertionError, match=r"cpu_images=500, cpu_test_images=200"):
        main(["lenet", "--profile", "cpu", "--images", "500", "--test-images", "200"])


def test_init_names_a_bad_timeout_before_joining(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("D2L_DIST_TIMEOUT", "soon")
    with pytest.raises(d2l.ArgumentError, match=r"\$D2L_DIST_TIMEOUT='soon'"):
        dist.init(torch.device("cpu"))
    assert not torch.distributed.is_initialized()


def test_empty_debian_variable_means_the_default_not_the_working_folder(debian_dir, isolated, monkeypatch):
    here = isolated / "here"
    here.mkdir()
    for f in debian_dir.iterdir():                                 # damaged copies in the working folder
        (here / f.name).write_bytes(b"\x1f\x8b not Debian's")
    monkeypatch.chdir(here)
    monkeypatch.setenv("D2L_DEBIAN_DIR", "")
    if not data_mod.DEBIAN_DIR.is_dir():
        pytest.skip("needs Debian's dataset-fashion-mnist at its usual place")
    assert d2l.find_fashion_mnist(download=False) == isolated / "cache" / "FashionMNIST" / "raw"


# ---- 7d. errors from inside torch: a probe input too large to allocate ----------------

@pytest.mark.parametrize("shape", [(1, 1, 10**6, 10**6), (10**10, 10**10, 10**10)], ids=["4TB", "overflow"])
def test_layer_table_input_too_large_is_named(shape):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3))
    with pytest.raises(d2l.ArgumentError, match=r"input_shape=.*GiB"):
        d2l.layer_table(net, shape)


def test_count_params_of_a_non_module_is_named():
    with pytest.raises(d2l.ArgumentError, match="net must be a torch.nn.Module"):
        d2l.count_params([torch.zeros(3)])


@pytest.mark.parametrize("shape,match", [
    ((1, 1, 0, 8), "input_shape must be a tuple of positive ints"),
    ("x", "input_shape must be a tuple of positive ints"),
    ((1, 2, 8, 8), r"input_shape=\(1, 2, 8, 8\) does not fit this block: node .*conv.*channels"),
], ids=["zero-side", "str", "wrong-channels"])
def test_draw_block_names_an_input_it_cannot_take(shape, match, capsys):
    import matplotlib.pyplot as plt

    with pytest.raises(d2l.ArgumentError, match=match):
        d2l.draw_block(torch.nn.Conv2d(1, 2, 3), shape)
    assert "Traceback" not in capsys.readouterr().out          # torch's ShapeProp prints one
    plt.close("all")


def test_draw_net_refuses_a_bad_width():
    with pytest.raises(d2l.ArgumentError, match="width must be a positive number"):
        d2l.draw_net(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)), (1, 1, 8, 8), width=-1)


def test_subset_of_unbalanced_labels_has_the_size_asked_for():
    """With too few examples of some class, the others make up the difference: n means n."""
    labels = torch.tensor([0] * 30 + [1] * 3 + [2] * 1)
    it = d2l.FashionMNISTIter(torch.zeros(34, 28, 28, dtype=torch.uint8), labels, 8)
    for n in (10, 20, 34):
        sub = it.subset(n)
        assert sub.num_examples == n
        counts = torch.bincount(sub.labels, minlength=3).tolist()
        assert counts[1:] == [3, 1]                                  # the rare classes are all in


def test_balanced_subsets_of_the_real_data_are_unchanged(raw_dir):
    """The fill-up above changes nothing where every class has enough examples."""
    tr, te = d2l.load_data_fashion_mnist(64, root=raw_dir, n_train=503, n_test=250, seed=3)
    assert torch.bincount(tr.labels).tolist() == [51, 51, 51] + [50] * 7
    assert torch.bincount(te.labels).tolist() == [25] * 10


def test_cli_refuses_a_folder_that_is_a_file(no_training, capsys, tmp_path):
    from d2lutils.run import main

    f = tmp_path / "notes.txt"
    f.write_text("")
    assert main(["lenet", "--profile", "quick", "--folder", str(f)]) != 0
    err = capsys.readouterr().err
    assert "--folder" in err and "is a file" in err


def test_plot_shapes_refuses_what_is_not_a_layer_table():
    with pytest.raises(d2l.ArgumentError, match="table must be a LayerTable"):
        d2l.plot_shapes({"rows": []})
