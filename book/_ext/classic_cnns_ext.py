"""Sphinx extension for the Classic CNNs book.

* MathJax from the installed package ``django-static-mathjax`` (copied into the
  built site), so formulas render with no network and no vendored files.
* A Kaggle link in the theme's launch menu, built from the same repository URL
  as the Colab and Binder buttons.
* ``{stored-runs}``: a table of the training runs stored in the notebooks
  (device, profile, images, epochs, wall time), read from ``notebooks/runs/*.json``.
* ``{chapter-costs}``: each chapter's execution time and peak memory, read from the
  stored cells' timing metadata and the peak memory the chapter glued.
* The two editions (``editions.py``): the language link on every page; in the Chinese
  edition, launch buttons that open the Chinese notebooks, and the two tables' headings and
  chapter titles in Chinese.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.locale import get_translation

from editions import label, translated


def _mathjax_dir() -> Path:
    try:
        import mathjax  # django-static-mathjax installs this package
    except ImportError as e:
        raise ExtensionError("MathJax is missing: pip install django-static-mathjax "
                             "(it is in requirements.txt)") from e
    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (es5 / "tex-chtml.js").is_file():
        raise ExtensionError(f"{es5}/tex-chtml.js not found; reinstall django-static-mathjax")
    return es5


def _finish_site(app: Sphinx, exc) -> None:
    if exc is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    shutil.copytree(_mathjax_dir(), out / "_static" / "mathjax", dirs_exist_ok=True)
    # Jupyter Book writes index.html as a bare redirect; without an icon link the
    # browser asks for /favicon.ico and gets a 404.
    index, icon = out / "index.html", app.config.html_favicon
    if icon and index.is_file() and "rel=\"icon\"" not in (html := index.read_text()):
        link = f'<link rel="icon" href="_static/{Path(icon).name}">'
        index.write_text(html.replace("<head>", "<head>" + link, 1) if "<head>" in html else link + html)


_booktheme = get_translation("booktheme")   # the book theme's catalogue: its "Launch on" for Colab


def _add_kaggle(app: Sphinx, pagename, templatename, context, doctree) -> None:
    for group in context.get("header_buttons", []):
        if group.get("label") != "launch-buttons":
            continue
        colab = next((b for b in group["buttons"] if b.get("text") == "Colab"), None)
        if colab is None:
            return
        # .../github/ORG/REPO/blob/BRANCH/PATH  ->  Kaggle imports the same file
        gh = "https://github.com/" + colab["url"].split("/github/", 1)[1]
        group["buttons"].append({
            "type": "link", "text": "Kaggle", "tooltip": _booktheme("Launch on") + " Kaggle",
            "icon": "fab fa-kaggle", "url": f"https://kaggle.com/kernels/welcome?src={gh}",
        })


_RECIPE = re.compile(r"""(?:Recipe\(\s*|name=)["']([A-Za-z0-9][\w.-]*)["']""")
_GLUE = "application/papermill.record/text/plain"


def _chapter_title(nb: dict, fallback: str) -> str:
    return next((l.lstrip("# ").strip() for c in nb["cells"] if c["cell_type"] == "markdown"
                 for l in "".join(c["source"]).splitlines() if l.startswith("# ")), fallback)


def _chapters(notebooks: Path) -> dict[str, tuple[str, dict]]:
    """Each notebook's stem -> (title, notebook)."""
    out = {}
    for nb_path in sorted(notebooks.glob("*.ipynb")):
        nb = json.loads(nb_path.read_text())
        out[nb_path.stem] = (_chapter_title(nb, nb_path.stem), nb)
    return out


def _recipe_homes(chapters: dict[str, tuple[str, dict]]) -> dict[str, str]:
    """Recipe name -> title of the chapter whose code defines it (read from the code, not
    from anything printed)."""
    homes = {}
    for title, nb in chapters.values():
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                for name in _RECIPE.findall("".join(cell["source"])):
                    homes.setdefault(name, title)
    return homes


def stored_runs(notebooks: Path) -> list[dict]:
    """Every run stored in ``notebooks/runs/*.json`` (the History files the chapters write),
    with the chapter whose code defines its recipe."""
    homes = _recipe_homes(_chapters(notebooks))
    runs = []
    for path in sorted((notebooks / "runs").glob("*.json")):
        h = json.loads(path.read_text())
        if not h.get("epoch"):
            continue
        recipe = path.stem.rsplit("-", 1)[0]
        procs = f"{h['world_size']} x " if h.get("world_size", 1) > 1 else ""
        runs.append({"chapter": homes.get(recipe, ""), "recipe": recipe, "device": procs + h["device"],
                     "profile": h["profile"], "n_train": f"{h['n_train']:,}", "epochs": len(h["epoch"]),
                     "minutes": f"{sum(h['seconds']) / 60:.1f}", "acc": f"{h['test_acc'][-1]:.3f}",
                     "n_test": f"{h['n_test']:,}"})
    order = list(dict.fromkeys(homes.values()))
    return sorted(runs, key=lambda r: (order.index(r["chapter"]) if r["chapter"] in order else len(order),
                                       r["recipe"]))


def _glued_peak(cell) -> str:
    """The peak memory a cell stored with ``d2l.report_peak_memory(name)`` (glued as
    ``peak_memory`` or ``<chapter>_peak``), or ''."""
    for o in cell.get("outputs", []):
        name = o.get("metadata", {}).get("scrapbook", {}).get("name", "")
        if (name == "peak_memory" or name.endswith("_peak")) and _GLUE in o.get("data", {}):
            return "".join(o["data"][_GLUE]).strip("'\"")
    return ""


def chapter_costs(notebooks: Path) -> list[dict]:
    """Per chapter: the wall time of its stored execution (sum of the cells' times) and the
    peak memory it glued."""
    from datetime import datetime

    out = []
    runs = stored_runs(notebooks)
    for stem, (title, nb) in _chapters(notebooks).items():
        seconds, peak = 0.0, ""
        for cell in nb["cells"]:
            ex = cell.get("metadata", {}).get("execution", {})
            if "iopub.execute_input" in ex and "shell.execute_reply" in ex:
                a = datetime.fromisoformat(ex["iopub.execute_input"].replace("Z", "+00:00"))
                b = datetime.fromisoformat(ex["shell.execute_reply"].replace("Z", "+00:00"))
                seconds += (b - a).total_seconds()
            peak = _glued_peak(cell) or peak
        profiles = sorted({r["profile"] for r in runs if r["chapter"] == title})
        out.append({"chapter": title, "profile": ", ".join(profiles), "minutes": f"{seconds / 60:.1f}",
                    "peak_gb": peak.replace(" GB", "")})
    return out


def _table(cols: list[str], rows: list[list], prose: tuple[int, ...] = ()) -> nodes.table:
    """A table; the cells of the columns not in ``prose`` are data (names, numbers), which the
    Chinese edition shows as they are (marked ``notranslate``)."""
    table = nodes.table()
    tgroup = nodes.tgroup(cols=len(cols))
    table += tgroup
    tgroup.extend(nodes.colspec(colwidth=1) for _ in cols)
    head, body = nodes.thead(), nodes.tbody()
    tgroup += head
    tgroup += body

    def row(cells, data):
        r = nodes.row()
        for i, c in enumerate(cells):
            entry = nodes.entry(classes=["notranslate"] if data and i not in prose else [])
            entry += nodes.paragraph(text=str(c))
            r += entry
        return r

    head += row(cols, False)
    for r in rows:
        body += row(r, True)
    return table


def _zh_titles(env, folder: Path) -> dict[str, str]:
    """English chapter title -> the title the edition shows (its page's translation)."""
    return {title: translated(env, f"notebooks/{stem}", title) for stem, (title, _) in _chapters(folder).items()}


class StoredRuns(Directive):
    has_content = False

    def run(self):
        env = self.state.document.settings.env
        folder = Path(env.srcdir) / "notebooks"
        for f in [*folder.glob("*.ipynb"), *folder.glob("runs/*.json")]:
            env.note_dependency(str(f))  # rebuild this page when a notebook or a run changes
        runs = stored_runs(folder)
        if not runs:
            return [nodes.paragraph(text=label(env, "No stored training runs yet."))]
        cols = ["chapter", "run", "device", "profile", "train images", "epochs", "minutes", "test acc",
                "test images"]
        titles = _zh_titles(env, folder)
        return [_table([label(env, c) for c in cols],
                       [[titles.get(r["chapter"], r["chapter"]), r["recipe"], r["device"], r["profile"], r["n_train"],
                         r["epochs"], r["minutes"], r["acc"], r["n_test"]] for r in runs], prose=(0,))]


class ChapterCosts(Directive):
    has_content = False

    def run(self):
        env = self.state.document.settings.env
        folder = Path(env.srcdir) / "notebooks"
        costs = chapter_costs(folder)
        cols = ["chapter", "profile", "execution (min)", "peak memory (GB)"]
        titles = _zh_titles(env, folder)
        return [_table([label(env, c) for c in cols],
                       [[titles.get(c["chapter"], c["chapter"]), c["profile"], c["minutes"], c["peak_gb"] or "-"]
                        for c in costs], prose=(0,))]


def _page_fixes(app: Sphinx, pagename, templatename, context, doctree) -> None:
    # Without a default colour mode the theme logs a console error on a reader's
    # first visit ("Got invalid theme mode"); the book theme has no option for it.
    context["default_mode"] = context.get("default_mode") or "light"

    # Jupyter Book 1 always loads sphinx-thebe, which registers its scripts twice
    # ("THEBE_JS_URL has already been declared") and points at a CDN. The book
    # does not use live code (launch_buttons.thebe is off), so leave them out.
    if app.config.html_theme_options.get("launch_buttons", {}).get("thebe"):
        return
    context["script_files"] = [
        js for js in context.get("script_files", [])
        if "thebe" not in (str(js.filename or "") + str(js.attributes.get("body", ""))).lower()]
    context["css_files"] = [css for css in context.get("css_files", [])
                            if "thebe" not in str(css.filename or "").lower()]


def _one_search_field(app: Sphinx, config) -> None:
    # pydata-sphinx-theme 0.16+ adds a search field in a header bar of its own unless
    # `navbar_persistent` is set; the book theme already has one in its sidebar, so a
    # wide screen showed two. Keep the sidebar's (Ctrl+K still opens the search).
    config.html_theme_options.setdefault("navbar_persistent", [])


def setup(app: Sphinx):
    app.setup_extension("editions")
    app.connect("config-inited", _one_search_field)
    app.connect("html-page-context", _page_fixes, priority=900)
    app.connect("build-finished", _finish_site)
    # after the book theme's launch buttons (501) and the Chinese edition's changes to them (502)
    app.connect("html-page-context", _add_kaggle, priority=503)
    app.add_directive("stored-runs", StoredRuns)
    app.add_directive("chapter-costs", ChapterCosts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
