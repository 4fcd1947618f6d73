import pytest
import torch
from torch import nn

import d2lutils as d2l


def test_env_var_chooses(monkeypatch):
    monkeypatch.setenv("D2L_PROFILE", "full")
    p = d2l.get_profile()
    assert p.name == "full" and p.n_train is None and p.epochs(5) == 5 and "D2L_PROFILE" in p.reason
    monkeypatch.setenv("D2L_PROFILE", "quick")
    p = d2l.get_profile()
    assert p.name == "quick" and p.n_train == 300 and p.n_test == 150 and p.epochs(5) == 1


def test_default_follows_the_hardware(monkeypatch):
    monkeypatch.delenv("D2L_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert d2l.get_profile().name == "cpu" and "no CUDA GPU" in str(d2l.get_profile())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert d2l.get_profile().name == "full"


def test_unknown_profile_is_refused(monkeypatch):
    monkeypatch.setenv("D2L_PROFILE", "fast")
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        d2l.get_profile()


def test_import_runs_nothing(tmp_path):
    """No plotting or dataset library loaded, no data read, no CUDA context."""
    import os
    import subprocess
    import sys

    code = ("import sys, torch, d2lutils; bad = [m for m in ('matplotlib.pyplot', 'torchvision') "
            "if m in sys.modules]; print(bad, torch.cuda.is_initialized())")
    env = {**os.environ, "D2L_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "[] False"
    assert not (tmp_path / "cache").exists()


def test_recipe_but_changes_only_what_it_names_and_checks_it():
    base = d2l.Recipe("base", net=lambda: nn.Linear(784, 10), resize=None, batch_size=64,
                      optimizer="sgd", lr=0.1, num_epochs=1)
    adam = base.but(name="adam", optimizer="adam", lr=1e-3)
    assert (adam.name, adam.optimizer, adam.lr, adam.batch_size) == ("adam", "adam", 1e-3, 64)
    assert (base.optimizer, base.lr) == ("sgd", 0.1)   # the original is untouched
    with pytest.raises(d2l.ArgumentError, match="no field"):
        base.but(learning_rate=0.1)
    with pytest.raises(d2l.ArgumentError, match="lr"):
        base.but(lr=-1.0)


def test_a_cells_own_sample_is_whole_except_under_quick():
    assert d2l.get_profile("cpu").sized(2_000) == 2_000 == d2l.get_profile("full").sized(2_000)
    assert d2l.get_profile("quick").sized(2_000) == 200
    assert d2l.get_profile("quick").sized(50) == 10
    with pytest.raises(d2l.ArgumentError, match="n must be"):
        d2l.get_profile("cpu").sized(5)
