"""The NiN seed study runs end to end, resumes, and its committed report is complete.

Not a timed test and not a test of accuracy on a smoke run: it checks the report the
NiN chapter reads, and that the committed study holds every run it claims.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "nin_seeds.py"


def run(*args):
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=600, env={"D2L_PROGRESS": "0", **os.environ})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_quick_study_writes_report_and_resumes(tmp_path):
    out = tmp_path / "study.json"
    run("--quick", "--out", str(out))
    report = json.loads(out.read_text())
    assert report["mode"] == "quick"
    from d2lutils.models import NIN, NIN_D2L

    assert report["setting"]["size"] == 224 and report["setting"]["n_train"] == 64
    # the chapter's own recipes, with only the budget changed
    recipes = report["setting"]["recipes"]
    assert recipes["d2l"] == NIN_D2L.for_profile("cpu").describe()
    assert recipes["book"] == NIN.for_profile("cpu").describe()
    # each arm is one change away from the one before it
    assert recipes["d2l-b32"] == recipes["d2l"].replace("batch 128", "batch 32")
    assert recipes["d2l-b32-kaiming"] == recipes["d2l-b32"].replace("init_xavier", "init_kaiming")
    assert [(r["recipe"], r["seed"]) for r in report["runs"]] == [
        ("d2l", 0), ("d2l-b32", 0), ("d2l-b32-kaiming", 0), ("book", 0)]
    for r in report["runs"]:
        h = r["history"]
        assert h["n_train"] == 64 and h["n_test"] == 50 and h["epoch"] == [1]
        assert h["device"] and h["profile"] == "nin-seeds 224px"
        assert 0 <= h["test_acc"][0] <= 1 and h["seconds"][0] > 0
    assert report["wall_seconds"] == sum(r["history"]["seconds"][0] for r in report["runs"])

    # --resume keeps the finished runs and trains none again
    proc = run("--quick", "--resume", "--out", str(out))
    assert "---" not in proc.stdout
    assert json.loads(out.read_text())["runs"] == report["runs"]

    # a report of another setting is not mixed into
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--size", "112", "--resume",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "another setting" in proc.stderr


def test_committed_study_is_complete():
    files = sorted((ROOT / "benchmarks" / "results" / "nin_seeds").glob("*.json"))
    assert files, "no committed NiN seed study"
    study = json.loads(files[-1].read_text())
    assert study["mode"] == "study"
    s = study["setting"]
    runs = {(r["recipe"], r["seed"]): r["history"] for r in study["runs"]}
    assert s["size"] == 224, "the study must run at the chapter's input size"
    arms = ("d2l", "d2l-b32", "d2l-b32-kaiming", "book")
    assert set(runs) == {(recipe, seed) for recipe in arms for seed in (0, 1, 2)}
    for h in runs.values():
        assert len(h["test_acc"]) == 1 and h["n_train"] == s["n_train"]
        assert h["n_test"] == s["n_test"] and all(t > 0 for t in h["seconds"])
    # what the chapter says of it: this book's recipe leaves the plateau with every seed
    book = [h for (recipe, _), h in runs.items() if recipe == "book"]
    assert all(h["step_loss"][-1] < 2.0 and h["test_acc"][-1] > 0.3 for h in book)
    # ... and four times the steps leave d2l's recipe on it, with every seed
    for arm in ("d2l", "d2l-b32"):
        assert all(abs(h["step_loss"][-1] - 2.303) < 0.05 and h["test_acc"][-1] < 0.15
                   for (recipe, _), h in runs.items() if recipe == arm)
