import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("seed_style") / "lenet_seed.py"


def test_seed_script_runs_with_only_its_import_changed(raw_dir, tmp_path):
    """The seed's root '~/Datasets/FashionMNIST' is empty here: the data must be
    found offline (Debian's package), over all 60,000 training images."""
    text = SCRIPT.read_text()
    code = [l for l in text.splitlines() if not l.startswith("#")]
    assert "import d2lutils as d2l" in code and not any("d2lzh" in l for l in code)
    env = {**os.environ, "HOME": str(tmp_path), "D2L_CACHE": str(raw_dir.parent.parent),
           "D2L_PROGRESS": "0", "PYTHONPATH": str(Path(__file__).parents[1])}
    env.pop("D2L_FASHION_MNIST", None)
    r = subprocess.run([sys.executable, str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert "fc output shape:  torch.Size([1, 10])" in out
    assert "torch.Size([1, 10, 1, 1])" in out
    assert "X = torch.Size([256, 1, 28, 28])" in out
    assert "60000 train / 10000 test images" in out
    line = [l for l in out.splitlines() if l.startswith("epoch 1,")][0]
    test_acc = float(line.split("test acc ")[1].split(",")[0])
    assert 0.1 < test_acc <= 1.0
