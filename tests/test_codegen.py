"""d2lutils/models.py is generated from the chapters' #@save cells; it must not drift."""

import json

import torch

from d2lutils import codegen


def test_models_module_matches_the_notebooks():
    assert codegen.TARGET.read_text() == codegen.generate(), (
        "d2lutils/models.py is out of date: run `python -m d2lutils.codegen`")


def test_saved_cells_keep_only_definitions(tmp_path):
    nb = {"cells": [
        {"cell_type": "code", "source": "#@save\nSIZES = (1, 2)\n\ndef f(x):\n    return x + 1\n\nnet = f(1)\nnet"},
        {"cell_type": "code", "source": "def not_saved():\n    pass"},
        {"cell_type": "markdown", "source": "#@save is only a code-cell mark"},
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "x.ipynb").write_text(json.dumps(nb))
    text = codegen.generate(tmp_path)
    assert "def f(x):" in text and "SIZES = (1, 2)" in text
    assert "net = f(1)" not in text and "not_saved" not in text


def test_generated_models_build_and_run():
    from d2lutils import models

    names = [n for n in dir(models) if isinstance(getattr(models, n), type)
             and issubclass(getattr(models, n), torch.nn.Module)]
    assert names, "no nets were saved from the chapters"
    if hasattr(models, "AlexNet"):
        assert models.AlexNet()(torch.zeros(1, 1, 224, 224)).shape == (1, 10)
