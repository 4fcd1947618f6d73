"""Sphinx extension for the Classic CNNs book.

* MathJax from the installed package ``django-static-mathjax`` (copied into the
  built site), so formulas render with no network and no vendored files.
* A Kaggle link in the theme's launch menu, built from the same repository URL
  as the Colab and Binder buttons.
* ``{stored-runs}``: a table of the training runs stored in the notebooks
  (device, profile, images, epochs, wall time), read from their outputs.
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


_TRAIN = re.compile(r"training on (?P<device>.+?) \| profile (?P<profile>\S+) \| "
                    r"(?P<n_train>\S+) train / (?P<n_test>\S+) test images \| (?P<epochs>\d+) epochs")
_DONE = re.compile(r"done: (?P<epochs>\d+) epochs in (?P<secs>[\d.]+) s on .*final test acc (?P<acc>[\d.]+)")


def stored_runs(notebooks: Path) -> list[dict]:
    """Every ``train_ch5`` run printed in the stored notebook outputs."""
    runs = []
    for nb_path in sorted(notebooks.glob("*.ipynb")):
        nb = json.loads(nb_path.read_text())
        title = next((l.lstrip("# ").strip() for c in nb["cells"] if c["cell_type"] == "markdown"
                      for l in "".join(c["source"]).splitlines() if l.startswith("# ")), nb_path.stem)
        date = ""
        for cell in nb["cells"]:
            for out in cell.get("outputs", []):
                text = "".join(out.get("text", "")) if out.get("output_type") == "stream" else ""
                start = None
                for line in text.splitlines():
                    if m := _TRAIN.search(line):
                        start = m.groupdict()
                    elif (m := _DONE.search(line)) and start:
                        when = cell.get("metadata", {}).get("execution", {}).get("iopub.execute_input", "")
                        date = when[:10] or date
                        runs.append({"chapter": title, "page": nb_path.stem, **start, **m.groupdict(),
                                     "date": date})
                        start = None
    return runs


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
        cols = ["chapter", "device", "profile", "train images", "epochs", "wall time (s)",
                "final test acc", "date"]
        table = nodes.table()
        tgroup = nodes.tgroup(cols=len(cols))
        table += tgroup
        tgroup.extend(nodes.colspec(colwidth=1) for _ in cols)
        head = nodes.thead()
        body = nodes.tbody()
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
        for r in runs:
            body += row([r["chapter"], r["device"], r["profile"], r["n_train"], r["epochs"],
                         r["secs"], r["acc"], r["date"]])
        return [table]


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


def setup(app: Sphinx):
    app.connect("html-page-context", _page_fixes, priority=900)
    app.connect("build-finished", _finish_site)
    app.connect("html-page-context", _add_kaggle, priority=502)
    app.add_directive("stored-runs", StoredRuns)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
