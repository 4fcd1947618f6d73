"""The CUDA paths, tested on this CPU: each decision the trainer makes for a GPU is
made by code that runs here too, with the GPU's properties faked where needed."""

from __future__ import annotations

import json
import warnings
import weakref
from pathlib import Path

import pytest
import torch
from torch import nn

import d2lutils as d2l
from d2lutils import checkpoint as ck
from d2lutils import train as tr

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("cc, name, scaler", [((6, 0), "fp32", False), ((7, 5), "fp16", True),
                                              ((8, 0), "bf16", False), ((9, 0), "bf16", False)])
def test_precision_policy_by_compute_capability(cc, name, scaler):
    p = d2l.precision_policy("cuda", True, capability=cc)
    assert (p.name, p.scaler) == (name, scaler)
    assert f"{cc[0]}.{cc[1]}" in p.reason
    assert p.grad_scaler(torch.device("cpu")).is_enabled() is scaler


@pytest.mark.parametrize("cc, want", [((6, 0), None), ((7, 5), torch.float16), ((8, 6), torch.bfloat16)])
def test_amp_true_ignores_emulated_bf16(monkeypatch, cc, want):
    """torch.cuda.is_bf16_supported() says True on a T4 and a P100 (emulation): the
    choice must come from the capability instead."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: cc)
    assert d2l.amp_dtype("cuda", True) is want


def test_compile_is_skipped_below_sm70():
    ok, why = d2l.devices.compile_supported(torch.device("cuda"), capability=(6, 0))
    assert not ok and "7.0" in why and "6.0" in why
    assert d2l.devices.compile_supported(torch.device("cuda"), capability=(7, 5))[0]


class _SeesDtype(nn.Module):
    """A tiny net for any input size that records the dtype of every input it gets."""

    def __init__(self):
        super().__init__()
        self.seen: set[torch.dtype] = set()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                                  nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x):
        self.seen.add(x.dtype)
        return self.body(x)


@pytest.mark.parametrize("px", [56, 96, 224])
def test_autocast_evaluation_with_device_resident_data(raw_dir, px):
    """The batch is fetched (and resized) outside autocast, so it is fp32 in training and in
    evaluation alike; the old code died at the first probe at 56 px (lerp of bf16 by fp32)."""
    train_iter, test_iter = d2l.load_data_fashion_mnist(16, resize=px, root=raw_dir, n_train=64, n_test=32,
                                                        device="cpu")
    torch.manual_seed(0)
    net = _SeesDtype()
    h = d2l.train_ch5(net, train_iter, test_iter, 16, torch.optim.SGD(net.parameters(), lr=0.05), "cpu", 1,
                      amp="bf16", progress=False, probes_per_epoch=2, probe_images=20)
    assert h.precision == "bf16" and len(h.probe_acc) == 1 and net.seen == {torch.float32}
    assert d2l.evaluate_accuracy(test_iter, net, amp="bf16") == pytest.approx(h.test_acc[-1], abs=0.07)


def test_scheduler_holds_still_when_the_scaler_skips_a_step():
    torch.manual_seed(0)
    lin = nn.Linear(4, 2)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 + s)
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    ctx = d2l.precision_policy("cpu", False).autocast(torch.device("cpu"))
    y = torch.tensor([0])
    kw = dict(loss=nn.CrossEntropyLoss(), optimizer=opt, scheduler=sched, autocast=ctx, scaler=scaler,
              aux_weight=0.3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tr._step(lin, torch.tensor([[1.0, float("inf"), 0.0, 0.0]]), y, **kw)   # inf gradient: skipped
        assert sched.last_epoch == 0 and opt.param_groups[0]["lr"] == pytest.approx(0.1)
        tr._step(lin, torch.ones(1, 4), y, **kw)                                 # a good step
    assert sched.last_epoch == 1 and opt.param_groups[0]["lr"] == pytest.approx(0.2)
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)]


def test_torchrun_cell_runs_on_a_one_gpu_machine(monkeypatch, tmp_path):
    """The AlexNet chapter's 2-process demo, on a faked one-GPU Colab: every rank must
    train on the CPU (rank 1 would otherwise ask for cuda:1)."""
    nb = json.loads((ROOT / "notebooks" / "02_alexnet.ipynb").read_text())
    src = next("".join(c["source"]) for c in nb["cells"]
               if c["cell_type"] == "code" and "torch.distributed.run" in "".join(c["source"]))
    build = src[:src.index("print(")]            # the lines that build the command
    scope = {"tempfile": __import__("tempfile"), "sys": __import__("sys"),
             "profile": d2l.get_profile("quick")}
    exec(build, scope)
    cmd = scope["cmd"]
    args = cmd[cmd.index("d2lutils.run") + 1:]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    seen = {}

    def fit(self, profile, device, **kw):
        seen["device"] = device
        raise d2l.ArgumentError("stop here")

    monkeypatch.setattr(d2l.Recipe, "fit", fit)
    from d2lutils import run

    assert run.main(args) == 1 and seen["device"] == torch.device("cpu")


class _OOMAfterSeeing(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(784, 10)

    def forward(self, x):
        self.last = weakref.ref(x)
        h = self.lin(x.flatten(1))
        self.activation = weakref.ref(h)
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_frees_the_step_and_advises_a_new_run(raw_dir, tmp_path):
    train_iter, test_iter = d2l.load_data_fashion_mnist(50, root=raw_dir, n_train=100, n_test=50)
    net = _OOMAfterSeeing()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(RuntimeError) as e:
        d2l.train_ch5(net, train_iter, test_iter, 50, opt, "cpu", 1, progress=False)
    msg = str(e.value)
    assert "ran out of memory" in msg and "resume=True" not in msg.replace("resume=True refuses", "")
    assert "checkpoint" not in msg                  # none was written, so none is named
    del e
    import gc

    gc.collect()
    assert net.activation() is None and net.last() is None   # the step's tensors are gone
    # with a checkpoint on disk, the advice is a new checkpoint file, not resume=True
    ckpt = tmp_path / "c.pt"
    d2l.save_checkpoint(ckpt, net, opt, d2l.History(), 0)
    with pytest.raises(RuntimeError, match=r"new run: give it another checkpoint file"):
        d2l.train_ch5(net, train_iter, test_iter, 50, opt, "cpu", 1, progress=False, checkpoint=ckpt)


def test_each_rank_gets_its_own_cuda_generator_back(monkeypatch):
    """Faked: two ranks on cuda:0 and cuda:1, each saving its own CUDA state; on resume
    rank 1 must set cuda:1's state from rank 1's entry (the old code set every GPU from
    rank 0's view)."""
    states = {0: torch.tensor([1], dtype=torch.uint8), 1: torch.tensor([2], dtype=torch.uint8)}
    set_calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device=None: states[torch.device(device).index])
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device=None: set_calls.append((int(s[0]), str(device))))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda s: pytest.fail("must not restore all GPUs"))
    saved = [ck.capture_rng(torch.device("cuda", r)) for r in (0, 1)]        # what gather_objects returns
    rng = {"torch": [s["torch"] for s in saved], "cuda_per_rank": [s["cuda"] for s in saved]}
    ck.restore_rng(rng, 1, 2, torch.device("cuda", 1))
    assert set_calls == [(2, "cuda:1")]


def test_lrn_under_fp16_autocast_gives_the_fp32_result():
    torch.manual_seed(0)
    lrn = d2l.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
    x = torch.randn(2, 16, 8, 8) * 300          # squares above 65,504 overflow fp16
    want = lrn(x)
    with torch.autocast("cpu", dtype=torch.float16):
        got = lrn(x.half())
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), want, atol=0.5, rtol=2e-3)   # fp16 input rounding only


def test_plan_line_on_a_gpu_is_a_labelled_estimate(monkeypatch):
    from d2lutils import models

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    line = models.ALEXNET.plan("full", device=torch.device("cuda"))
    assert "2-core CPU" not in line and "an estimate" in line and "V100" in line


def test_gpu_check_runs_here_and_says_no_gpu(capsys):
    from d2lutils import gpu_check

    assert gpu_check.main([]) == 0
    out = capsys.readouterr().out
    assert "no CUDA GPU" in out and "verdict" in out and "img/s" in out


def test_a_recipe_keeps_its_images_on_the_gpu(monkeypatch):
    """On a CUDA device the 28 px uint8 images go to the GPU (resized there per batch);
    on a CPU they stay where they are."""
    from d2lutils import models, recipe as rc

    seen = []
    monkeypatch.setattr(rc, "load_data_fashion_mnist", lambda *a, **k: seen.append(k["device"]) or (None, None))
    models.LENET.data("quick", device=torch.device("cuda"))
    models.LENET.data("quick", device=torch.device("cpu"))
    assert seen == [torch.device("cuda"), None]


def test_channels_last_on_a_gpu_only_with_tensor_cores():
    assert d2l.precision_policy("cuda", True, capability=(7, 5)).channels_last
    assert not d2l.precision_policy("cuda", True, capability=(6, 0)).channels_last
    assert not d2l.precision_policy("cuda", False).channels_last


def test_peak_memory_reports_the_gpu_too(monkeypatch, capsys):
    from d2lutils import notebook

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda i: 3 * 2**30)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda i: 4 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: type("P", (), {"total_memory": 15 * 2**30})())
    notebook.report_peak_memory()
    out = capsys.readouterr().out
    assert "cuda:0 (Tesla T4): 3.00 GB allocated, 4.00 GB reserved, of 15.0 GB" in out
    assert "peak memory of this notebook's process" in out
