"""Chapter 8's stored runs: the plateau study's criterion and ResNet-18's main run, read from
``notebooks/runs/`` (no training here)."""

import json
import math
from pathlib import Path

import pytest
import torch

RUNS = Path(__file__).resolve().parents[1] / "notebooks" / "runs"
SEEDS = (0, 1)
PAIRS = {"nin-d2l": "nin-d2l-bn", "googlenet-seed": "googlenet-seed-bn"}


def _run(name):
    p = RUNS / f"{name}-cpu.json"
    if not p.exists():
        pytest.skip(f"runs/{p.name} is missing: execute notebooks/08_after2015.ipynb")
    return json.loads(p.read_text())


@pytest.mark.parametrize("plain, bn", sorted(PAIRS.items()))
@pytest.mark.parametrize("seed", SEEDS)
def test_batch_norm_leaves_the_plateau_where_the_plain_net_stays(plain, bn, seed):
    p, b = _run(f"{plain}-96px-s{seed}"), _run(f"{bn}-96px-s{seed}")
    assert p["n_train"] == b["n_train"] and p["n_test"] == b["n_test"], "both arms see the same images"
    assert p["test_acc"][-1] < 0.2 and p["step_loss"][-1] > math.log(10) - 0.3, (plain, seed)
    assert b["test_acc"][-1] >= 0.2 and b["step_loss"][-1] < math.log(10) - 0.3, (bn, seed)


def test_resnet18_main_run_learned():
    h = _run("resnet18")
    assert h["test_acc"][-1] >= 0.75 and h["n_test"] >= 5_000 and h["step_epoch"]


def test_resnet18_matches_torchvision_and_takes_the_chapter_input():
    torchvision = pytest.importorskip("torchvision")
    from d2lutils import models

    net = models.resnet18()
    assert net(torch.zeros(2, 1, 96, 96)).shape == (2, 10)
    assert sum(p.numel() for p in models.resnet18(3, 1000).parameters()) == \
        sum(p.numel() for p in torchvision.models.resnet18(weights=None).parameters())
    plain = models.resnet(models.RESNET_ARCHS[18], skip=False)
    assert plain(torch.zeros(1, 1, 64, 64)).shape == (1, 10)


def test_batch_norm_from_scratch_matches_pytorch():
    from d2lutils import models

    torch.manual_seed(0)
    ours, ref = models.BatchNorm(4), torch.nn.BatchNorm2d(4)
    for _ in range(2):
        X = torch.randn(8, 4, 3, 3) * 2 + 1
        assert torch.allclose(ours.train()(X), ref.train()(X), atol=1e-5)
    assert torch.allclose(ours.running_var, ref.running_var, atol=1e-6)
    X = torch.randn(8, 4, 3, 3)
    assert torch.allclose(ours.eval()(X), ref.eval()(X), atol=1e-5)
