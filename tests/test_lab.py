"""The lab page (book/lab.md): the LeNet chapter's trained nets, exported with
``d2l.export_onnx``, run in headless Chromium by onnxruntime-web served from the site.

The page's probabilities and occlusion map must equal PyTorch's (the occlusion code is the
ZFNet chapter's own function, read from the notebook); the page must ask nothing of any
host but 127.0.0.1, show its first prediction within 5 s, and say clearly when a model
file is missing or corrupt. The fast tests check the committed files against the stored
runs and the real test set, and ``export_onnx``'s errors."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urljoin, urlparse

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import d2lutils as d2l
from d2lutils import models

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "html"
LAB = ROOT / "book" / "_static" / "lab"
MANIFEST = json.loads((LAB / "models" / "manifest.json").read_text())
IMAGES = json.loads((LAB / "images.json").read_text())
RECIPES = {"lenet": models.LENET, "lenet-sigmoid": models.LENET_SIGMOID}
FIVE = [0, 7, 13, 21, 29]          # positions in images.json: five classes
TOL = 1e-3


def torch_net(key: str) -> nn.Module:
    """The chapter's net with the weights stored in the lab's ONNX file."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(LAB / "models" / f"{key}.onnx"))
    weights = {i.name.removeprefix("net."): torch.from_numpy(numpy_helper.to_array(i).copy())
               for i in model.graph.initializer}
    net = RECIPES[key].net()
    net.load_state_dict(weights)
    return net.eval()


def image(pos: int) -> torch.Tensor:
    return torch.tensor(IMAGES["pixels"][pos], dtype=torch.float32).view(1, 1, 28, 28) / 255


def chapter_occlusion_map():
    """``occlusion_map`` as the ZFNet chapter defines it (its cell's source, run here)."""
    nb = json.loads((ROOT / "notebooks" / "03_zfnet.ipynb").read_text())
    src = next("".join(c["source"]) for c in nb["cells"]
               if c["cell_type"] == "code" and "def occlusion_map(" in "".join(c["source"]))
    code = src.split("\nt0 = ", 1)[0]
    scope = {"torch": torch, "F": F}
    exec(compile(code, "03_zfnet.ipynb:occlusion_map", "exec"), scope)
    return scope["occlusion_map"]


# ---- the committed files -------------------------------------------------------------

def test_models_match_the_manifest_and_the_stored_runs():
    total = 0
    assert [m["key"] for m in MANIFEST["models"]] == ["lenet", "lenet-sigmoid"]
    for m in MANIFEST["models"]:
        data = (LAB / m["file"]).read_bytes()
        total += len(data)
        assert hashlib.sha256(data).hexdigest() == m["sha256"] and len(data) == m["bytes"]
        run = json.loads((ROOT / m["run"]["file"]).read_text())
        assert m["run"]["file"] == f"notebooks/runs/{m['recipe']}-cpu.json"
        assert m["run"]["profile"] == run["profile"] == "cpu"
        assert (m["run"]["device"], m["run"]["n_train"], m["run"]["n_test"]) == \
               (run["device"], run["n_train"], run["n_test"])
        assert m["run"]["epochs"] == len(run["epoch"]) and m["run"]["test_acc"] == run["test_acc"][-1], \
            f"{m['run']['file']} changed: re-export the lab's models (PYTHONPATH=. python book/_ext/lab_export.py)"
        ckpt = ROOT / "notebooks" / "checkpoints" / f"{m['recipe']}-cpu.pt"
        if ckpt.exists():  # not committed: checked where the chapter has run
            net = RECIPES[m["key"]].net()
            state = d2l.load_weights(ckpt, net)
            assert state["history"]["test_acc"] == run["test_acc"], f"{ckpt} is another run"
            for (k, a), b in zip(net.state_dict().items(), torch_net(m["key"]).state_dict().values()):
                assert torch.equal(a, b), k
    assert total <= 8 * 2**20


def test_images_are_the_real_test_set_balanced():
    images, labels = d2l.read_fashion_mnist(train=False)
    assert len(IMAGES["index"]) == 30 and IMAGES["classes"] == list(d2l.TEXT_LABELS)
    assert np.bincount(IMAGES["label"], minlength=10).tolist() == [3] * 10
    for i, lab, px in zip(IMAGES["index"], IMAGES["label"], IMAGES["pixels"]):
        assert int(labels[i]) == lab and images[i].flatten().tolist() == px
    occ = MANIFEST["occlusion"]
    assert (occ["patch"] * 8, occ["stride"] * 8, occ["fill"]) == (48, 16, 0.0)  # the chapter's, at 224 px


def test_export_onnx_matches_pytorch_and_rejects_bad_arguments(tmp_path):
    from onnx.reference import ReferenceEvaluator

    torch.manual_seed(0)
    net = models.lenet(nn.ReLU, nn.MaxPool2d)
    path = d2l.export_onnx(net, tmp_path / "sub" / "n.onnx", (1, 1, 28, 28), softmax=True,
                           taps={"conv1": net[1], "conv2": "4"})
    x = torch.rand(3, 1, 28, 28)
    probs, c1, c2 = ReferenceEvaluator(str(path)).run(None, {"input": x.numpy()})
    with torch.no_grad():
        assert np.allclose(probs, F.softmax(net(x), 1).numpy(), atol=1e-5)
        assert np.allclose(c1, net[:2](x).numpy(), atol=1e-5)
        assert np.allclose(c2, net[:5](x).numpy(), atol=1e-5)
    assert net.training  # its mode is restored
    for kwargs, match in [
        (dict(net="lenet"), "net must be a torch.nn.Module"),
        (dict(input_shape=(1, 1, 0, 28)), "input_shape"),
        (dict(input_shape="1x28x28"), "input_shape"),
        (dict(input_shape=(1, 1, 32, 32)), "fails on an input of shape"),
        (dict(taps={"conv1": nn.ReLU()}), "submodule of net"),
        (dict(taps={"conv1": "99"}), "no submodule '99'"),
        (dict(taps={"logits": net[1]}), "tap names"),
        (dict(opset=3), "opset"),
        (dict(path=""), "path"),
    ]:
        args = dict(net=net, path=tmp_path / "x.onnx", input_shape=(1, 1, 28, 28)) | kwargs
        with pytest.raises(d2l.ArgumentError, match=match):
            d2l.export_onnx(args.pop("net"), args.pop("path"), args.pop("input_shape"), **args)


# ---- the page in Chromium ---------------------------------------------------------------

@pytest.fixture(scope="module")
def site() -> Path:
    if not (SITE / "index.html").exists():  # `make test` builds it first; build here if run alone
        subprocess.run([sys.executable, "-m", "jupyter_book", "build", str(ROOT), "-W", "-n",
                        "--keep-going"], cwd=ROOT)
    if not (SITE / "_static" / "lab" / "ort" / "ort.wasm.min.js").exists():
        subprocess.run([sys.executable, str(ROOT / "book" / "_ext" / "lab_build.py")], check=True, cwd=ROOT)
    return SITE


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _serve(directory: Path):
    handler = functools.partial(_QuietHandler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"


@pytest.fixture(scope="module")
def server(site):
    httpd, url = _serve(site)
    yield url
    httpd.shutdown()


def _open_lab(browser, base: str, requests: list | None = None, problems: list | None = None):
    page = browser.new_page()
    if requests is not None:
        page.on("request", lambda r: requests.append(r.url))
    if problems is not None:
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.goto(urljoin(base, "book/lab.html"))
    page.wait_for_function("() => window.classicCnnsLab && window.classicCnnsLab.ready", timeout=15_000)
    page.evaluate("() => window.classicCnnsLab.ready")
    return page


def _page_probs(page, pos: int) -> dict[str, list[float]]:
    page.evaluate("async (i) => { await window.classicCnnsLab.select(i); }", pos)
    return {k: json.loads(page.get_attribute(f'.lab-result[data-model="{k}"]', "data-probs"))
            for k in RECIPES}


@pytest.mark.slow
@pytest.mark.browser
def test_page_probabilities_equal_pytorch(server, browser):
    page = _open_lab(browser, server)
    nets = {k: torch_net(k) for k in RECIPES}
    worst = 0.0
    for pos in FIVE:
        got = _page_probs(page, pos)
        for key, net in nets.items():
            with torch.no_grad():
                want = F.softmax(net(image(pos)), 1)[0].numpy()
            diff = float(np.abs(np.array(got[key]) - want).max())
            worst = max(worst, diff)
            assert diff <= TOL, f"{key}, test image {IMAGES['index'][pos]}: max abs diff {diff:.2e}"
    # the page says which net predicted what, and how long it took
    text = page.text_content("#lab-predict")
    assert "ms in your browser" in text
    print(f"max abs diff over {len(FIVE)} images x 2 nets: {worst:.2e}")
    page.close()


@pytest.mark.slow
@pytest.mark.browser
def test_occlusion_map_equals_the_zfnet_chapters_code(server, browser):
    page = _open_lab(browser, server)
    occlusion_map = chapter_occlusion_map()
    occ = MANIFEST["occlusion"]
    pos = 13
    page.evaluate("async (i) => { await window.classicCnnsLab.select(i); }", pos)
    for key in RECIPES:
        page.select_option("#lab-occ-model", key)
        page.evaluate("() => window.classicCnnsLab.computeOcclusionMap()")
        assert page.get_attribute("#lab-occ-map", "data-model") == key
        got = np.array(json.loads(page.get_attribute("#lab-occ-map", "data-map")))
        label = IMAGES["label"][pos]
        want = occlusion_map(torch_net(key), image(pos), label, patch=occ["patch"], stride=occ["stride"])
        assert want.shape == (12, 12) and got.size == 144
        diff = float(np.abs(got.reshape(12, 12) - want.numpy()).max())
        assert diff <= TOL, f"{key}: occlusion map differs by {diff:.2e}"
    # dragging the square changes the live probability
    page.locator("#lab-occ-canvas").scroll_into_view_if_needed()
    box = page.locator("#lab-occ-canvas").bounding_box()
    before = page.get_attribute("#lab-occ-prob", "data-prob")
    page.mouse.move(box["x"] + 30, box["y"] + 30)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.6, steps=5)
    page.mouse.up()
    page.wait_for_function("(b) => document.querySelector('#lab-occ-prob').dataset.prob !== b", arg=before)
    page.close()


@pytest.mark.slow
@pytest.mark.browser
def test_no_request_leaves_localhost_and_first_prediction_within_5s(server, browser):
    requests: list[str] = []
    problems: list[str] = []
    page = browser.new_page()
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.goto(urljoin(server, "book/lab.html"))
    page.wait_for_selector("#lab-predict[data-first-prediction-ms]", timeout=5_000)
    first = float(page.get_attribute("#lab-predict", "data-first-prediction-ms"))  # ms since navigation start
    assert first <= 5_000, f"first prediction after {first:.0f} ms"
    # everything else the page does: draw, occlude, the whole map, the feature maps of both nets
    page.click("#lab-clear")
    page.locator("#lab-canvas").scroll_into_view_if_needed()
    box = page.locator("#lab-canvas").bounding_box()
    page.mouse.move(box["x"] + 90, box["y"] + 60)
    page.mouse.down()
    for x, y in [(190, 60), (190, 240), (90, 240), (90, 60)]:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=6)
    page.mouse.up()
    page.evaluate("() => window.classicCnnsLab.lastRound")
    assert "your drawing" in page.text_content("#lab-caption")
    assert page.locator("#lab-conv1 canvas").count() == 6 and page.locator("#lab-conv2 canvas").count() == 16
    page.select_option("#lab-inside-model", "lenet-sigmoid")
    page.wait_for_function("() => document.querySelectorAll('#lab-conv2 canvas').length === 16")
    page.evaluate("() => window.classicCnnsLab.computeOcclusionMap()")
    page.wait_for_load_state("networkidle")
    outside = [u for u in requests if urlparse(u).scheme not in ("data", "blob")
               and urlparse(u).hostname != "127.0.0.1"]
    assert not outside, f"requests outside 127.0.0.1: {outside}"
    assert any(u.endswith(".wasm") for u in requests) and any(u.endswith(".onnx") for u in requests)
    assert not problems, problems
    runs = page.text_content("#lab-runs")
    for m in MANIFEST["models"]:  # the page says which run the weights come from
        assert f"{m['run']['test_acc']:.4f}" in runs and m["run"]["device"] in runs
    print(f"first prediction {first:.0f} ms after navigation; {len(requests)} requests, all to 127.0.0.1")
    page.close()


@pytest.fixture()
def broken_site(site, tmp_path):
    """A copy of the site whose lab models can be removed or damaged."""
    dst = tmp_path / "html"
    shutil.copytree(site, dst, ignore=shutil.ignore_patterns("downloads", "_images", "screenshots"))
    httpd, url = _serve(dst)
    yield dst / "_static" / "lab", url
    httpd.shutdown()


@pytest.mark.slow
@pytest.mark.browser
def test_missing_or_corrupt_model_shows_a_clear_message(broken_site, browser):
    lab, url = broken_site
    (lab / "models" / "lenet.onnx").unlink()
    onnx_file = lab / "models" / "lenet-sigmoid.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:5000])
    page = _open_lab(browser, url)
    alerts = page.locator('#lab-runs [role="alert"]').all_text_contents()
    title = MANIFEST["models"][0]["title"]
    assert any(title in a and "lenet.onnx" in a and "missing" in a for a in alerts), alerts
    assert any("lenet-sigmoid.onnx is corrupt" in a for a in alerts), alerts
    for key in RECIPES:
        assert page.get_attribute(f'#lab-runs tr[data-model="{key}"] .lab-status', "data-status") == "error"
        card = page.locator(f'.lab-result[data-model="{key}"] [role="alert"]')
        assert card.count() == 1 and "could not be loaded" in card.text_content()
    assert "could not be loaded" in page.text_content("#lab-occ-prob")
    assert "could not be loaded" in page.text_content("#lab-conv1")
    page.close()

    # bytes that pass the checksum but are no ONNX model: the runtime's own error, named
    manifest = json.loads((lab / "models" / "manifest.json").read_text())
    garbage = b"not an onnx model" * 100
    (lab / "models" / "lenet.onnx").write_bytes(garbage)
    manifest["models"][0]["sha256"] = hashlib.sha256(garbage).hexdigest()
    (lab / "models" / "manifest.json").write_text(json.dumps(manifest))
    page = _open_lab(browser, url)
    alert = page.locator('.lab-result[data-model="lenet"] [role="alert"]').text_content()
    assert "lenet.onnx could not be read as an ONNX model" in alert
    page.close()

    # no manifest at all: every panel says what is wrong and how to rebuild
    (lab / "models" / "manifest.json").unlink()
    page = browser.new_page()
    page.goto(urljoin(url, "book/lab.html"))
    page.wait_for_selector("#lab-predict .lab-error", timeout=15_000)
    assert "make book" in page.text_content("#lab-predict")
    page.close()
