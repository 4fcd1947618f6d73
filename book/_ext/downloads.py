"""Build the book's two downloads into the built site, offline, for each edition.

* ``_build/html/downloads/classic-cnns-notebooks.zip``: every chapter (its plain-Markdown copy,
  ``notebooks/en/``, as Jupyter shows it) with its stored
  outputs, the stored runs the comparison chapter reads, the benchmark reports the
  performance and NiN pages read, and requirements.txt; unpacked, the chapters run
  as they are (``pip install git+...`` is their first cell).
* ``_build/html/downloads/classic-cnns.pdf``: the whole book, built as one HTML page
  (Sphinx's ``singlehtml`` builder), opened in headless Chromium from the file system,
  printed once MathJax has typeset every formula and every image has loaded (the
  build fails if one has not).

The Chinese edition (``_build/html/zh``, ``book/_ext/i18n.py``) gets the same two files in
``_build/html/zh/downloads/``: its zip holds the Chinese notebooks (``notebooks/zh/``) in the
English ones' places, so that unpacked they find the same runs and reports, and its PDF is
printed from the Chinese single-page build, in a Chinese font (fonts-wqy-microhei).

    python book/_ext/downloads.py            # after `jupyter-book build .` and `i18n.py build`
    python book/_ext/downloads.py --edition en
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "_build" / "html"
OUT = SITE / "downloads"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@dataclass(frozen=True)
class Edition:
    name: str
    site: Path           # the edition's built site
    notebooks: Path      # its chapters (the Chinese ones take the English ones' place in the zip)

    @property
    def out(self) -> Path:
        return self.site / "downloads"


EDITIONS = {"en": Edition("en", SITE, ROOT / "notebooks" / "en"),
            "zh": Edition("zh", SITE / "zh", ROOT / "notebooks" / "zh")}


def build_zip(edition: Edition = EDITIONS["en"]) -> Path:
    chapters = sorted(edition.notebooks.glob("*.ipynb"))
    if not chapters:
        raise SystemExit(f"no notebooks in {edition.notebooks} (book/_ext/plain_notebooks.py and zh_notebooks.py write them)")
    files = [*sorted((ROOT / "notebooks" / "runs").glob("*-cpu.json")),
             *sorted((ROOT / "notebooks" / "runs").glob("*-full.json")),
             *sorted((ROOT / "benchmarks" / "results").rglob("*.json")),
             ROOT / "requirements.txt", ROOT / "LICENSE"]
    edition.out.mkdir(parents=True, exist_ok=True)
    path = edition.out / "classic-cnns-notebooks.zip"
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for f in chapters:
            z.write(f, Path("classic-cnns") / "notebooks" / f.name)
        for f in files:
            z.write(f, Path("classic-cnns") / f.relative_to(ROOT))
    tmp.replace(path)
    return path


def _single_page(edition: Edition) -> Path:
    """The whole book as one HTML page (Sphinx's ``singlehtml`` builder); its folder."""
    if edition.name == "zh":
        sys.path.insert(0, str(Path(__file__).parent))
        import i18n

        return i18n.build("singlehtml", quiet=True)
    single = ROOT / "_build" / "singlehtml"
    # the `jupyter-book` script of this interpreter's environment (the package has no __main__)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    subprocess.run([str(jupyter_book), "build", str(ROOT), "--builder", "singlehtml",
                    "-W", "-n", "--keep-going"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return single


def build_pdf(edition: Edition = EDITIONS["en"]) -> Path:
    single = _single_page(edition)
    # index.html is only a redirect; the whole book is on the root document's page
    root = next(l.split(":", 1)[1].strip() for l in (ROOT / "_toc.yml").read_text().splitlines()
                if l.startswith("root:"))
    built = single / f"{root}.html"
    if not built.exists():
        raise SystemExit(f"{built} was not built")
    # singlehtml writes the root page at its own path (book/intro.html) but links its styles,
    # scripts (MathJax) and images as if it sat at the top: open a copy from there.
    index = single / "classic-cnns.html"
    shutil.copyfile(built, index)
    _check_cjk_font()
    if not Path(CHROMIUM).exists():
        raise SystemExit("chromium is missing: `sudo apt-get install chromium` (make system-deps does it)")
    from playwright.sync_api import sync_playwright

    edition.out.mkdir(parents=True, exist_ok=True)
    path = edition.out / "classic-cnns.pdf"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page()
        page.goto(index.as_uri(), wait_until="load")
        page.evaluate("""async () => { if (window.MathJax && MathJax.startup && MathJax.startup.promise)
                                       await MathJax.startup.promise; }""")
        missing = page.evaluate("""async () => { for (const img of document.images) { img.loading = 'eager';
                          if (!img.complete) await new Promise(r => { img.onload = img.onerror = r; }); }
                          return [...document.images].filter(i => !i.naturalWidth).map(i => i.src); }""")
        if missing:
            raise SystemExit(f"{len(missing)} of the book's images did not load for the PDF, e.g. {missing[0]}")
        if not page.evaluate("() => !!(window.MathJax && MathJax.startup && MathJax.startup.document)"):
            raise SystemExit("MathJax did not load for the PDF: its formulas would print as raw TeX")
        # paper cannot scroll sideways: wrap long code lines instead of cutting them off
        page.add_style_tag(content="@media print { pre { white-space: pre-wrap; overflow-wrap: anywhere; } }")
        page.emulate_media(media="print")
        page.pdf(path=str(path), format="A4", print_background=True,
                 margin={"top": "15mm", "bottom": "15mm", "left": "12mm", "right": "12mm"})
        browser.close()
    return path


def _check_cjk_font() -> None:
    """The glossary gives every term in Chinese too, and the Chinese edition is all Chinese;
    without a CJK font Chromium prints those as empty boxes. Checked where fontconfig can tell
    (Linux)."""
    if not shutil.which("fc-list"):
        return
    found = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True).stdout.strip()
    if not found:
        raise SystemExit("no Chinese font is installed, so the PDF's glossary would print empty boxes: "
                         "`sudo apt-get install fonts-wqy-microhei` (make system-deps does it)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--edition", choices=["en", "zh", "all"], default="all")
    args = ap.parse_args(argv)
    editions = list(EDITIONS.values()) if args.edition == "all" else [EDITIONS[args.edition]]
    for edition in editions:
        if not (edition.site / "index.html").exists():
            raise SystemExit(f"{edition.site} is not built: run `jupyter-book build .`"
                             + (" and `python book/_ext/i18n.py build`" if edition.name == "zh" else "") + " first")
        for build in (build_zip, build_pdf):
            path = build(edition)
            print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
