"""The plan line counts the evaluation passes; a transient live plot leaves no second figure."""

from __future__ import annotations

import sys

import pytest
import torch

import d2lutils as d2l
from d2lutils import models, recipe
from d2lutils.errors import ArgumentError
from d2lutils.plot import LiveCurves


def test_plan_counts_the_test_pass_and_the_probes():
    p = d2l.get_profile("cpu")
    train_only = p.plan(16_000, 16)
    assert "training about 16.7 min" in train_only and "test img/s" not in train_only
    # 16,000 / 16 s + (10,000 + 4 probes x 500) / 60 s = 1,000 + 200 s = 20 min
    both = p.plan(16_000, 16, n_test=10_000, test_rate=60, n_probe=2_000)
    assert "training and testing about 20.0 min" in both and "60 test img/s" in both
    with pytest.raises(ArgumentError, match="n_probe"):
        p.plan(100, 1.0, n_probe=-1)


def test_recipe_plan_uses_its_test_rate():
    line = models.ALEXNET.plan("cpu")
    assert models.ALEXNET.cpu_test_img_per_s, "AlexNet's recipe states its measured test rate"
    assert "training and testing about" in line


def test_live_plot_rejects_other_values():
    net = models.lenet()
    with pytest.raises(ArgumentError, match="live_plot must be True or False, None, 'transient'"):
        batch = [(torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long))]
        d2l.train_ch5(net, batch, batch, 2, torch.optim.SGD(net.parameters(), lr=0.1), "cpu", 1,
                      live_plot="sometimes")


class _Handle:
    def __init__(self):
        self.updates = []

    def update(self, obj, **kw):
        self.updates.append((obj, kw))


@pytest.fixture
def handles(monkeypatch):
    """The display handles the live plot gets, in place of IPython's display."""
    import IPython.display

    made = []

    def fake_display(obj, display_id=False):
        made.append(_Handle())
        return made[-1]

    monkeypatch.setattr(IPython.display, "display", fake_display)
    return made


@pytest.mark.parametrize("transient", [False, True])
def test_a_transient_live_plot_is_removed_at_the_end(handles, transient):
    h = d2l.History()
    h.add_point([10.0, 4.0, 8.0], 0.5)
    live = LiveCurves(transient=transient)
    live.update(h)
    live.update(h)
    live.close()
    assert len(handles) == 1
    last = handles[0].updates[-1][0]
    if transient:
        assert last == {"text/plain": ""}, "the drawing is replaced by nothing"
    else:
        assert not isinstance(last, dict), "the last drawing stays as the cell's output"


def test_train_ch5_passes_transient_through_to_the_live_plot(handles):
    torch.manual_seed(0)
    net = models.lenet()
    batch = [(torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3]))]
    d2l.train_ch5(net, batch, batch, 4, torch.optim.SGD(net.parameters(), lr=0.1), "cpu", 1,
                  live_plot="transient", progress=False)
    assert len(handles) == 1 and handles[0].updates[-1][0] == {"text/plain": ""}


def test_a_study_run_is_a_smoke_run_of_its_own_under_quick(monkeypatch, tmp_path, capsys):
    """Recipe.study: a chapter's comparison arm; under quick (CI) a fortieth of the images
    (at least 64), 50 test images and no checkpoint. It prints no progress lines, and
    writes a run record only when asked."""
    monkeypatch.setenv("D2L_PROFILE", "quick")
    _, h = models.LENET_RELU.study("lenet-arm", 3_200, 500, "cpu", seed=0, folder=tmp_path, progress=False)
    assert (h.n_train, h.n_test) == (80, 50)
    assert not (tmp_path / "checkpoints").exists()     # a smoke run keeps no checkpoint
    assert not (tmp_path / "runs").exists()      # a study writes no run record unless asked
    out = capsys.readouterr().out.splitlines()
    plan = models.LENET_RELU.but(name="lenet-arm-smoke", cpu_images=80, cpu_test_images=50).plan("cpu")
    assert out[:-2] == plan.splitlines() and out[-2].startswith("training on cpu")
    assert out[-1] == f"done: {h.summary()}"    # and no epoch lines between
    assert "80 train images x 10 epoch(s)" in out[-1] and "profile cpu" in out[-1]
    _, h = models.LENET_RELU.study("lenet-other", 640, 500, "cpu", seed=0, folder=tmp_path, progress=False,
                                   record=True)
    assert h.n_train == 64
    assert [p.name for p in (tmp_path / "runs").glob("*.json")] == ["lenet-other-smoke-cpu.json"]
    with pytest.raises(ArgumentError, match="images"):
        models.LENET_RELU.study("lenet-arm", 5, 500, "cpu")


def test_brief_output_keeps_all_but_the_progress_lines(capsys):
    out = recipe._Brief(sys.stdout)
    out.write("a plan\ntraining on cpu | profile cpu\n  epoch 0.25: 64 images, loss 2.3")
    out.write("\nepoch 1, loss 2.2, train acc 0.1\nepoch 10, loss 0.3\nloaded a finished run from x\n")
    out.write("done: cpu | profile cpu | 80 train images x 1 epoch(s)\n")
    assert capsys.readouterr().out.splitlines() == [
        "a plan", "training on cpu | profile cpu", "loaded a finished run from x",
        "done: cpu | profile cpu | 80 train images x 1 epoch(s)"]


# ---- the pace line: the run's own first batches, timed -----------------------------------------

class _Clock:
    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def _paced(monkeypatch, **kw):
    from d2lutils import pace

    clock, said = _Clock(), []
    monkeypatch.setattr(pace, "time", clock)
    args = dict(images_per_batch=32, images_left=3_200, test_images=1_200, seconds_before=0.0, limit=20)
    return pace.Pace(said.append, torch.device("cpu"), **{**args, **kw}), clock, said


def test_pace_times_batches_after_the_first_and_counts_what_is_left(monkeypatch):
    p, clock, said = _paced(monkeypatch)
    for k in range(1, 30):        # 2 s a batch, from an epoch that began at 0
        clock.now = 2.0 * k
        p.tick(k, 0.0)
    # batches 2-9 fill the 15 s window (16 s): 8 x 32 / 16 = 16 img/s. The run: 100 batches
    # x 2 s, and 1,200 test images at three times the training rate (48/s): 25 s. 225 s in all.
    assert said == ["  pace here: batches 2-9 in 16.0 s, 16.0 train img/s; at this pace the run takes about 3.8 min"]


def test_pace_closes_its_window_before_the_first_probe_and_adds_a_resumed_runs_time(monkeypatch):
    p, clock, said = _paced(monkeypatch, limit=4, seconds_before=600.0, images_left=320, test_images=0)
    for k in range(1, 8):
        clock.now = 1.0 * k
        p.tick(k, 0.0)
    # batches 2-4 in 3 s (32 img/s); 10 batches of 1 s, after 600 s recorded before
    assert said == ["  pace here: batches 2-4 in 3.0 s, 32.0 train img/s; at this pace the run takes about 10.2 min"]
    p, clock, said = _paced(monkeypatch, limit=2)   # too few batches before the first probe: no line
    for k in range(1, 5):
        clock.now = float(k)
        p.tick(k, 0.0)
    assert not said


def test_pace_line_of_a_real_run_predicts_its_wall_time(capsys):
    """LeNet on 12,800 real images, 3 epochs: the line comes once, before the first epoch's
    line, and its estimate is the run's wall time within a factor that a loaded test machine
    keeps (the chapters' stored runs are checked to 10% in test_book)."""
    net, h = models.LENET.but(name="lenet-pace", cpu_images=12_800, cpu_test_images=2_000, cpu_epochs=3).fit(
        "cpu", "cpu", checkpoint=None, save=False, progress=False)
    out = capsys.readouterr().out.splitlines()
    paced = [i for i, line in enumerate(out) if line.startswith("  pace here: batches 2-")]
    assert len(paced) == 1 and out[paced[0] - 1].startswith("training on cpu")
    said = float(out[paced[0]].rsplit("about ", 1)[1].split()[0])   # "19 s"
    assert 0.5 * h.wall_time < said < 2.0 * h.wall_time, (out[paced[0]], h.wall_time)
    _, h2 = models.LENET.but(name="lenet-pace", cpu_images=12_800, cpu_test_images=2_000, cpu_epochs=3).fit(
        "cpu", "cpu", checkpoint=None, save=False, progress=False, probes_per_epoch=1)
    assert any(line.startswith("  pace here") for line in capsys.readouterr().out.splitlines())
