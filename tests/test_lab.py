"""The lab page (book/lab.md): the LeNet chapter's two trained nets and the VGG chapter's
VGG-11 ÷8, exported with ``d2l.export_onnx``, run in headless Chromium by onnxruntime-web
served from the site.

The page's probabilities and occlusion map must equal PyTorch's (the occlusion code is the
ZFNet chapter's own function, read from the notebook; VGG's with its float16-stored weights
and the data pipeline's own resize from 28 to 224 px); the page must ask nothing of any
host but 127.0.0.1, show its first prediction within 5 s, and say clearly when a model
file is missing or corrupt. The fast tests check the committed files against the stored
runs, the 8 MB budget and the real test set, and ``export_onnx``'s options and errors.

The tests that need VGG's model fail (they do not skip) until it is exported: it needs the
VGG chapter's cpu checkpoint, and then ``PYTHONPATH=. python book/_ext/lab_export.py``."""

from __future__ import annotations

import copy
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
RECIPES = {"lenet": models.LENET, "lenet-sigmoid": models.LENET_SIGMOID, "vgg11-div8": models.VGG11_DIV8}
LENETS = ["lenet", "lenet-sigmoid"]
VGG = "vgg11-div8"
FIVE = [0, 7, 13, 21, 29]          # positions in images.json: five classes
TOL = 1e-3
EXPORT = ("PYTHONPATH=. python book/_ext/lab_export.py (after the VGG chapter, notebooks/04_vgg.ipynb, "
          "has stored its cpu run: notebooks/checkpoints/vgg11-div8-cpu.pt)")


def entry(key: str) -> dict:
    """The manifest's entry for ``key``, its file present; else the test fails, saying how to make it."""
    found = [m for m in MANIFEST["models"] if m["key"] == key]
    if not found:
        pytest.fail(f"book/_static/lab/models/manifest.json has no {key!r} model: {EXPORT}")
    if not (LAB / found[0]["file"]).is_file():
        pytest.fail(f"book/_static/lab/{found[0]['file']} is missing: {EXPORT}")
    return found[0]


class _At28(nn.Module):
    """A net trained at ``side`` px, fed the 28 px image resized as the data pipeline does."""

    def __init__(self, net: nn.Module, side: int):
        super().__init__()
        self.net, self.side = net, side

    def forward(self, x):
        return self.net(d2l.resize_bilinear(x, self.side))


def onnx_weights(key: str) -> dict[str, torch.Tensor]:
    """The net's weights as stored in the lab's ONNX file (float16 ones widened, as the
    model's Cast nodes do), by their names in the net."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(LAB / entry(key)["file"]))
    return {i.name.removeprefix("net.").removesuffix(".fp16"):
            torch.from_numpy(numpy_helper.to_array(i).astype(np.float32))
            for i in model.graph.initializer if i.name.startswith("net.")}


def torch_net(key: str) -> nn.Module:
    """The chapter's net with the weights stored in the lab's ONNX file, taking the page's
    28 px image (VGG: resized to 224 px by ``d2l.resize_bilinear``, as in training)."""
    net = RECIPES[key].net()
    net.load_state_dict(onnx_weights(key))
    side = RECIPES[key].resize
    return (net if side is None else _At28(net, side)).eval()


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

@pytest.mark.parametrize("key", list(RECIPES))
def test_model_matches_the_manifest_and_its_stored_run(key):
    m = entry(key)
    data = (LAB / m["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == m["sha256"] and len(data) == m["bytes"]
    assert m["run"]["file"] == f"notebooks/runs/{m['recipe']}-cpu.json", \
        f"{key} comes from {m['run']['file']}, not a chapter's cpu run: {EXPORT}"
    run = json.loads((ROOT / m["run"]["file"]).read_text())
    assert m["run"]["profile"] == run["profile"] == "cpu"
    assert (m["run"]["device"], m["run"]["n_train"], m["run"]["n_test"]) == \
           (run["device"], run["n_train"], run["n_test"])
    assert m["run"]["epochs"] == len(run["epoch"]) and m["run"]["test_acc"] == run["test_acc"][-1], \
        f"{m['run']['file']} changed: re-export the lab's models (PYTHONPATH=. python book/_ext/lab_export.py)"
    assert m["params"] == d2l.count_params(RECIPES[key].net())
    stored = onnx_weights(key)
    if key == VGG:  # float16 weights: checked on the whole test set at export
        import onnx

        halves = [i.name for i in onnx.load(str(LAB / m["file"])).graph.initializer
                  if i.name.startswith("net.") and i.data_type == onnx.TensorProto.FLOAT16]
        assert len(halves) == len(stored) and m["params"] == 2_018_346
        c = m["fp16_check"]
        assert c["n_test"] == 10_000 and c["test_acc_fp16"] >= c["test_acc_fp32"] - 0.002, c
        if run["n_test"] == 10_000:  # the float32 weights reproduce the run's own test accuracy
            assert abs(c["test_acc_fp32"] - run["test_acc"][-1]) <= 0.002, c
        assert (m["input"], m["net_input"]) == ([1, 28, 28], [1, 224, 224])
    ckpt = ROOT / "notebooks" / "checkpoints" / f"{m['recipe']}-cpu.pt"
    if ckpt.exists():  # not committed: checked where the chapter has run
        net = RECIPES[key].net()
        state = d2l.load_weights(ckpt, net)
        assert state["history"]["test_acc"] == run["test_acc"], f"{ckpt} is another run"
        if key == VGG:
            d2l.fp16_rounded(net)
        for k, a in net.state_dict().items():
            assert torch.equal(a, stored[k]), k


def test_committed_weights_fit_in_8_mb():
    # every model the page lists, VGG's included (it fails, saying how, until it is exported)
    entry(VGG)
    total = sum((LAB / m["file"]).stat().st_size for m in MANIFEST["models"])
    assert total <= 8_000_000, f"the lab's models take {total:,} bytes; the budget is 8 MB"
    assert sum(p.stat().st_size for p in (LAB / "models").iterdir()) == total + \
        (LAB / "models" / "manifest.json").stat().st_size, "files in models/ the manifest does not list"


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
    big = copy.deepcopy(net)
    with torch.no_grad():
        big[0].weight[0, 0, 0, 0] = 1e5
    for kwargs, match in [
        (dict(resize_from=32), "larger than the net's input"),
        (dict(resize_from="28"), "resize_from must be"),
        (dict(resize_from=(28, 0)), "resize_from must be"),
        (dict(resize_from=28, input_shape=(28, 28)), "needs an input_shape of"),
        (dict(fp16_weights="yes"), "fp16_weights must be"),
        (dict(net=big, fp16_weights=True), "beyond float16"),
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


def test_export_onnx_resizes_inside_and_stores_fp16_weights(tmp_path):
    """A net trained at 56 px, exported to take 28 px (resized as load_data_fashion_mnist
    does) with float16 weights: the model computes what the net does on the resized image
    with float16-rounded weights, and the net itself is left as it was."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(4 * 28 * 28, 10))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    p32 = d2l.export_onnx(net, tmp_path / "n32.onnx", (1, 1, 56, 56), softmax=True, resize_from=28,
                          taps={"pool": net[2]})
    p16 = d2l.export_onnx(net, tmp_path / "n16.onnx", (1, 1, 56, 56), softmax=True, resize_from=28,
                          taps={"pool": net[2]}, fp16_weights=True)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # not rounded in place
    assert p16.stat().st_size < 0.6 * p32.stat().st_size
    model = onnx.load(str(p16))
    assert model.graph.input[0].type.tensor_type.shape.dim[2].dim_value == 28
    kinds = {i.name: i.data_type for i in model.graph.initializer}
    assert {k for k, t in kinds.items() if t == onnx.TensorProto.FLOAT16} == \
           {f"net.{k}.fp16" for k, _ in net.named_parameters()}
    x = torch.rand(3, 1, 28, 28)
    rounded = d2l.fp16_rounded(copy.deepcopy(net)).eval()
    with torch.no_grad():
        x56 = d2l.resize_bilinear(x, 56)
        for path, ref in [(p32, net.eval()), (p16, rounded)]:
            probs, pool = ReferenceEvaluator(str(path)).run(None, {"input": x.numpy()})
            assert np.allclose(probs, F.softmax(ref(x56), 1).numpy(), atol=1e-6), path.name
            assert np.allclose(pool, ref[:3](x56).numpy(), atol=1e-5), path.name
        assert not torch.equal(rounded[0].weight, net[0].weight)  # the rounding is real


# ---- the page in Chromium ---------------------------------------------------------------

@pytest.fixture(scope="module")
def site() -> Path:
    if not (SITE / "index.html").exists():  # `make test` builds it first; build here if run alone
        subprocess.run([sys.executable, "-m", "jupyter_book", "build", str(ROOT), "-W", "-n",
                        "--keep-going"], cwd=ROOT)
    built = SITE / "_static" / "lab"
    stale = [f for f in LAB.rglob("*") if f.is_file() and not (
        (built / f.relative_to(LAB)).is_file() and (built / f.relative_to(LAB)).read_bytes() == f.read_bytes())]
    if stale or not (built / "ort" / "ort.wasm.min.js").exists():  # the page's files as committed
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


@pytest.fixture(scope="module")
def lab_page(server, browser):
    """One page for the comparisons (opening the lab takes seconds on a busy CPU)."""
    page = _open_lab(browser, server)
    yield page
    page.close()


def _page_probs(page, pos: int, keys) -> dict[str, list[float]]:
    page.evaluate("async (i) => { await window.classicCnnsLab.select(i); }", pos)
    return {k: json.loads(page.get_attribute(f'.lab-result[data-model="{k}"]', "data-probs"))
            for k in keys}


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("key", list(RECIPES))
def test_page_probabilities_equal_pytorch(lab_page, key):
    entry(key)
    page, net = lab_page, torch_net(key)
    worst = 0.0
    for pos in FIVE:
        got = _page_probs(page, pos, [key])[key]
        with torch.no_grad():
            want = F.softmax(net(image(pos)), 1)[0].numpy()
        diff = float(np.abs(np.array(got) - want).max())
        worst = max(worst, diff)
        assert diff <= TOL, f"{key}, test image {IMAGES['index'][pos]}: max abs diff {diff:.2e}"
    # the page says which net predicted what, and how long it took
    card = page.text_content(f'.lab-result[data-model="{key}"]')
    assert "ms in your browser" in card and entry(key)["title"] in card
    ms = page.evaluate("(k) => window.classicCnnsLab.timings[k]", key)
    print(f"{key}: max abs diff over {len(FIVE)} images {worst:.2e}; {ms:.1f} ms per image in Chromium")


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("key", list(RECIPES))
def test_occlusion_map_equals_the_zfnet_chapters_code(lab_page, key):
    entry(key)
    page = lab_page
    occlusion_map = chapter_occlusion_map()
    occ = MANIFEST["occlusion"]
    pos = 13
    page.evaluate("async (i) => { await window.classicCnnsLab.select(i); }", pos)
    page.select_option("#lab-occ-model", key)
    page.evaluate("() => window.classicCnnsLab.computeOcclusionMap()")
    assert page.get_attribute("#lab-occ-map", "data-model") == key
    got = np.array(json.loads(page.get_attribute("#lab-occ-map", "data-map")))
    label = IMAGES["label"][pos]
    want = occlusion_map(torch_net(key), image(pos), label, patch=occ["patch"], stride=occ["stride"])
    assert want.shape == (12, 12) and got.size == 144
    diff = float(np.abs(got.reshape(12, 12) - want.numpy()).max())
    assert diff <= TOL, f"{key}: occlusion map differs by {diff:.2e}"
    info = page.text_content("#lab-occ-map-info")
    if key == VGG:  # in batches, a row at a time
        assert "12 batches of 12" in info, info
    ms = float(page.get_attribute("#lab-occ-map", "data-ms"))
    print(f"{key}: occlusion map (144 positions) in {ms:.0f} ms in Chromium; max abs diff {diff:.2e}")
    # dragging the square changes the live probability
    page.locator("#lab-occ-canvas").scroll_into_view_if_needed()
    box = page.locator("#lab-occ-canvas").bounding_box()
    page.mouse.move(box["x"] + 30, box["y"] + 30)
    page.mouse.down()
    page.mouse.up()
    page.wait_for_function("() => document.querySelector('#lab-occ-prob').textContent.includes('row 0, column 0')")
    before = page.get_attribute("#lab-occ-prob", "data-prob")
    page.mouse.move(box["x"] + 30, box["y"] + 30)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.6, steps=5)
    page.mouse.up()
    page.wait_for_function("(b) => document.querySelector('#lab-occ-prob').dataset.prob !== b", arg=before)
    # the live probability with the square in the map's first cell is the map's
    page.mouse.move(box["x"] + 30, box["y"] + 30)
    page.mouse.down()
    page.mouse.up()
    page.wait_for_function("() => document.querySelector('#lab-occ-prob').textContent.includes('row 0, column 0')")
    assert abs(float(page.get_attribute("#lab-occ-prob", "data-prob")) - got[0]) <= TOL


@pytest.mark.slow
@pytest.mark.browser
def test_inside_the_net_reads_each_taps_shape(lab_page):
    entry(VGG)
    page = lab_page
    shapes = {"lenet": (6, 28, 16, 10), VGG: (8, 112, 16, 56)}
    for key, (c1, s1, c2, s2) in shapes.items():
        page.select_option("#lab-inside-model", key)
        page.wait_for_function("(k) => document.querySelector('#lab-inside-maps').dataset.model === k", arg=key)
        assert page.locator("#lab-conv1 canvas").count() == c1 and page.locator("#lab-conv2 canvas").count() == c2
        assert page.get_attribute("#lab-conv1", "data-shape") == f"1x{c1}x{s1}x{s1}"
        text = page.text_content("#lab-inside-maps")
        assert f"{c1} maps, {s1} × {s1}" in text and f"{c2} maps, {s2} × {s2}" in text


@pytest.mark.slow
@pytest.mark.browser
def test_no_request_leaves_localhost_and_first_prediction_within_5s(server, browser):
    entry(VGG)  # the page with its bigger net: the LeNets must still answer within 5 s
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
    page.wait_for_selector(f'.lab-result[data-model="{VGG}"][data-probs]', timeout=30_000)
    vgg_first = page.evaluate("() => performance.now()")
    page.evaluate("() => window.classicCnnsLab.ready")
    marks = page.evaluate("() => window.classicCnnsLab.marks")
    # everything else the page does: draw, occlude, the whole map, the feature maps of every net
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
    for key in ["lenet-sigmoid", VGG]:
        page.select_option("#lab-inside-model", key)
        page.wait_for_function("(k) => document.querySelector('#lab-inside-maps').dataset.model === k", arg=key)
    page.select_option("#lab-occ-model", VGG)
    page.evaluate("() => window.classicCnnsLab.computeOcclusionMap()")
    page.wait_for_load_state("networkidle")
    outside = [u for u in requests if urlparse(u).scheme not in ("data", "blob")
               and urlparse(u).hostname != "127.0.0.1"]
    assert not outside, f"requests outside 127.0.0.1: {outside}"
    assert any(u.endswith(".wasm") for u in requests) and any(u.endswith(f"{VGG}.onnx") for u in requests)
    assert not problems, problems
    runs, about = page.text_content("#lab-runs"), page.text_content("#lab-about")
    for m in MANIFEST["models"]:  # the page says which run the weights come from
        assert f"{m['run']['test_acc']:.4f}" in runs and m["run"]["device"] in runs
        assert m["run"]["file"] in about and f"{m['run']['n_train']:,}" in about and m["run"]["profile"] in about
    c = entry(VGG)["fp16_check"]
    assert f"{c['test_acc_fp16']:.4f}" in about and f"{c['test_acc_fp32']:.4f}" in about
    assert page.locator('#lab-about a[href$="notebooks/04_vgg.html"]').count() == 1
    print(f"first prediction {first:.0f} ms after navigation, VGG's by {vgg_first:.0f} ms; marks {marks}; "
          f"{len(requests)} requests, all to 127.0.0.1")
    page.close()


@pytest.mark.slow
@pytest.mark.browser
def test_the_lab_grows_the_site_by_at_most_20_mb(site):
    entry(VGG)
    size = sum(f.stat().st_size for f in (site / "_static" / "lab").rglob("*") if f.is_file())
    assert size <= 20_000_000, f"the lab takes {size:,} bytes of the site (runtime, models, images)"
    print(f"the lab takes {size / 1e6:.1f} MB of the site")


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
    for key in LENETS:
        assert page.get_attribute(f'#lab-runs tr[data-model="{key}"] .lab-status', "data-status") == "error"
        card = page.locator(f'.lab-result[data-model="{key}"] [role="alert"]')
        assert card.count() == 1 and "could not be loaded" in card.text_content()
    page.select_option("#lab-occ-model", "lenet")
    page.wait_for_function("() => document.querySelector('#lab-occ-prob').textContent.includes('could not be loaded')")
    page.select_option("#lab-inside-model", "lenet")
    page.wait_for_function("() => document.querySelector('#lab-inside-maps').textContent.includes('could not be loaded')")
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


@pytest.mark.slow
@pytest.mark.browser
def test_missing_or_corrupt_vgg_model_leaves_the_lenets_running(broken_site, browser):
    m = entry(VGG)
    lab, url = broken_site
    vgg = lab / m["file"]
    good = vgg.read_bytes()
    for damage, words in [(lambda: vgg.unlink(), ["vgg11-div8.onnx", "missing"]),
                          (lambda: vgg.write_bytes(good[:len(good) // 2]), ["vgg11-div8.onnx is corrupt"])]:
        damage()
        page = _open_lab(browser, url)
        alerts = page.locator('#lab-runs [role="alert"]').all_text_contents()
        assert any(m["title"] in a and all(w in a for w in words) for a in alerts), alerts
        assert page.get_attribute(f'#lab-runs tr[data-model="{VGG}"] .lab-status', "data-status") == "error"
        card = page.locator(f'.lab-result[data-model="{VGG}"] [role="alert"]')
        assert card.count() == 1 and "could not be loaded" in card.text_content()
        for key in LENETS:  # the LeNets still predict
            assert page.get_attribute(f'.lab-result[data-model="{key}"]', "data-probs")
        page.select_option("#lab-occ-model", VGG)
        page.wait_for_function("() => document.querySelector('#lab-occ-prob').textContent.includes('could not be loaded')")
        assert page.evaluate("() => window.classicCnnsLab.computeOcclusionMap()") is None
        assert "could not be loaded" in page.text_content("#lab-occ-map-info")
        page.select_option("#lab-inside-model", VGG)
        page.wait_for_function("() => document.querySelector('#lab-inside-maps').textContent.includes('could not be loaded')")
        page.close()
