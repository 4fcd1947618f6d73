"""The Chinese edition (中文版): its catalogues are complete and current with the English
sources, keep the markup of their messages and the glossary's terms, the Chinese notebooks are
what ``book/_ext/zh_notebooks.py`` makes of them, and the Chinese site, opened page by page in
headless Chromium, has Chinese in every prose paragraph, typeset math, Chinese captions, and
language links that lead to the same page in the other edition and back.

A changed English paragraph fails ``test_catalogues_are_current``: run ``make po``, translate
the new (or fuzzy) messages, then ``make zh-notebooks``."""

from __future__ import annotations

import functools
import http.server
import json
import re
import subprocess
import sys
import threading
import zipfile
from collections import Counter
from pathlib import Path
from urllib.parse import urljoin, urlparse

import polib
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import i18n           # noqa: E402  (book/_ext: the build's own scripts)
import plain_notebooks   # noqa: E402
import zh_notebooks   # noqa: E402

SITE = ROOT / "_build" / "html"
ZH = SITE / "zh"
CATALOGUES = sorted(i18n.CATALOGUES.rglob("*.po"))
CJK = re.compile(r"[\u3400-\u9fff]")


def page_of(po: Path) -> str:
    return po.relative_to(i18n.CATALOGUES).with_suffix("").as_posix()


def entries(po: Path):
    return [e for e in polib.pofile(str(po)) if e.msgid]


# ---------------------------------------------------------------- catalogues

@pytest.mark.parametrize("po", CATALOGUES, ids=page_of)
def test_catalogue_has_no_empty_fuzzy_or_obsolete_entry(po):
    cat = polib.pofile(str(po))
    empty = [e.msgid[:70] for e in cat if e.msgid and not e.obsolete and not e.msgstr.strip()]
    fuzzy = [e.msgid[:70] for e in cat if e.msgid and "fuzzy" in e.flags]
    obsolete = [e.msgid[:70] for e in cat.obsolete_entries()]
    assert not empty, f"{len(empty)} untranslated, e.g. {empty[:3]}"
    assert not fuzzy, f"{len(fuzzy)} fuzzy (check the translation, then remove the flag), e.g. {fuzzy[:3]}"
    assert not obsolete, f"{len(obsolete)} obsolete: run `make po` (it drops them), e.g. {obsolete[:3]}"


@pytest.fixture(scope="module")
def fresh_pot(tmp_path_factory) -> Path:
    """The .pot files of the sources as they are now (a gettext build, about half a minute)."""
    return i18n.build_pot(tmp_path_factory.mktemp("gettext") / "pot")


@pytest.mark.slow
def test_catalogues_are_current(fresh_pot):
    pots = i18n.pot_files(fresh_pot)
    assert set(pots) == {page_of(p) for p in CATALOGUES}, "pages and catalogues differ: run `make po`"
    stale = {}
    for page, pot in pots.items():
        want = {e.msgid for e in entries(pot)}
        have = {e.msgid for e in entries(i18n.CATALOGUES / f"{page}.po") if not e.obsolete}
        if want != have:
            stale[page] = (sorted(want - have)[:3], sorted(have - want)[:3])
    assert not stale, ("the catalogues are not those of the English sources; run `make po`, translate, then "
                       "`make zh-notebooks`:\n" + "\n".join(f"{p}: new {n}, gone {g}" for p, (n, g) in stale.items()))


_ROLE = re.compile(r"\{([\w:-]+)\}`([^`]*)`|(?<![\w`]):([\w:+-]+):`([^`]*)`")


def _roles(text: str) -> Counter:
    """The roles of a message, by name and target: ``{term}`pooling``` and
    ``{term}`池化 <pooling>``` are the same reference; reST roles (docstrings) count as MyST's."""
    out = Counter()
    for m in _ROLE.finditer(text):
        name, content = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        target = re.search(r"<([^<>]+)>\s*$", content)
        out[(name, (target.group(1) if target else content).lstrip("~").strip())] += 1
    return out


def _markup(text: str) -> dict:
    without_roles = _ROLE.sub("", text)
    return {"roles": _roles(text), "$": text.count("$"), "`": without_roles.count("`"),
            "links": sorted(re.findall(r"\]\(([^)\s]+)\)|href=\"([^\"]+)\"", text))}


@pytest.mark.parametrize("po", CATALOGUES, ids=page_of)
def test_translations_keep_the_markup(po):
    """Roles (and their targets), math and code spans, and link targets, as in the English."""
    bad = []
    for e in entries(po):
        if e.msgstr and e.msgstr != e.msgid:
            a, b = _markup(e.msgid), _markup(e.msgstr)
            diff = [k for k in a if a[k] != b[k]]
            if diff:
                bad.append(f"{diff}: {e.msgid[:60]!r} -> {e.msgstr[:60]!r}")
    assert not bad, f"{len(bad)} translation(s) changed the markup:\n" + "\n".join(bad[:10])


# ---------------------------------------------------------------- terms

GLOSSARY = ROOT / "book" / "glossary.md"
V2_VARIANTS = ("汇聚", "暂退法", "批量规范化", "数据增广")
# Other meanings of a term's English word, where its Chinese form would be wrong (the term
# table's note says so): a GPU's kernels, an interpolation's kernel.
OTHER_SENSES = {"kernel": re.compile(r"(deterministic|bilinear|GPU's) kernels?|kernels? launch|builds its kernels", re.I),
                # torch.profiler's profile (性能剖析), not the book's full/cpu/quick settings
                "profile": re.compile(r"\*\*the profile\*\* \(|what the profile says", re.I)}


def term_table() -> list[tuple[str, str, str]]:
    """(English, Chinese, note) rows of the glossary's term table."""
    text = GLOSSARY.read_text()
    block = text[text.index(":name: term-table"):]
    rows = [[c.strip() for c in l.strip().strip("|").split("|")] for l in block.splitlines()
            if l.startswith("|") and not set(l) <= set("|- ")]
    assert rows[0] == ["English", "中文", "note"], rows[0]
    return [tuple(r) for r in rows[1:]]


def terms_file() -> list[tuple[str, str]]:
    out = []
    for line in (ROOT / "locale" / "TERMS.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            en, zh = re.split(r"\s{2,}", line.strip())[:2]
            out.append((en, zh))
    return out


def _visible(text: str) -> str:
    """A message's prose: no code, math, URLs or code references; a role's text is kept."""
    text = re.sub(r"https?://\S+", "", text)
    text = re.sub(r"\{(term|doc|ref|numref)\}`([^`<]*?)\s*(<[^`]*>)?`", r"\2", text)
    text = re.sub(r"\{[\w:-]+\}`[^`]*`|(?<![\w`]):[\w:+-]+:`[^`]*`", "", text)
    text = re.sub(r"``.*?``|`[^`]*`", "", text)
    return re.sub(r"\$\$.*?\$\$|\$[^$]*\$", "", text, flags=re.S)


def _pattern(english: str) -> re.Pattern:
    p = re.escape(english).replace(r"\ ", r"[\s-]+").replace("isation", "i[sz]ation").replace("optimizer", "optimi[sz]er")
    return re.compile(rf"(?<![\w.-]){p}(?:s|es)?(?![\w-])", re.I)


def test_term_table_is_the_translators_term_list():
    assert [(en, zh) for en, zh, _ in term_table()] == terms_file(), \
        "the glossary's term table and locale/TERMS.txt differ"
    for en, zh, note in term_table():
        for v in V2_VARIANTS:
            assert v not in zh, (en, zh)


def test_glossary_entries_give_the_tables_chinese_first():
    text = GLOSSARY.read_text()
    entries_ = dict(re.findall(r"^(\S[^\n]*)\n  ([^\n]*)", text[text.index("```{glossary}"):], re.M))
    wrong = [(en, entries_[en][:30], zh) for en, zh, _ in term_table()
             if en in entries_ and not entries_[en].startswith(zh)]
    assert not wrong, f"glossary entries that do not start with the table's Chinese form: {wrong}"


def test_every_translation_uses_the_tables_terms():
    """Wherever a message uses an English term, its translation has the term's Chinese form."""
    table = [(en, zh, _pattern(en)) for en, zh, _ in term_table() if en != zh]
    bad = []
    for po in CATALOGUES:
        for e in entries(po):
            if not e.msgstr or e.msgstr == e.msgid:   # a name or a term kept as it is
                continue
            text = _visible(e.msgid)
            for en, zh, pat in table:
                if en in OTHER_SENSES:
                    text_ = OTHER_SENSES[en].sub("", text)
                else:
                    text_ = text
                if pat.search(text_) and zh not in e.msgstr:
                    bad.append(f"{page_of(po)}: {en!r} -> {zh!r} missing in {e.msgstr[:70]!r}")
    assert not bad, f"{len(bad)} translation(s) do not use the glossary's term:\n" + "\n".join(bad[:15])


def test_no_translation_uses_d2l_zh_2s_variants():
    """汇聚, 暂退法, 批量规范化, 数据增广 appear only where the English notes them (the glossary)."""
    bad = [f"{page_of(po)}: {v} in {e.msgstr[:70]!r}" for po in CATALOGUES for e in entries(po)
           for v in V2_VARIANTS if v in e.msgstr and v not in e.msgid]
    assert not bad, "\n".join(bad)


# ---------------------------------------------------------------- notebooks

def test_chinese_notebooks_are_generated_from_the_catalogues():
    made, errors = zh_notebooks.generate()
    assert not errors, "\n".join(errors)
    committed = sorted(zh_notebooks.OUT.glob("*.ipynb"))
    assert committed == sorted(made), "notebooks/zh/ lacks a chapter or has one too many"
    stale = [p.name for p, text in made.items() if p.read_text() != text]
    assert not stale, f"{stale} are out of date: run `make zh-notebooks` (python book/_ext/zh_notebooks.py)"


@pytest.mark.parametrize("nb", zh_notebooks.chapters(), ids=lambda p: p.stem)
def test_chinese_notebook_is_the_chapter_with_chinese_text(nb):
    en, zh = json.loads(nb.read_text()), json.loads((zh_notebooks.OUT / nb.name).read_text())
    assert len(en["cells"]) == len(zh["cells"])
    for a, b in zip(en["cells"], zh["cells"]):
        assert (a["cell_type"], a.get("id")) == (b["cell_type"], b.get("id"))
        if a["cell_type"] == "code":   # the glue records only the book's build reads are left out
            assert b == plain_notebooks.plain_notebook({"cells": [json.loads(json.dumps(a))]}, name=nb.name)["cells"][0], \
                "code cells, with their outputs, are the English notebook's"
        elif "".join(a["source"]).strip() and not re.fullmatch(r"[\s`{}\w:-]*", "".join(a["source"])):
            assert CJK.search("".join(b["source"])), "".join(b["source"])[:80]
    first = "".join(zh["cells"][0]["source"])
    assert f"blob/main/notebooks/zh/{nb.name}" in first, "its Colab and Kaggle links open the Chinese notebook"


def test_a_paragraph_without_translation_is_an_error(tmp_path):
    md = zh_notebooks._parser()
    cell = "## Title\n\n* first item,\n  on two lines\n\nA paragraph."
    catalogue = {"Title": ("标题", False), "first item, on two lines": ("第一项", False)}
    with pytest.raises(zh_notebooks.TranslationError, match="no message"):
        zh_notebooks.translate_cell(md, cell, catalogue, "test")
    catalogue["A paragraph."] = ("一段。", True)
    with pytest.raises(zh_notebooks.TranslationError, match="fuzzy"):
        zh_notebooks.translate_cell(md, cell, catalogue, "test")
    catalogue["A paragraph."] = ("一段。", False)
    assert zh_notebooks.translate_cell(md, cell, catalogue, "test") == "## 标题\n\n* 第一项\n\n一段。"


# ---------------------------------------------------------------- the Chinese site

def site_pages(site: Path) -> list[str]:
    """An edition's pages (the English site's, not the Chinese one inside it), without the
    root's index.html, a bare redirect to the landing page."""
    skip = {"_static", "_sources", "_images", "downloads"}
    rels = [p.relative_to(site) for p in site.rglob("*.html")]
    return sorted(r.as_posix() for r in rels if not skip & set(r.parts) and r.as_posix() != "index.html"
                  and not (site == SITE and r.parts[0] == "zh"))


@pytest.fixture(scope="module")
def zh_site() -> Path:
    if not (SITE / "index.html").exists():   # `make test` builds both first; build here if run alone
        subprocess.run([sys.executable, "-m", "jupyter_book", "build", str(ROOT), "-W", "-n", "--keep-going"],
                       check=True, cwd=ROOT)
    if not (ZH / "index.html").exists():
        i18n.build()
    return ZH


@pytest.fixture(scope="module")
def server(zh_site):
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_both_editions_have_the_same_pages(zh_site):
    en, zh = site_pages(SITE), site_pages(zh_site)
    assert en and en == zh


def _edition_link(html: str) -> str:
    m = re.search(r'<a href="([^"]+)" class="btn btn-sm edition-link"', html)
    return m.group(1) if m else ""


@pytest.mark.slow
@pytest.mark.parametrize("edition", ["en", "zh"])
def test_every_page_links_to_the_same_page_in_the_other_edition(zh_site, edition):
    site, other = (SITE, ZH) if edition == "en" else (ZH, SITE)
    missing, wrong = [], []
    for rel in site_pages(site):
        href = _edition_link((site / rel).read_text())
        if not href:
            missing.append(rel)
        elif (site / rel).parent.joinpath(href).resolve() != (other / rel).resolve() or href.startswith(("/", "http")):
            wrong.append((rel, href))
    assert not missing, f"pages without the language link: {missing}"
    assert not wrong, f"language links that are not the same page, relative: {wrong}"


@pytest.mark.slow
def test_chinese_chapters_launch_the_chinese_notebooks(zh_site):
    for nb in zh_notebooks.chapters():
        html = (zh_site / "notebooks" / f"{nb.stem}.html").read_text()
        launch = re.findall(r'href="(https://[^"]*(?:colab|kaggle|mybinder)[^"]*)"', html)
        assert len(launch) >= 4, launch   # the three buttons and the chapter's own links
        assert all(f"notebooks/zh/{nb.name}" in url for url in launch), launch
        assert (ROOT / "notebooks" / "zh" / nb.name).is_file()
        assert (zh_site / "_sources" / "notebooks" / nb.name).read_text() == (ROOT / "notebooks" / "zh" / nb.name).read_text()


@pytest.mark.slow
def test_chinese_pdf_and_zip(zh_site):
    intro = (zh_site / "book" / "intro.html").read_text()
    for name in ("classic-cnns.pdf", "classic-cnns-notebooks.zip"):
        assert f'href="../downloads/{name}"' in intro, f"the Chinese landing page does not link its {name}"
    pdf = (zh_site / "downloads" / "classic-cnns.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page") >= 30
    assert b"WenQuanYi" in pdf, "the Chinese PDF has no Chinese font (fonts-wqy-microhei)"
    z = zipfile.ZipFile(zh_site / "downloads" / "classic-cnns-notebooks.zip")
    for nb in zh_notebooks.chapters():
        assert z.read(f"classic-cnns/notebooks/{nb.name}") == (ROOT / "notebooks" / "zh" / nb.name).read_bytes()


# Prose: the innermost text blocks of the article, the lab's panels included. Not prose: code,
# math, outputs (the English notebooks' own), data marked notranslate (the runs' tables), the
# bibliography's entries and the citations (papers' and people's names), the glossary's terms and the term table's English
# column (English by design: they are the {term} targets), the indices. English prose is a text
# with no Chinese character and at least two lower-case English words (a name is capitalised; a
# word with a digit, bf16, is a name too).
_PROSE_JS = r"""() => {
  const skip = 'pre, code, kbd, script, style, .highlight, mjx-container, .math, .MathJax, .cell_output, '
             + '.output, .notranslate, .citation, dl.glossary > dt, #term-table td:first-child, '
             + '.genindextable, .modindextable, #search-results, .headerlink, .sig';
  const root = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const out = [];
  const blocks = 'p, li, dt, dd, td, th, h1, h2, h3, h4, h5, h6, caption, figcaption, summary, '
               + '.lab-panel div, .lab-panel label, .lab-panel button';
  for (const el of root.querySelectorAll(blocks)) {
    if (el.closest(skip)) continue;
    const c = el.cloneNode(true);
    c.querySelectorAll(skip + ', p, ul, ol, dl, table, div, li, a[href*="bibliography.html#"]').forEach(e => e.remove());
    const t = c.textContent.replace(/\s+/g, ' ').replace(/\bet al\./g, '').trim();   // "Lin et al.": names
    if (/[\u3400-\u9fff]/.test(t)) continue;
    if ((t.match(/(^|[^A-Za-z0-9_])[a-z]{2,}(?=$|[^A-Za-z0-9_])/g) || []).length >= 2) out.push(t.slice(0, 100));
  }
  const captions = [...root.querySelectorAll('.caption-number')].map(e => e.textContent.trim())
                   .filter(t => !/^(图|表|代码|练习|解答|第)/.test(t));
  // the site's own words around the article: the table of contents' parts, the search field
  const nav = [...document.querySelectorAll('.bd-sidebar-primary .caption-text')].map(e => e.textContent.trim());
  const search = document.querySelector('input[name="q"]');
  nav.push(search ? search.getAttribute('placeholder') || '' : '');
  return {english: out, captions, nav: nav.filter(t => t && !/[\u3400-\u9fff]/.test(t))};
}"""


@pytest.mark.slow
@pytest.mark.browser
def test_every_chinese_page_in_chromium(zh_site, server, browser):
    """Each page as test_site checks the English ones (console errors, images, math typeset and
    no raw TeX, internal links), and with Chinese in every prose paragraph and caption."""
    from test_site import _check_page

    report = {}
    for rel in site_pages(zh_site):
        problems = _check_page(browser, server, f"zh/{rel}", SITE)
        page = browser.new_page()
        page.goto(urljoin(server, f"zh/{rel}"), wait_until="load")
        if rel == "book/lab.html":   # the lab writes its panels once its nets have run
            page.wait_for_selector("#lab-predict[data-first-prediction-ms]", timeout=30_000)
        found = page.evaluate(_PROSE_JS)
        page.close()
        problems += [f"no Chinese: {t!r}" for t in found["english"]]
        problems += [f"caption not in Chinese: {t!r}" for t in found["captions"]]
        problems += [f"the site's own text not in Chinese: {t!r}" for t in found["nav"]]
        if problems:
            report[rel] = problems
    assert not report, "\n".join(f"zh/{p}:\n  " + "\n  ".join(v) for p, v in report.items())


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("rel", ["book/intro.html", "notebooks/03_zfnet.html", "book/api.html"])
def test_language_link_leads_there_and_back(zh_site, server, browser, rel):
    page = browser.new_page()
    page.goto(urljoin(server, rel), wait_until="load")
    assert page.get_attribute("html", "lang") == "en"
    page.click("a.edition-link")
    page.wait_for_load_state("load")
    assert urlparse(page.url).path == f"/zh/{rel}"
    assert page.get_attribute("html", "lang") == "zh-CN"
    assert CJK.search(page.inner_text("article"))
    page.evaluate("async () => { if (window.MathJax && MathJax.startup) await MathJax.startup.promise; }")
    math = page.evaluate("() => [document.querySelectorAll('.math').length, document.querySelectorAll('mjx-container').length]")
    assert math[1] >= math[0], f"math not typeset on zh/{rel}: {math}"
    page.click("a.edition-link")
    page.wait_for_load_state("load")
    assert urlparse(page.url).path == f"/{rel}"
    page.close()
