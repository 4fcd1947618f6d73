"""Two processes on this CPU (gloo), launched by torchrun as a reader would launch them,
and the precision choices for the GPUs readers get. The multi-process runs are real:
separate OS processes that exchange gradients through torch.distributed."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import d2lutils as d2l

SCRIPT = Path(__file__).with_name("_ddp_run.py")
ROOT = Path(__file__).resolve().parents[1]


def torchrun(*args, nproc=2, timeout=240):
    env = {**os.environ, "D2L_DIST_TIMEOUT": "60", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           "--standalone", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def single(*args, timeout=240):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT)


def weights(path):
    return torch.load(path, weights_only=True)


def test_two_processes_end_where_one_process_ends(raw_dir, tmp_path):
    """Same seed, same global batch of 64: 2 x 32 images with averaged gradients equal
    one process with all 64, to float rounding."""
    one = single(str(SCRIPT), "--root", str(raw_dir), "--out", str(tmp_path / "one.pt"))
    assert one.returncode == 0, one.stderr
    two = torchrun(str(SCRIPT), "--root", str(raw_dir), "--out", str(tmp_path / "two.pt"))
    assert two.returncode == 0, two.stderr
    assert "training on 2 processes (gloo), each cpu (1 thread)" in two.stdout
    assert two.stdout.count("done:") == 1                     # only rank 0 prints
    a, b = weights(tmp_path / "one.pt"), weights(tmp_path / "two.pt")
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], atol=2e-5, rtol=1e-4)
    ha, hb = a["history"], b["history"]
    assert hb["world_size"] == 2 and ha["world_size"] == 1
    assert ha["n_train"] == hb["n_train"] == 640
    assert hb["test_acc"] == pytest.approx(ha["test_acc"], abs=0.011)   # at most 2 of 200 images differ
    assert hb["train_loss"] == pytest.approx(ha["train_loss"], rel=1e-4)


def test_killed_multi_process_run_resumes_to_the_same_weights(raw_dir, tmp_path):
    full = torchrun(str(SCRIPT), "--root", str(raw_dir), "--out", str(tmp_path / "full.pt"),
                    "--ckpt", str(tmp_path / "a.pt"))
    assert full.returncode == 0, full.stderr
    # rank 1 dies at batch 8 of epoch 2 (10 batches per epoch; the probe checkpoint is at batch 5)
    killed = torchrun(str(SCRIPT), "--root", str(raw_dir), "--out", str(tmp_path / "never.pt"),
                      "--ckpt", str(tmp_path / "b.pt"), "--kill-at", "1,8")
    assert killed.returncode != 0 and not (tmp_path / "never.pt").exists()
    saved = torch.load(tmp_path / "b.pt", weights_only=True)
    assert (saved["epoch"], saved["batch"]) == (1, 5) and len(saved["rng"]["torch"]) == 2
    resumed = torchrun(str(SCRIPT), "--root", str(raw_dir), "--out", str(tmp_path / "resumed.pt"),
                       "--ckpt", str(tmp_path / "b.pt"), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming in epoch 2 after batch 5" in resumed.stdout
    a, b = weights(tmp_path / "full.pt"), weights(tmp_path / "resumed.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["history"]["test_acc"] == b["history"]["test_acc"]
    assert a["history"]["train_loss"] == b["history"]["train_loss"]


def test_a_failing_rank_brings_the_job_down_with_a_message(raw_dir, tmp_path):
    import time

    t0 = time.perf_counter()
    run = torchrun(str(SCRIPT), "--root", str(raw_dir), "--out", str(tmp_path / "x.pt"),
                   "--fail-at", "0,3", timeout=180)
    assert run.returncode != 0
    assert "rank 1 of 2 failed: RuntimeError: rank 1: simulated failure" in run.stderr
    assert time.perf_counter() - t0 < 150                      # no hang waiting for rank 1


def test_a_rank_with_an_empty_last_shard_does_not_end_the_run(raw_dir, tmp_path):
    """641 images in batches of 64: the last batch holds one image, so rank 1 gets none.
    Its cross-entropy over no images would be NaN, spread by DDP to every rank."""
    run = torchrun(str(SCRIPT), "--root", str(raw_dir), "--out", str(tmp_path / "x.pt"), "--n-train", "641",
                   "--epochs", "1")
    assert run.returncode == 0, run.stderr[-2000:]
    h = weights(tmp_path / "x.pt")["history"]
    assert h["n_train"] == 641 and all(map(math.isfinite, h["train_loss"]))
    assert "destroy_process_group" not in run.stderr      # the group d2lutils started is ended


def test_cli_lists_and_trains_a_chapter_recipe(tmp_path):
    listed = single("-m", "d2lutils.run", "--list")
    assert listed.returncode == 0
    for name in ("lenet", "alexnet", "zfnet", "vgg11-div8", "nin", "googlenet"):
        assert f"\n{name} " in "\n" + listed.stdout
    run = single("-m", "d2lutils.run", "lenet", "--profile", "quick", "--folder", str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "checkpoints" / "lenet-quick.pt").exists()
    h = d2l.History.load_json(tmp_path / "runs" / "lenet-quick.json")
    assert h.profile == "quick" and h.n_train == 300 and len(h.epoch) == 1
    again = single("-m", "d2lutils.run", "lenet", "--profile", "quick", "--folder", str(tmp_path))
    assert "loaded a finished run" in again.stdout         # the chapter would load it the same way
    bad = single("-m", "d2lutils.run", "no-such-net")
    assert bad.returncode == 2 and "unknown recipe 'no-such-net'" in bad.stderr


def test_shards_are_disjoint_and_make_up_each_batch(raw_dir):
    it, _ = d2l.load_data_fashion_mnist(10, root=raw_dir, n_train=95, n_test=10, seed=1)
    it.set_epoch(0)
    whole = [y for _, y in it]
    parts = []
    for r in range(3):
        shard = it.shard(r, 3)
        shard.set_epoch(0)                 # train_ch5 sets every epoch's shuffle on each shard
        parts.append(list(shard))
    assert all(len(p) == len(whole) == len(it) for p in parts)
    for k, y in enumerate(whole):
        ys = [p[k][1] for p in parts]
        assert sorted(torch.cat(ys).tolist()) == sorted(y.tolist())
        assert [len(t) for t in ys] in ([4, 3, 3], [2, 2, 1])   # balanced, last batch small
    with pytest.raises(d2l.ArgumentError, match="rank"):
        it.shard(3, 3)


# ---- precision on the GPUs readers get ------------------------------------------------

def test_amp_picks_bf16_fp16_or_fp32(monkeypatch):
    assert d2l.amp_dtype("cpu") is None and d2l.amp_dtype("cpu", False) is None   # fp32 on a CPU
    assert d2l.amp_dtype("cpu", "bf16") is torch.bfloat16
    # by compute capability; torch.cuda.is_bf16_supported() is True on a T4 too (emulated)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (8, 0))   # A100, H100, L4
    assert d2l.amp_dtype("cuda") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (7, 5))   # T4
    assert d2l.amp_dtype("cuda") is torch.float16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (6, 0))   # P100
    assert d2l.amp_dtype("cuda") is None
    assert d2l.make_grad_scaler("cpu", torch.float16) is not None
    assert d2l.make_grad_scaler("cuda", torch.bfloat16) is None and d2l.make_grad_scaler("cpu", None) is None
    with pytest.raises(d2l.ArgumentError, match="amp must be"):
        d2l.amp_dtype("cpu", "int8")


def test_grad_scaler_skips_a_batch_with_an_inf_gradient():
    """What fp16 training relies on: a step whose gradients overflowed is skipped, and the
    scale is lowered, here on this CPU."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    scaler = d2l.make_grad_scaler("cpu", torch.float16, init_scale=2.0**16)
    before = [p.detach().clone() for p in lin.parameters()]
    x = torch.tensor([[1.0, 2.0, float("inf"), 0.0]])                # one bad input: inf gradient
    scaler.scale(lin(x).sum()).backward()
    scaler.step(opt)
    scaler.update()
    assert all(torch.equal(a, p) for a, p in zip(before, lin.parameters()))  # skipped
    assert scaler.get_scale() < 2.0**16
    opt.zero_grad()
    scaler.scale(lin(torch.ones(1, 4)).sum()).backward()              # a good batch is applied
    scaler.step(opt)
    assert not all(torch.equal(a, p) for a, p in zip(before, lin.parameters()))


def test_train_ch5_with_fp16_and_a_scaler_runs_on_cpu(raw_dir):
    train_iter, test_iter = d2l.load_data_fashion_mnist(50, root=raw_dir, n_train=200, n_test=100)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    h = d2l.train_ch5(net, train_iter, test_iter, 50, torch.optim.Adam(net.parameters(), lr=0.01), "cpu", 2,
                      amp="fp16", progress=False)
    assert h.precision == "fp16" and h.train_loss[1] < h.train_loss[0] and h.test_acc[-1] > 0.3
