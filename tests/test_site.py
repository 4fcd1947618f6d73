"""The built site in a real browser: Debian's Chromium, driven by Playwright,
against the site served on 127.0.0.1. Every page must load without console
errors, show every image, render its math, and link only to pages and anchors
that exist. One chapter page is saved as a screenshot for a person to look at."""

from __future__ import annotations

import functools
import http.server
import re
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def site() -> Path:
    if not (SITE / "index.html").exists():  # `make test` builds it first; build here if run alone
        subprocess.run([sys.executable, "-m", "jupyter_book", "build", str(ROOT), "-W", "-n",
                        "--keep-going"], check=True, cwd=ROOT)
    return SITE


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def pages(site: Path) -> list[str]:
    """The English edition's pages; the Chinese one in zh/ is checked by tests/test_zh.py."""
    skip = {"_static", "_sources", "_images", "screenshots"}
    return sorted(str(p.relative_to(site)) for p in site.rglob("*.html")
                  if not skip & set(p.relative_to(site).parts) and p.relative_to(site).parts[0] != "zh")


def test_site_has_every_chapter_and_page(site):
    got = set(pages(site))
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        assert f"notebooks/{nb.stem}.html" in got
    for page in ("book/intro.html", "book/setup.html", "book/api.html", "book/bibliography.html",
                 "book/glossary.html", "book/troubleshooting.html", "book/performance.html"):
        assert page in got


def test_chapters_launch_the_plain_markdown_notebooks(site):
    """The Colab, Binder and Kaggle buttons and the chapter's own links open notebooks/en/,
    the copy whose Markdown Colab shows as text, not as MyST markup."""
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        html = (site / "notebooks" / f"{nb.stem}.html").read_text()
        launch = re.findall(r'href="(https://[^"]*(?:colab|kaggle|mybinder)[^"]*)"', html)
        assert len(launch) >= 4, launch   # the three buttons and the chapter's own links
        assert all(f"notebooks/en/{nb.name}" in url for url in launch), launch
        assert (ROOT / "notebooks" / "en" / nb.name).is_file()


def test_pdf_and_zip_download_from_the_landing_page(site, server, browser):
    import zipfile

    page = browser.new_page()
    page.goto(urljoin(server, "book/intro.html"), wait_until="networkidle")
    for name, kind in (("classic-cnns.pdf", "application/pdf"), ("classic-cnns-notebooks.zip", "application/zip")):
        link = page.locator(f'a[href$="downloads/{name}"]')
        assert link.count() == 1, f"the landing page does not link {name}"
        resp = page.request.get(urljoin(page.url, link.get_attribute("href")))
        assert resp.ok and len(resp.body()) > 100_000, name
        path = site / "downloads" / name
        if name.endswith(".pdf"):
            data = path.read_bytes()
            assert data.startswith(b"%PDF") and data.count(b"/Type /Page") >= 30   # the whole book, many pages
            figures = len(list((site / "_images").iterdir()))
            assert data.count(b"/Subtype /Image") >= figures, "the PDF lacks some of the site's figures"
        else:
            z = zipfile.ZipFile(path)
            for nb in (ROOT / "notebooks").glob("*.ipynb"):   # the plain-Markdown copies, as Jupyter shows them
                assert z.read(f"classic-cnns/notebooks/{nb.name}") == (ROOT / "notebooks" / "en" / nb.name).read_bytes()
    page.close()


def test_solutions_are_hidden_until_clicked_and_terms_link_to_the_glossary(site, server, browser):
    page = browser.new_page()
    page.goto(urljoin(server, "notebooks/02_alexnet.html"), wait_until="networkidle")
    solutions = page.locator(".solution.dropdown")
    assert solutions.count() >= 3
    first = solutions.first
    body = first.locator("section").first
    assert not body.is_visible(), "a solution is shown before it is clicked"
    first.locator(".toggle-button, .admonition-title").first.click()
    body.wait_for(state="visible", timeout=5000)
    terms = page.locator('a[href*="glossary.html#term-"]')
    assert terms.count() >= 3
    target = urljoin(page.url, terms.first.get_attribute("href"))
    page.goto(target, wait_until="networkidle")
    assert page.locator("dl.glossary dt").count() >= 30 and "修正线性单元" in page.content()
    page.close()


def _check_page(browser, server, rel: str, site: Path) -> list[str]:
    problems: list[str] = []
    page = browser.new_page()
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    url = urljoin(server, rel)
    resp = page.goto(url, wait_until="networkidle")
    assert resp is not None and resp.ok, f"{rel}: HTTP {resp and resp.status}"
    # Wait for MathJax to typeset (it is loaded from the site itself).
    page.evaluate("""async () => { if (window.MathJax && MathJax.startup && MathJax.startup.promise)
                                   await MathJax.startup.promise; }""")
    # Images: scroll each into view (some load lazily), then wait for it.
    imgs = page.evaluate("""async () => {
        const out = [];
        for (const img of document.images) {
            img.loading = 'eager'; img.scrollIntoView();
            if (!img.complete) await new Promise(r => { img.onload = img.onerror = r; });
            out.push([img.getAttribute('src'), img.naturalWidth]);
        }
        return out; }""")
    problems += [f"image not loaded: {src}" for src, w in imgs if not w]
    # One search field on screen (pydata-sphinx-theme 0.16+ adds a second, in a header bar).
    searches = page.evaluate("""() => document.querySelector('.bd-sidebar-primary') === null ? 1 :
        [...document.querySelectorAll('.search-button-field')].filter(e => e.offsetParent !== null).length""")
    if searches != 1:
        problems.append(f"{searches} search fields on screen, not one")
    # Math: every math element rendered, and no raw TeX left in the prose: with code, typeset
    # math and scripts removed, no "$", no "\\command" and no "^{" may remain.
    math = page.evaluate("""() => ({
        sources: document.querySelectorAll('.math').length,
        rendered: document.querySelectorAll('mjx-container').length,
        raw: (() => { const b = document.querySelector('main, article, body').cloneNode(true);
                      b.querySelectorAll('pre, code, script, style, .highlight, mjx-container, .math, '
                                         + 'mjx-assistive-mml, .MathJax').forEach(e => e.remove());
                      const t = b.innerText;
                      const hits = [];
                      for (const re of [/\\$/g, /\\\\[A-Za-z]+/g, /\\^\\{/g]) {
                          for (const m of t.matchAll(re)) hits.push(t.slice(Math.max(0, m.index - 30), m.index + 30));
                      }
                      return hits; })()
    })""")
    if math["sources"] and math["rendered"] < math["sources"]:
        problems.append(f"math not rendered: {math['rendered']} of {math['sources']}")
    problems += [f"raw TeX left in the text: ...{d}..." for d in math["raw"]]
    # A cell's printed output is one box: consecutive prints are merged (nb_merge_streams).
    split = page.evaluate("""() => Array.from(document.querySelectorAll('.cell_output'))
        .filter(o => { const kids = Array.from(o.children);
                       return kids.some((k, i) => i > 0 && k.classList.contains('stream')
                                        && kids[i - 1].classList.contains('stream')); }).length""")
    if split:
        problems.append(f"{split} cell output(s) split into consecutive print boxes")
    # Internal links: the target page exists, and so does its #anchor.
    hrefs = page.evaluate("() => Array.from(document.querySelectorAll('a[href]'), a => a.href)")
    for href in set(hrefs):
        if urlparse(href).netloc != urlparse(server).netloc:
            continue
        target, frag = urldefrag(href)
        path = site / urlparse(target).path.lstrip("/")
        if path.is_dir():
            path = path / "index.html"
        if not path.is_file():
            problems.append(f"broken link: {href}")
        elif frag and path.suffix == ".html" and not re.search(   # a.href quotes a non-ASCII #符号
                rf'id="{re.escape(unquote(frag))}"', path.read_text(errors="replace")):
            problems.append(f"missing anchor: {href}")
    if rel.startswith("notebooks/01_"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / (Path(rel).stem + ".png")), full_page=True)
    page.close()
    return problems


def test_every_page_in_chromium(site, server, browser):
    report = {}
    for rel in pages(site):
        problems = _check_page(browser, server, rel, site)
        if problems:
            report[rel] = problems
    assert not report, "\n".join(f"{p}:\n  " + "\n  ".join(v) for p, v in report.items())
    shot = next(SHOTS.glob("*.png"))
    assert shot.stat().st_size > 10_000  # a real rendering, kept for a person to look at


def test_math_renders_offline(site, server, browser):
    """The LeNet chapter's output-size formula is typeset by the local MathJax."""
    page = browser.new_page()
    external = []
    page.on("request", lambda r: external.append(r.url) if "127.0.0.1" not in r.url else None)
    page.goto(urljoin(server, "notebooks/01_lenet.html"), wait_until="networkidle")
    page.evaluate("async () => { await MathJax.startup.promise; }")
    assert page.locator("mjx-container").count() >= 3
    assert page.evaluate("() => typeof MathJax.version") == "string"
    page.close()
    assert not external, f"the page asked the network for: {external}"
