"""The benchmark script runs end to end and writes the JSON the performance page reads.

Not a timed test: it checks that the figures exist and are sane, not how large they are.
"""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_quick_writes_report(tmp_path):
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--quick",
                           "--nets", "LeNet", "--options-net", "LeNet", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["mode"] == "quick"
    assert report["malloc_env"] == {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}
    (run,) = report["runs"]
    assert run["net"] == "LeNet" and run["input"] == 28
    for key in ("data_seed_img_s", "data_book_img_s", "data_write_bound_img_s", "train_seed_img_s",
                "train_book_img_s", "train_compute_img_s"):
        assert run[key] > 0, key
    assert run["data_speedup"] == run["data_book_img_s"] / run["data_seed_img_s"]
    assert 0 < run["fraction_of_peak"] < 1
    options = {(o["option"], o["other"]): o for o in report["options"]}
    assert options[("channels_last", "off")]["ratio"] > 0
    for mode in ("no_grad", "autograd"):
        o = options[("evaluation under inference_mode", f"off ({mode})")]
        assert o["ratio"] == o["default_img_s"] / o["other_img_s"]
    assert options[("torch.compile", "on")]["ratio"] is None  # not measured under --quick
    # The committed report has every field the performance page prints.
    committed = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
    assert committed
    latest = json.loads(committed[-1].read_text())
    assert set(run) <= set(latest["runs"][0]), set(run) - set(latest["runs"][0])
    assert {o["option"] for o in latest["options"]} >= {o["option"] for o in report["options"]}
