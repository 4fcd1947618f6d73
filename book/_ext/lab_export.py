"""Write the lab page's models and test images into ``book/_static/lab/`` (committed).

Run after the LeNet chapter has stored its ``cpu`` runs (it needs their checkpoints in
``notebooks/checkpoints/``, which are not committed)::

    PYTHONPATH=. python book/_ext/lab_export.py

* ``models/lenet.onnx``, ``models/lenet-sigmoid.onnx``: the chapter's ``lenet`` (ReLU, max
  pooling, Adam) and ``lenet-sigmoid`` (the 1998 net: sigmoid, average pooling, SGD lr 0.9)
  runs, exported with :func:`d2lutils.export_onnx`: input ``N x 1 x 28 x 28`` in [0, 1],
  outputs ``probs`` (softmax), ``conv1`` (N x 6 x 28 x 28, after the activation) and
  ``conv2`` (N x 16 x 10 x 10, after the activation). float32: both are small.
* ``models/manifest.json``: for each model its file, SHA-256, size, and the run it comes
  from, copied from ``notebooks/runs/<name>-cpu.json`` (device, profile, images, epochs,
  test accuracy); the occlusion settings (the ZFNet chapter's, scaled from 224 to 28 px).
* ``images.json``: 30 test images (the first 3 of each class in the test set), as bytes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import d2lutils as d2l  # noqa: E402
from d2lutils import models  # noqa: E402

LAB = ROOT / "book" / "_static" / "lab"
PROFILE = "cpu"
NETS = [  # key, recipe, title
    ("lenet", models.LENET, "LeNet (ReLU, max pooling, Adam)"),
    ("lenet-sigmoid", models.LENET_SIGMOID, "LeNet-5 of 1998 (sigmoid, average pooling, SGD lr 0.9)"),
]
# The ZFNet chapter's occlusion_map: a 48 px black square moved by 16 px over the 224 px
# image; the lab's nets take the 28 px image, one eighth of that.
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


def main() -> int:
    out = LAB / "models"
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"classes": list(d2l.TEXT_LABELS), "occlusion": OCCLUSION, "input": [1, 28, 28],
                "models": []}
    for key, recipe, title in NETS:
        ckpt, hist = recipe.files(PROFILE, ROOT / "notebooks")
        h = json.loads(hist.read_text())
        net = recipe.net()
        state = d2l.load_weights(ckpt, net)
        stored = state.get("history", {})
        if stored.get("test_acc") != h["test_acc"]:
            raise SystemExit(f"{ckpt} is not the run stored in {hist}: re-run the chapter first")
        path = d2l.export_onnx(net, out / f"{key}.onnx", (1, 1, 28, 28), softmax=True,
                               taps={"conv1": net[1], "conv2": net[4]})
        data = path.read_bytes()
        manifest["models"].append({
            "key": key, "title": title, "file": f"models/{path.name}", "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "params": d2l.count_params(net),
            "dtype": "float32", "outputs": ["probs", "conv1", "conv2"],
            "chapter": "notebooks/01_lenet", "recipe": recipe.name,
            "run": {"file": str(hist.relative_to(ROOT)), "device": h["device"],
                    "profile": h["profile"], "n_train": h["n_train"], "n_test": h["n_test"],
                    "epochs": len(h["epoch"]), "test_acc": h["test_acc"][-1],
                    "seconds": round(sum(h["seconds"]), 1)}})
        print(f"{path.relative_to(ROOT)}: {len(data):,} bytes, {h['profile']} run on {h['device']}, "
              f"{h['n_train']:,} images, test acc {h['test_acc'][-1]:.4f}")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (LAB / "images.json").write_text(json.dumps(test_images(), separators=(",", ":")) + "\n")
    print(f"wrote {out / 'manifest.json'} and {LAB / 'images.json'}")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    raise SystemExit(main())
