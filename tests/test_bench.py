"""The benchmark script runs end to end and writes the JSON the performance page reads.

Not a timed test: it checks that the figures exist and are consistent, not how large
they are; the committed full run is checked for what the book says of it.
"""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_quick_writes_report(tmp_path):
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--quick",
                           "--nets", "LeNet", "--options-net", "LeNet", "--ddp-net", "LeNet",
                           "--no-lrn", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["mode"] == "quick"
    assert report["malloc_env"] == {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}
    assert report["matmul"]["flops"] > 1e9
    (run,) = report["runs"]
    assert run["net"] == "LeNet" and run["input"] == 28
    for key in ("data_seed_img_s", "data_book_img_s", "data_write_bound_img_s", "train_seed_img_s",
                "train_book_img_s", "train_compute_img_s"):
        assert run[key] > 0, key
    lo, hi = run["train_book_spread"]
    assert lo <= run["train_book_img_s"] <= hi
    assert run["data_speedup"] == run["data_book_img_s"] / run["data_seed_img_s"]
    assert run["fraction_of_matmul"] == run["train_flops_per_s"] / report["matmul"]["flops"]
    options = {(o["option"], o["other"]): o for o in report["options"]}
    assert options[("channels_last", "off")]["ratio"] > 0
    for mode in ("no_grad", "autograd"):
        o = options[("evaluation under inference_mode", f"off ({mode})")]
        assert o["ratio"] == o["default_img_s"] / o["other_img_s"]
    assert options[("torch.compile", "on")]["ratio"] is None  # not measured under --quick
    procs = report["processes"]["runs"]
    assert procs["1 process x 2 threads"]["threads"] == 2 and procs["2 processes x 1 thread"]["world"] == 2
    assert report["processes"]["ratio"] > 0


def test_committed_full_run_has_what_the_performance_page_reads():
    committed = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
    assert committed
    latest = json.loads(committed[-1].read_text())
    assert latest["mode"] == "full" and latest["timing"]["repeats"] >= 3
    assert {r["net"] for r in latest["runs"]} == {"LeNet", "AlexNet", "ZFNet", "VGG-11/8", "NiN", "GoogLeNet"}
    for r in latest["runs"]:
        assert 0 < r["fraction_of_matmul"] < 1.5 and r["train_book_spread"][0] > 0
    # what issue 13 asked of the faster LRN, and the book says: ZFNet at least 1.4x as fast
    assert latest["lrn"]["speedup"] >= 1.4
    assert latest["processes"]["net"] == "AlexNet"
