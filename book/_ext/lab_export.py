"""Write the lab page's models and test images into ``book/_static/lab/`` (committed).

Run after the LeNet and VGG chapters have stored their ``cpu`` runs (it needs their
checkpoints in ``notebooks/checkpoints/``, which are not committed)::

    PYTHONPATH=. python book/_ext/lab_export.py

* ``models/lenet.onnx``, ``models/lenet-sigmoid.onnx``: the LeNet chapter's ``lenet`` (ReLU,
  max pooling, Adam) and ``lenet-sigmoid`` (the 1998 net: sigmoid, average pooling, SGD lr
  0.9) runs, exported with :func:`d2lutils.export_onnx`: input ``N x 1 x 28 x 28`` in [0, 1],
  outputs ``probs`` (softmax), ``conv1`` (N x 6 x 28 x 28, after the activation) and
  ``conv2`` (N x 16 x 10 x 10, after the activation). float32: both are small.
* ``models/vgg11-div8.onnx``: the VGG chapter's ``vgg11-div8`` run (VGG-11 with every
  channel count divided by 8, 2.0 million parameters, 224 px). The same 28 px input: the
  model enlarges it to 224 px with the bilinear weights the training data was resized with
  (``resize_from=28``). Outputs ``probs``, ``conv1`` (block 1: N x 8 x 112 x 112) and
  ``conv2`` (block 2: N x 16 x 56 x 56), each after its ReLU and max pooling. Weights
  stored in float16 (4 MB instead of 8; the runtime computes in float32): the test
  accuracy of the float16-rounded weights is measured here on all 10,000 test images
  against the float32 weights, and the export stops if it drops by more than 0.002.
* ``models/manifest.json``: for each model its file, SHA-256, size, and the run it comes
  from, copied from ``notebooks/runs/<name>-cpu.json`` (device, profile, images, epochs,
  test accuracy); the occlusion settings (the ZFNet chapter's, scaled from 224 to 28 px).
* ``images.json``: 30 test images (the first 3 of each class in the test set), as bytes.

Options, for developing the page before a chapter's run exists (never commit the result:
``tests/test_lab.py`` accepts only the chapters' ``cpu`` runs)::

    # a few steps of VGG under `quick`, into a scratch folder, then export only that net
    python -c "from d2lutils import models; models.VGG11_DIV8.fit('quick', 'cpu', folder='/tmp/q')"
    PYTHONPATH=. python book/_ext/lab_export.py --only vgg11-div8 --folder /tmp/q --profile quick

``--only`` re-exports the nets named and keeps the other entries of the manifest (their
files must still match their SHA-256); ``--folder`` is where ``checkpoints/`` and ``runs/``
are (default ``notebooks/``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import d2lutils as d2l  # noqa: E402
from d2lutils import models  # noqa: E402

LAB = ROOT / "book" / "_static" / "lab"
PROFILE = "cpu"


@dataclasses.dataclass(frozen=True)
class Net:
    """One model of the lab page: which run, and how it is exported."""

    key: str
    recipe: d2l.Recipe
    title: str
    chapter: str                  # the notebook, without .ipynb
    taps: dict                    # output name -> (submodule name, what the page calls it)
    resize_from: int | None = None  # the page's 28 px, enlarged inside the model
    fp16: bool = False            # weights stored in float16, computed in float32
    occlusion_batch: int | None = None  # images per call for the occlusion map (None: all)
    max_fp16_drop: float = 0.002  # the export stops if fp16 loses more test accuracy


_LENET_TAPS = {"conv1": ("1", "conv1 (5×5, after the activation)"),
               "conv2": ("4", "conv2 (5×5, after the activation)")}
NETS = [
    Net("lenet", models.LENET, "LeNet (ReLU, max pooling, Adam)", "notebooks/01_lenet", _LENET_TAPS),
    Net("lenet-sigmoid", models.LENET_SIGMOID, "LeNet-5 of 1998 (sigmoid, average pooling, SGD lr 0.9)",
        "notebooks/01_lenet", _LENET_TAPS),
    Net("vgg11-div8", models.VGG11_DIV8, "VGG-11 ÷8 (eight 3×3 convolutions, 224 px)", "notebooks/04_vgg",
        {"conv1": ("0.2", "block 1 (3×3 conv, ReLU, 2×2 max pool)"),
         "conv2": ("1.2", "block 2 (3×3 conv, ReLU, 2×2 max pool)")},
        resize_from=28, fp16=True, occlusion_batch=12),
]
# The ZFNet chapter's occlusion_map: a 48 px black square moved by 16 px over the 224 px
# image; the lab's nets take the 28 px image, one eighth of that (VGG enlarges it inside
# its model, so it sees the chapter's 48 px square moved by 16 px).
OCCLUSION = {"patch": 6, "stride": 2, "fill": 0.0,
             "source": "notebooks/03_zfnet.ipynb occlusion_map(patch=48, stride=16) at 224 px, / 8"}
PER_CLASS = 3


def test_images() -> dict:
    images, labels = d2l.read_fashion_mnist(train=False)
    picked = []
    for c in range(10):
        picked += [int(i) for i in (labels == c).nonzero().flatten()[:PER_CLASS]]
    picked.sort()
    return {"source": "Fashion-MNIST test set (t10k), the first 3 images of each class",
            "classes": list(d2l.TEXT_LABELS), "index": picked,
            "label": [int(labels[i]) for i in picked],
            "pixels": [images[i].flatten().tolist() for i in picked]}


def accuracy_on_test_set(net: torch.nn.Module, side: int | None, batch: int = 16) -> tuple[float, torch.Tensor]:
    """Accuracy on all 10,000 test images, resized as in training, and the probabilities
    (small batches: a 224 px batch of 16 stays in the allocator's heap, larger ones are
    mapped and unmapped by the OS at every layer, twice as slow here)."""
    images, labels = d2l.read_fashion_mnist(train=False)
    net.eval()
    correct, probs = 0, []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = images[i:i + batch].unsqueeze(1).float() / 255
            p = torch.softmax(net(x if side is None else d2l.resize_bilinear(x, side)), 1)
            correct += int((p.argmax(1) == labels[i:i + batch]).sum())
            probs.append(p)
    return correct / len(images), torch.cat(probs)


def fp16_check(spec: Net, net: torch.nn.Module) -> dict:
    """Test accuracy of the float32 weights and of the float16-rounded ones (what the
    exported model computes), in PyTorch on the whole test set."""
    side = spec.recipe.resize
    t0 = time.perf_counter()
    acc32, p32 = accuracy_on_test_set(net, side)
    acc16, p16 = accuracy_on_test_set(d2l.fp16_rounded(copy.deepcopy(net)), side)
    check = {"n_test": 10_000, "test_acc_fp32": acc32, "test_acc_fp16": acc16,
             "max_prob_diff": round(float((p32 - p16).abs().max()), 6)}
    print(f"  {spec.key}: test acc {acc32:.4f} with float32 weights, {acc16:.4f} with float16 "
          f"(probabilities differ by at most {check['max_prob_diff']:.1e}; "
          f"{time.perf_counter() - t0:.0f} s)")
    if acc16 < acc32 - spec.max_fp16_drop:
        raise SystemExit(f"{spec.key}: float16 weights lose {acc32 - acc16:.4f} test accuracy (more than "
                         f"{spec.max_fp16_drop}): export it in float32 (fp16=False in NETS), if the "
                         "8 MB budget allows")
    return check


def export(spec: Net, out: Path, folder: Path, profile: str) -> dict:
    ckpt, hist = spec.recipe.files(profile, folder)
    for f, what in [(ckpt, "checkpoint"), (hist, "run")]:
        if not f.is_file():
            raise SystemExit(f"{f} is missing (the {what} of {spec.key}): execute {spec.chapter}.ipynb "
                             f"under the {profile} profile first")
    h = json.loads(hist.read_text())
    net = spec.recipe.net()
    state = d2l.load_weights(ckpt, net)
    stored = state.get("history", {})
    if stored.get("test_acc") != h["test_acc"]:
        raise SystemExit(f"{ckpt} is not the run stored in {hist}: re-run the chapter first")
    side = spec.recipe.resize or 28
    path = d2l.export_onnx(net, out / f"{spec.key}.onnx", (1, 1, side, side), softmax=True,
                           taps={name: module for name, (module, _) in spec.taps.items()},
                           resize_from=spec.resize_from, fp16_weights=spec.fp16)
    data = path.read_bytes()
    try:
        run_file = str(hist.resolve().relative_to(ROOT))
    except ValueError:
        run_file = str(hist.resolve())
    entry = {
        "key": spec.key, "title": spec.title, "file": f"models/{path.name}", "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(), "params": d2l.count_params(net),
        "flops": d2l.layer_table(net, (1, 1, side, side)).total_flops,
        "dtype": "float16 weights, float32 arithmetic" if spec.fp16 else "float32",
        "input": [1, 28, 28], "net_input": [1, side, side],
        "resize": (f"bilinear, {spec.resize_from} to {side} px inside the model (the weights of "
                   f"load_data_fashion_mnist(resize={side}))") if spec.resize_from else None,
        "outputs": ["probs", *spec.taps],
        "taps": [{"name": name, "label": label} for name, (_, label) in spec.taps.items()],
        "occlusion_batch": spec.occlusion_batch,
        "chapter": spec.chapter, "recipe": spec.recipe.name,
        "run": {"file": run_file, "device": h["device"], "profile": h["profile"],
                "n_train": h["n_train"], "n_test": h["n_test"], "epochs": len(h["epoch"]),
                "test_acc": h["test_acc"][-1], "seconds": round(sum(h["seconds"]), 1)}}
    if spec.fp16:
        entry["fp16_check"] = fp16_check(spec, net)
    print(f"{path.relative_to(ROOT)}: {len(data):,} bytes ({entry['dtype']}), {h['profile']} run on "
          f"{h['device']}, {h['n_train']:,} images, test acc {h['test_acc'][-1]:.4f}")
    if h["profile"] != PROFILE:
        print(f"  WARNING: a {h['profile']} run, for developing the page only: do not commit "
              f"book/_static/lab/models (tests/test_lab.py accepts only {PROFILE} runs)")
    return entry


def main(argv: list[str] | None = None) -> int:
    keys = [n.key for n in NETS]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=keys, metavar="KEY",
                    help=f"export only these nets ({', '.join(keys)}); keep the others' manifest entries")
    ap.add_argument("--folder", type=Path, default=ROOT / "notebooks",
                    help="the folder with checkpoints/ and runs/ (default: notebooks/)")
    ap.add_argument("--profile", default=PROFILE, help=f"the runs' profile (default: {PROFILE})")
    args = ap.parse_args(argv)
    out = LAB / "models"
    out.mkdir(parents=True, exist_ok=True)
    old = {}
    if args.only:
        mf = out / "manifest.json"
        old = {m["key"]: m for m in json.loads(mf.read_text())["models"]} if mf.is_file() else {}
        for key, m in old.items():
            f = LAB / m["file"]
            if key not in args.only and (not f.is_file() or hashlib.sha256(f.read_bytes()).hexdigest() != m["sha256"]):
                raise SystemExit(f"{f} no longer matches models/manifest.json: export it too (drop --only)")
    manifest = {"classes": list(d2l.TEXT_LABELS), "occlusion": OCCLUSION, "input": [1, 28, 28],
                "models": []}
    for spec in NETS:
        if args.only and spec.key not in args.only:
            if spec.key in old:
                manifest["models"].append(old[spec.key])
                print(f"{spec.key}: kept as it is in the manifest")
            continue
        manifest["models"].append(export(spec, out, args.folder, args.profile))
    total = sum(m["bytes"] for m in manifest["models"])
    print(f"models: {total / 2**20:.2f} MiB in all (the budget is 8 MB)")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (LAB / "images.json").write_text(json.dumps(test_images(), separators=(",", ":")) + "\n")
    print(f"wrote {out / 'manifest.json'} and {LAB / 'images.json'}")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    raise SystemExit(main())
