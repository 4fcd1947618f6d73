"""The book's structure: every chapter is in the table of contents, its launch
links and install cell agree with the one repository URL in _config.yml, and
its stored outputs are real, complete and error-free."""

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PAGES = sorted((ROOT / "book").glob("*.ipynb"))  # executed pages that are not chapters
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPO = CONFIG["repository"]["url"].rstrip("/")


def cells(nb: Path):
    return json.loads(nb.read_text())["cells"]


def src(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_toc_lists_every_chapter_and_page():
    toc = (ROOT / "_toc.yml").read_text()
    listed = set(re.findall(r"file:\s*(\S+)", toc)) | {yaml.safe_load(toc)["root"]}
    for nb in NOTEBOOKS:
        assert f"notebooks/{nb.stem}" in listed
    for page in [*(ROOT / "book").glob("*.md"), *PAGES]:
        assert f"book/{page.stem}" in listed
    for entry in listed:
        assert (ROOT / f"{entry}.md").exists() or (ROOT / f"{entry}.ipynb").exists(), entry


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_launch_links_and_install_cell_use_the_configured_repo(nb):
    first, install = cells(nb)[0], cells(nb)[1]
    org_repo = REPO.split("github.com/")[1]
    path = f"notebooks/{nb.name}"
    assert f"https://colab.research.google.com/github/{org_repo}/blob/main/{path}" in src(first)
    assert f"https://kaggle.com/kernels/welcome?src={REPO}/blob/main/{path}" in src(first)
    assert f"git+{REPO}" in src(install) and 'find_spec("d2lutils")' in src(install)


@pytest.mark.parametrize("nb", NOTEBOOKS + PAGES, ids=lambda p: p.stem)
def test_stored_outputs_are_executed_in_order_without_errors(nb):
    import warnings

    import nbformat

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a cell without an id, soon a hard error in nbformat
        nbformat.validate(nbformat.read(nb, as_version=4))
    code = [c for c in cells(nb) if c["cell_type"] == "code" and src(c).strip()]
    assert all(c.get("execution_count") for c in code), "a code cell was never executed"
    counts = [c["execution_count"] for c in code]
    assert counts == sorted(counts), "cells were executed out of order"
    assert not [o for c in code for o in c["outputs"] if o["output_type"] == "error"]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_training_runs_are_complete_and_checked(nb):
    code = [c for c in cells(nb) if c["cell_type"] == "code" and src(c).strip()]
    assert any("NBVAL_CHECK_OUTPUT" in src(c) and c["outputs"] for c in code)
    text = "\n".join("".join(o.get("text", "")) for c in code for o in c["outputs"])
    starts = re.findall(r"training on (.+?) \| profile (\w+) \| (\d+) train / (\d+) test images "
                        r"\| (\d+) epochs", text)
    dones = re.findall(r"done: (\d+) epochs in ([\d.]+) s on", text)
    loaded = text.count("loaded a finished run from")
    assert starts, "no training run stored"
    assert len(dones) == len(starts), "a training run did not finish"
    assert loaded <= len(starts)
