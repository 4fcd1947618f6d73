"""Property-based tests (hypothesis) over the data and trainer arguments.

Two properties per function:

* **valid inputs work**: any combination drawn from the documented ranges runs and gives
  results of the promised shape;
* **one bad argument is named**: a valid combination with one argument replaced by a
  wrong type or an out-of-range value either still works (the value happened to be
  valid) or raises an ``ArgumentError`` whose message starts with that argument's name;
  never an internal error.

Sizes stay small enough that a valid combination cannot exhaust memory. Each test
module prints how its inputs ended (run pytest with -s to see it)."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import d2lutils as d2l

JUNK = st.one_of(st.none(), st.booleans(), st.text(max_size=3), st.floats(allow_nan=True, allow_infinity=True),
                 st.integers(-10**6, 0), st.integers(10**6, 10**9), st.lists(st.integers(-2, 40), max_size=3),
                 st.tuples(st.integers(-2, 40)), st.just(torch.tensor(3)), st.just(object()))
SETTINGS = settings(max_examples=50, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
COUNTS: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    print("\nproperty-test outcomes:", dict(sorted(COUNTS.items())))


# ---- data -----------------------------------------------------------------------------

DATA = {
    "batch_size": st.integers(1, 300),
    "resize": st.one_of(st.none(), st.integers(1, 64), st.tuples(st.integers(1, 48), st.integers(1, 48))),
    "n_train": st.one_of(st.none(), st.integers(1, 400)),
    "n_test": st.one_of(st.none(), st.integers(1, 300)),
    "seed": st.integers(0, 2**31),
}


def named_or_valid(label, name, call, check, also_ok=lambda message: False):
    """``call()`` with one argument (``name``) set to junk must raise an ArgumentError whose
    message starts with that name (or that ``also_ok`` accepts), or work and pass ``check``."""
    try:
        result = call()
    except d2l.ArgumentError as e:
        assert str(e).startswith(name) or also_ok(str(e)), (name, str(e))
        COUNTS[f"{label}, one bad: ArgumentError naming it"] += 1
        return
    check(result)
    COUNTS[f"{label}, one bad: still valid, works"] += 1


def load(raw_dir, kw):
    kw = dict(kw)
    if kw["n_train"] is None and kw["resize"] is not None:
        kw["resize"] = 28 if isinstance(kw["resize"], int) else (28, 28)   # 60,000 images: keep a batch small
    return kw, d2l.load_data_fashion_mnist(kw.pop("batch_size"), root=raw_dir, **kw), kw


def check_data(kw, batch_size, train_iter, test_iter):
    X, y = next(iter(train_iter))
    resize = kw["resize"]
    side = (28, 28) if resize is None else ((resize, resize) if isinstance(resize, int) else tuple(resize))
    assert X.shape[1:] == (1, *side) and X.dtype == torch.float32
    assert 0 <= X.min() and X.max() <= 1 + 1e-5
    assert y.dtype == torch.int64 and 0 <= y.min() and y.max() <= 9
    assert len(y) == min(batch_size, train_iter.num_examples)
    assert len(train_iter) == math.ceil(train_iter.num_examples / batch_size)
    assert train_iter.num_examples == (60_000 if kw["n_train"] is None else kw["n_train"])
    assert test_iter.num_examples == (10_000 if kw["n_test"] is None else kw["n_test"])


@SETTINGS
@given(st.fixed_dictionaries(DATA))
def test_valid_data_arguments_work(raw_dir, kw):
    batch_size = kw["batch_size"]
    kw, (train_iter, test_iter), _ = load(raw_dir, kw)
    check_data({**kw, "batch_size": batch_size}, batch_size, train_iter, test_iter)
    COUNTS["load_data, valid: works"] += 1


@SETTINGS
@given(st.fixed_dictionaries(DATA), st.sampled_from(sorted(DATA)), JUNK)
def test_one_bad_data_argument_is_named(raw_dir, kw, name, bad):
    kw = {**kw, name: bad}
    batch_size = kw["batch_size"]
    named_or_valid("load_data", name, lambda: load(raw_dir, kw),
                   lambda r: check_data({**r[0], "batch_size": batch_size}, batch_size, *r[1]))


# ---- training ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(raw_dir):
    return d2l.load_data_fashion_mnist(20, root=raw_dir, n_train=60, n_test=40, seed=0)


TRAIN = {
    "num_epochs": st.integers(1, 2), "check_every": st.integers(1, 5), "points_per_epoch": st.integers(1, 30),
    "probes_per_epoch": st.integers(1, 6), "probe_images": st.integers(1, 80), "amp": st.sampled_from([False, True, "fp16"]),
    "channels_last": st.booleans(), "batch_size": st.integers(1, 40), "diverge_factor": st.floats(5, 1e6),
    "resume": st.just(False), "profile": st.one_of(st.none(), st.text(max_size=6)),
}


def fit(tiny, kw, lr=0.01):
    train_iter, test_iter = tiny
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 26 * 26, 10))
    kw = dict(kw)
    return d2l.train_ch5(net, train_iter, test_iter, kw.pop("batch_size"), torch.optim.SGD(net.parameters(), lr=lr),
                         "cpu", kw.pop("num_epochs"), progress=False, live_plot=False, **kw)


def check_history(h, num_epochs):
    assert h.epoch == list(range(1, num_epochs + 1))
    assert all(0 <= a <= 1 for a in h.test_acc + h.probe_acc)
    assert all(math.isfinite(v) for v in h.train_loss + h.step_loss)
    assert h.step_epoch == sorted(h.step_epoch) and h.step_epoch[-1] == num_epochs


@SETTINGS
@given(st.fixed_dictionaries(TRAIN))
def test_valid_trainer_arguments_work(tiny, kw):
    check_history(fit(tiny, kw), kw["num_epochs"])
    COUNTS["train_ch5, valid: works"] += 1


@SETTINGS
@given(st.fixed_dictionaries(TRAIN), st.sampled_from(sorted(TRAIN)), JUNK)
def test_one_bad_trainer_argument_is_named(tiny, kw, name, bad):
    kw = {**kw, name: bad}
    named_or_valid("train_ch5", name, lambda: fit(tiny, kw), lambda h: check_history(h, kw["num_epochs"]))


@SETTINGS
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e3, 1e6, 1e12])))
def test_any_learning_rate_trains_diverges_clearly_or_is_refused(tiny, lr):
    kw = {"num_epochs": 1, "batch_size": 20, "check_every": 1}
    if lr < 0:                       # torch.optim refuses it itself, before d2lutils is called
        with pytest.raises(ValueError, match="Invalid learning rate"):
            fit(tiny, kw, lr)
        COUNTS["lr: refused by torch.optim"] += 1
        return
    try:
        h = fit(tiny, kw, lr)
    except d2l.ArgumentError as e:   # NaN, inf, or beyond what float32 weights can take a step of
        assert (not math.isfinite(lr) or lr >= torch.finfo(torch.float32).max) and "learning rate" in str(e)
        COUNTS["lr: ArgumentError"] += 1
        return
    except d2l.TrainingDivergedError:
        COUNTS["lr: TrainingDivergedError"] += 1
        return
    check_history(h, 1)
    COUNTS["lr: works"] += 1


# ---- inspection -----------------------------------------------------------------------

def small_net():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3))


VALID_SHAPE = st.tuples(st.integers(1, 3), st.just(1), st.integers(1, 40), st.integers(1, 40))


@SETTINGS
@given(VALID_SHAPE, st.one_of(st.none(), st.integers(1, 3)))
def test_layer_table_valid_inputs_work(shape, depth):
    net = small_net()
    table = d2l.layer_table(net, shape, depth=depth)
    assert table.input_shape == tuple(shape[1:]) and table.output_shape == (3,)
    assert table.total_params == d2l.count_params(net) and net.training    # mode restored
    COUNTS["layer_table, valid: works"] += 1


@SETTINGS
@given(VALID_SHAPE, st.one_of(st.none(), st.integers(1, 3)), st.sampled_from(["input_shape", "depth"]),
       st.one_of(JUNK, st.lists(st.integers(-1, 40), max_size=5).map(tuple)))
def test_one_bad_layer_table_argument_is_named(shape, depth, name, bad):
    kw = {"input_shape": shape, "depth": depth, name: bad}

    def check(table):
        assert table.rows

    # a shape of the right form that the net cannot take is named by the layer that failed
    named_or_valid("layer_table", name, lambda: d2l.layer_table(small_net(), kw["input_shape"], depth=kw["depth"]),
                   check, also_ok=lambda m: name == "input_shape" and "does not fit this net" in m)
