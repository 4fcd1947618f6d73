"""Sphinx extension for the Classic CNNs book.

* MathJax from the installed package ``django-static-mathjax`` (copied into the
  built site), so formulas render with no network and no vendored files.
* A Kaggle link in the theme's launch menu, built from the same repository URL
  as the Colab and Binder buttons.
* ``{stored-runs}``: a table of the training runs stored in the notebooks
  (device, profile, images, epochs, wall time), read from their outputs.
* ``{chapter-costs}``: each chapter's execution time and peak memory, read from the
  stored cells' timing metadata and the peak-memory line of its last cell.
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
            "type": "link", "text": "Kaggle", "tooltip": "Launch on Kaggle",
            "icon": "fab fa-kaggle", "url": f"https://kaggle.com/kernels/welcome?src={gh}",
        })


_DONE = re.compile(r"done: (?P<device>.+?) \| profile (?P<profile>\S+) \| (?P<n_train>[\d,]+) train images x "
                   r"(?P<epochs>\d+) epoch\(s\) \| (?P<minutes>[\d.]+) min \| test acc (?P<acc>[\d.]+) "
                   r"on (?P<n_test>[\d,]+) images")
_PLAN = re.compile(r"^(?P<recipe>[a-z0-9][\w.-]*): (?:SGD|Adam|AdamW) ")
_PEAK = re.compile(r"peak memory of this notebook's process: (?P<gb>[\d.]+) GB")


def _chapter_title(nb: dict, fallback: str) -> str:
    return next((l.lstrip("# ").strip() for c in nb["cells"] if c["cell_type"] == "markdown"
                 for l in "".join(c["source"]).splitlines() if l.startswith("# ")), fallback)


def _texts(cell) -> list[str]:
    return ["".join(o.get("text", "")) for o in cell.get("outputs", []) if o.get("output_type") == "stream"]


def stored_runs(notebooks: Path) -> list[dict]:
    """Every ``train_ch5`` run printed in the stored notebook outputs, with the recipe
    named by the plan line printed before it (when there is one)."""
    runs = []
    for nb_path in sorted(notebooks.glob("*.ipynb")):
        nb = json.loads(nb_path.read_text())
        title = _chapter_title(nb, nb_path.stem)
        for cell in nb["cells"]:
            when = cell.get("metadata", {}).get("execution", {}).get("iopub.execute_input", "")[:10]
            recipe = ""
            for text in _texts(cell):
                for line in text.splitlines():
                    if m := _PLAN.match(line):
                        recipe = m["recipe"]
                    elif m := _DONE.search(line):
                        runs.append({"chapter": title, "page": nb_path.stem, "recipe": recipe, **m.groupdict(),
                                     "date": when})
                        recipe = ""
    return runs


def chapter_costs(notebooks: Path) -> list[dict]:
    """Per chapter: the wall time of its stored execution (sum of the cells' times) and the
    peak memory its last cell reported."""
    from datetime import datetime

    out = []
    for nb_path in sorted(notebooks.glob("*.ipynb")):
        nb = json.loads(nb_path.read_text())
        seconds, peak, profile = 0.0, "", ""
        for cell in nb["cells"]:
            ex = cell.get("metadata", {}).get("execution", {})
            if "iopub.execute_input" in ex and "shell.execute_reply" in ex:
                a = datetime.fromisoformat(ex["iopub.execute_input"].replace("Z", "+00:00"))
                b = datetime.fromisoformat(ex["shell.execute_reply"].replace("Z", "+00:00"))
                seconds += (b - a).total_seconds()
            for text in _texts(cell):
                if m := _PEAK.search(text):
                    peak = m["gb"]
                if not profile and (m := re.search(r"^profile (\w+):", text, re.M)):
                    profile = m[1]
        out.append({"chapter": _chapter_title(nb, nb_path.stem), "profile": profile,
                    "minutes": f"{seconds / 60:.1f}", "peak_gb": peak})
    return out


def _table(cols: list[str], rows: list[list]) -> nodes.table:
    table = nodes.table()
    tgroup = nodes.tgroup(cols=len(cols))
    table += tgroup
    tgroup.extend(nodes.colspec(colwidth=1) for _ in cols)
    head, body = nodes.thead(), nodes.tbody()
    tgroup += head
    tgroup += body

    def row(cells):
        r = nodes.row()
        for c in cells:
            entry = nodes.entry()
            entry += nodes.paragraph(text=str(c))
            r += entry
        return r

    head += row(cols)
    for r in rows:
        body += row(r)
    return table


class StoredRuns(Directive):
    has_content = False

    def run(self):
        env = self.state.document.settings.env
        folder = Path(env.srcdir) / "notebooks"
        for nb in folder.glob("*.ipynb"):
            env.note_dependency(str(nb))  # rebuild this page when a notebook changes
        runs = stored_runs(folder)
        if not runs:
            return [nodes.paragraph(text="No stored training runs yet.")]
        cols = ["chapter", "run", "device", "profile", "train images", "epochs", "minutes", "test acc",
                "test images", "date"]
        return [_table(cols, [[r["chapter"], r["recipe"], r["device"], r["profile"], r["n_train"], r["epochs"],
                               r["minutes"], r["acc"], r["n_test"], r["date"]] for r in runs])]


class ChapterCosts(Directive):
    has_content = False

    def run(self):
        env = self.state.document.settings.env
        folder = Path(env.srcdir) / "notebooks"
        costs = chapter_costs(folder)
        cols = ["chapter", "profile", "execution (min)", "peak memory (GB)"]
        return [_table(cols, [[c["chapter"], c["profile"], c["minutes"], c["peak_gb"] or "-"] for c in costs])]


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
    app.connect("config-inited", _one_search_field)
    app.connect("html-page-context", _page_fixes, priority=900)
    app.connect("build-finished", _finish_site)
    app.connect("html-page-context", _add_kaggle, priority=502)
    app.add_directive("stored-runs", StoredRuns)
    app.add_directive("chapter-costs", ChapterCosts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
