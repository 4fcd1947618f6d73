"""The built site in a real browser: Debian's Chromium, driven by Playwright,
against the site served on 127.0.0.1. Every page must load without console
errors, show every image, render its math, and link only to pages and anchors
that exist. One chapter page is saved as a screenshot for a person to look at."""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

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


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: `sudo apt-get install chromium` (.ci/run does this)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM,
            headless=True, viewport={"width": 1280, "height": 900},
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield ctx
        ctx.close()


def pages(site: Path) -> list[str]:
    skip = {"_static", "_sources", "_images", "screenshots"}
    return sorted(str(p.relative_to(site)) for p in site.rglob("*.html")
                  if not skip & set(p.relative_to(site).parts))


def test_site_has_every_chapter_and_page(site):
    got = set(pages(site))
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        assert f"notebooks/{nb.stem}.html" in got
    for page in ("book/intro.html", "book/setup.html", "book/api.html", "book/bibliography.html"):
        assert page in got


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
    # Math: every math element rendered, and no raw TeX delimiters in the prose.
    math = page.evaluate("""() => ({
        sources: document.querySelectorAll('.math').length,
        rendered: document.querySelectorAll('mjx-container').length,
        raw: (() => { const b = document.querySelector('main, article, body').cloneNode(true);
                      b.querySelectorAll('pre, code, script, style, .highlight').forEach(e => e.remove());
                      const t = b.innerText; return ['\\\\(', '\\\\[', '$$'].filter(d => t.includes(d)); })()
    })""")
    if math["sources"] and math["rendered"] < math["sources"]:
        problems.append(f"math not rendered: {math['rendered']} of {math['sources']}")
    problems += [f"raw TeX delimiter left in the text: {d}" for d in math["raw"]]
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
        elif frag and path.suffix == ".html" and not re.search(
                rf'id="{re.escape(frag)}"', path.read_text(errors="replace")):
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
