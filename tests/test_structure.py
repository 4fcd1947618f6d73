"""The package's shape: imports that flow one way, and one repository URL."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "d2lutils"


def _imports(path: Path) -> tuple[set[str], list[str]]:
    """The package modules ``path`` imports, and those it imports inside a function."""
    tree = ast.parse(path.read_text())
    top, inner = set(), []
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(n) for f in funcs for n in ast.walk(f) if n is not f}
    typing_only = {id(n) for i in ast.walk(tree) if isinstance(i, ast.If) and "TYPE_CHECKING" in ast.unparse(i.test)
                   for n in ast.walk(i)}
    for node in ast.walk(tree):
        if id(node) in typing_only:   # `if TYPE_CHECKING:` imports never run
            continue
        names = []
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module] if node.module else [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("d2lutils"):
            names = [(node.module or "").removeprefix("d2lutils").lstrip(".") or "__init__"]
        elif isinstance(node, ast.Import):
            names = [a.name.removeprefix("d2lutils.") for a in node.names if a.name.startswith("d2lutils")]
            names = ["__init__" if n == "d2lutils" else n for n in names]
        if not names:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 1 and not node.module:
            names = [a.name for a in node.names]
        for n in names:
            n = n.split(".")[0]
            (inner.append(n) if id(node) in nested else top.add(n))
    return top, inner


def test_imports_flow_one_way_with_none_hidden_in_a_function():
    graph, hidden = {}, []
    for path in sorted(PKG.glob("*.py")):
        top, inner = _imports(path)
        graph[path.stem] = top - {path.stem}
        hidden += [f"{path.stem} -> {m}" for m in inner]
    assert not hidden, f"package imports inside functions (cycles dodged?): {hidden}"
    # models.py (generated) imports the package itself; nothing the package imports imports it
    order, seen, stack = [], set(), set()

    def visit(m, trail):
        if m in stack:
            raise AssertionError("import cycle: " + " -> ".join(trail + [m]))
        if m in seen or m not in graph:
            return
        stack.add(m)
        for dep in sorted(graph[m]):
            visit(dep, trail + [m])
        stack.discard(m)
        seen.add(m)
        order.append(m)

    for m in sorted(graph):
        visit(m, [])
    assert "train" in order and order.index("history") < order.index("train")


def test_train_module_stays_small():
    assert len((PKG / "train.py").read_text().splitlines()) < 350


def test_the_repository_url_is_the_one_in_config():
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")
    slug = url.removeprefix("https://github.com/")
    files = [*ROOT.glob("notebooks/**/*.ipynb"), *ROOT.glob("book/*.md"), ROOT / "README.md",
             ROOT / "README.zh.md", ROOT / "pyproject.toml", ROOT / "CITATION.cff"]
    wrong = []
    for f in files:
        if ".ipynb_checkpoints" in f.parts or not f.exists():
            continue
        for m in re.finditer(r"github(?:\.com)?/([\w.-]+/[\w.-]+?)(?:\.git)?(?=[/\"'\s)@]|$)", f.read_text()):
            if m[1].split("/")[0] == slug.split("/")[0] and m[1] != slug:
                wrong.append(f"{f.relative_to(ROOT)}: {m[1]}")
    assert not wrong, f"repository named differently from _config.yml's {slug}: {wrong}"
