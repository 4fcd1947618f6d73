"""The book's two editions, English (``_build/html``) and Chinese (``_build/html/zh``, built by
``book/_ext/i18n.py`` with ``language: zh_CN``), for the site's Sphinx extension.

* A language link in the header of every page, to the same page in the other edition, and a
  ``<link rel="alternate" hreflang>`` for it. Both are relative (``zh/notebooks/01_lenet.html``
  from the English root, ``../notebooks/01_lenet.html`` from the Chinese one), so they work on
  GitHub Pages under any sub-path, from ``make serve`` and from the file system.
* The launch buttons (Colab, Binder, Kaggle) and the chapters' own "Open in Colab/Kaggle"
  links open the edition's plain-Markdown copy of the notebook: ``notebooks/en/<chapter>.ipynb``
  (``book/_ext/plain_notebooks.py``) or the Chinese ``notebooks/zh/<chapter>.ipynb``
  (``book/_ext/zh_notebooks.py``). In the Chinese edition ``<html lang>`` is ``zh-CN``.
* The cells of a ``{table}`` directive (the glossary's term table) are translatable, as the
  cells of a plain Markdown table are.
* Four fixes to Sphinx's i18n for this book, in the Chinese edition only. The table of
  contents' captions are translated (``TocCaptions``: sphinx-external-toc inserts them after
  Sphinx has translated the page), and so are the chapters' numbered titles
  (``NumberedTitles``: "1. ..." would be parsed as a list). A translated message is parsed with the page's parser, MyST
  on every page here, but the API page's messages are docstrings, reST: ``DocstringLocale``
  parses their translations as reST (else ``:func:`x``` would not link). And a translated
  paragraph is parsed as a document of its own, which has no notebook, so ``{glue:text}`key```
  could not find the chapter's value: there it becomes a reference to the page's own glue data
  (``page.ipynb::key``), which myst-nb resolves when it writes the page. The search field's
  placeholder, which Jupyter Book sets in English, is Chinese too.
* ``label()`` and ``translated()``: the Chinese of the few strings the book's directives write
  themselves (table headings), and of a page's message from its catalogue (chapter titles).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms import SphinxTransform

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
ZH = "zh"   # the Chinese edition's folder in the English site

# The directives' own strings (the page text comes from the catalogues).
_LABELS_ZH = {
    "chapter": "章节", "run": "运行", "device": "设备", "profile": "运行配置", "train images": "训练图像数",
    "epochs": "迭代周期", "minutes": "分钟", "test acc": "测试准确率", "test images": "测试图像数",
    "execution (min)": "执行时间（分钟）", "peak memory (GB)": "峰值内存（GB）",
    "No stored training runs yet.": "还没有保存的训练运行。",
}


def is_zh(config) -> bool:
    return (config.language or "").startswith("zh")


def label(env, text: str) -> str:
    """A directive's own string in the edition's language."""
    return _LABELS_ZH.get(text, text) if is_zh(env.config) else text


@functools.lru_cache(maxsize=None)
def _catalogue(path: Path, mtime: float) -> dict[str, str]:
    import polib

    return {e.msgid: e.msgstr for e in polib.pofile(str(path))
            if e.msgstr and not e.obsolete and "fuzzy" not in e.flags}


def translated(env, docname: str, msgid: str) -> str:
    """``msgid`` as the Chinese edition shows it on page ``docname`` (its catalogue's
    translation); the text itself in the English edition or where it is not translated."""
    if not is_zh(env.config):
        return msgid
    for folder in env.config.locale_dirs:
        path = Path(env.srcdir) / folder / env.config.language / "LC_MESSAGES" / f"{docname}.po"
        if path.is_file():
            env.note_dependency(str(path))
            return _catalogue(path, path.stat().st_mtime).get(msgid, msgid)
    return msgid


def _config_inited(app: Sphinx, config) -> None:
    config.templates_path.append(str(TEMPLATES))
    config.html_static_path.append(str(STATIC))
    config.html_theme_options.setdefault("article_header_end", ["edition-link.html", "article-header-buttons.html"])


def _edition_link(app: Sphinx, pagename, templatename, context, doctree) -> None:
    if app.builder.name not in ("html", "dirhtml"):
        return   # one page for the whole book (the PDF): no other edition to link
    up = "../" * pagename.count("/")
    suffix = "/" if app.builder.name == "dirhtml" else app.builder.out_suffix
    target = "" if pagename == "index" and suffix == "/" else pagename + suffix
    if is_zh(app.config):
        link = {"href": f"{up}../{target}", "hreflang": "en", "text": "English",
                "title": "English edition: this page in English"}
        context["language"] = app.config.language.replace("_", "-")   # a BCP 47 tag: zh-CN
    else:
        link = {"href": f"{up}{ZH}/{target}", "hreflang": "zh-CN", "text": "中文",
                "title": "中文版：本页的中文版"}
    context["edition_link"] = link
    context["metatags"] = context.get("metatags", "") + (
        f'\n<link rel="alternate" hreflang="{link["hreflang"]}" href="{link["href"]}">')


def _launch_folder(config) -> str:
    """Where this edition's launch links point: the plain-Markdown copies of the chapters,
    ``notebooks/en/`` (``plain_notebooks.py``) or ``notebooks/zh/`` (``zh_notebooks.py``)."""
    return ZH if is_zh(config) else "en"


def _edition_notebook(url: str, pagename: str, folder: str) -> str:
    return url.replace(f"{pagename}.ipynb", f"{Path(pagename).parent.as_posix()}/{folder}/{Path(pagename).name}.ipynb")


def _launch_buttons(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """Before the Kaggle button is derived from the Colab one (classic_cnns_ext)."""
    if not pagename.startswith("notebooks/"):
        return
    for group in context.get("header_buttons", []):
        if group.get("label") == "launch-buttons":
            for button in group["buttons"]:
                if "url" in button:
                    button["url"] = _edition_notebook(button["url"], pagename, _launch_folder(app.config))


_CHAPTER_LINK = re.compile(r"(/blob/[^/\s]+/)notebooks/(?=[\w.-]+\.ipynb$)")


def _chapter_links(app: Sphinx, doctree, docname) -> None:
    """The chapters' "Open in Colab/Kaggle" links (written to the MyST source, and kept by the
    translated paragraphs) open this edition's plain copy of the notebook."""
    repo = (app.config.html_theme_options.get("repository_url") or "").rstrip("/")
    if "github.com/" not in repo:
        return
    blob = "/" + repo.split("github.com/", 1)[1] + "/blob/"   # in Colab's URLs and in Kaggle's
    folder = _launch_folder(app.config)
    for ref in doctree.findall(nodes.reference):
        uri = ref.get("refuri", "")
        if blob in uri:
            ref["refuri"] = _CHAPTER_LINK.sub(rf"\1notebooks/{folder}/", uri)


def _page_catalog(transform: SphinxTransform):
    """The translations of the page ``transform`` works on (its gettext domain in the
    configured locale directories), or None when there are none."""
    from os import path

    from sphinx.locale import init as init_locale
    from sphinx.util.i18n import docname_to_domain

    config = transform.config
    catalog, found = init_locale([path.join(transform.env.srcdir, d) for d in config.locale_dirs],
                                 config.language, docname_to_domain(transform.env.docname, config.gettext_compact))
    return catalog if found else None


class DocstringLocale(SphinxTransform):
    """Translate the messages that come from docstrings (reST) with the reST parser, before
    Sphinx's own Locale transform (priority 20), which parses every translation of a page with
    the page's parser (MyST); the nodes done here are marked so that Locale leaves them."""

    default_priority = 19

    def apply(self, **kwargs) -> None:
        from sphinx.transforms.i18n import _NodeUpdater, parse_noqa, publish_msgstr
        from sphinx.util.nodes import extract_messages

        if not is_zh(self.config):
            return
        todo = [(n, m) for n, m in extract_messages(self.document)
                if ":docstring of " in (n.source or "") and isinstance(n, (nodes.paragraph, nodes.inline))]
        catalog = _page_catalog(self) if todo else None
        if catalog is None:
            return
        for node, msg in todo:
            msgstr, noqa = parse_noqa(catalog.gettext(msg))
            if not msgstr.strip() or msgstr == msg:
                continue
            if msgstr.strip().endswith("::"):   # as Locale does: a paragraph that introduces a literal block
                msgstr += "\n\n   dummy literal"
            patch = publish_msgstr(self.app, msgstr, f"{node.source}.rst", node.line, self.config,
                                   self.document.settings)
            if not isinstance(patch, nodes.paragraph):
                continue   # not one paragraph: left to Locale
            # what Locale does with a translated paragraph, with the same checks and warnings
            updater = _NodeUpdater(node, patch, self.document, noqa)
            updater.update_autofootnote_references()
            updater.update_refnamed_references()
            updater.update_refnamed_footnote_references()
            updater.update_citation_references()
            updater.update_pending_xrefs()
            updater.update_leaves()
            node["translatable"] = False   # done: Locale skips it
            node["translated"] = True


class TableCellSources(SphinxTransform):
    """The cells of a ``{table}`` directive's table (MyST parses its content without source
    positions) get the table's source, so that their text is translatable like any table's:
    Sphinx's i18n skips a text without a source as built-in."""

    default_priority = 15   # before gettext's extraction and the Locale transform (20)

    def apply(self, **kwargs) -> None:
        for table in self.document.findall(nodes.table):
            if not table.source or not isinstance(table.next_node(), nodes.title):
                continue   # no caption: not a {table} (the runs' and costs' tables are data)
            for node in table.findall(nodes.TextElement):
                if node.source is None and not isinstance(node, nodes.title):
                    node.source, node.line = table.source, table.line


class TocCaptions(SphinxTransform):
    """The table of contents' part captions (``_toc.yml``) in the Chinese edition: sphinx-external-toc
    inserts its toctrees (priority 100) after Sphinx's Locale transform (20), so they would stay
    English; their captions and titles are messages of the root page's catalogue (gettext reads
    the finished page), translated here the way Locale translates a toctree."""

    default_priority = 101

    def apply(self, **kwargs) -> None:
        from sphinx import addnodes

        toctrees = list(self.document.findall(addnodes.toctree))
        catalog = _page_catalog(self) if is_zh(self.config) and toctrees else None
        if catalog is None:
            return
        for toctree in toctrees:
            for msg in toctree.extract_original_messages():
                msgstr = catalog.gettext(msg)
                if msgstr.strip() and msgstr != msg:
                    toctree.apply_translated_message(msg, msgstr)


class NumberedTitles(SphinxTransform):
    """A translated title that starts with its number ("1. LeNet：..."): Locale parses it as a
    heading (the title text, underlined), which starts with "1. " and so is a list item, not a
    title, and Locale leaves the English. Here the number's dot is escaped and the title's text
    replaced by the translation's."""

    default_priority = 21   # right after Locale (20)

    def apply(self, **kwargs) -> None:
        from os import path

        from sphinx.locale import init as init_locale
        from sphinx.transforms.i18n import _NodeUpdater, publish_msgstr
        from sphinx.util.i18n import docname_to_domain
        from sphinx.util.nodes import extract_messages

        if not is_zh(self.config):
            return
        todo = [(n, m) for n, m in extract_messages(self.document)
                if isinstance(n, nodes.title) and not n.get("translated") and re.match(r"\d+[.)]\s", m)]
        if not todo:
            return
        catalog, found = init_locale([path.join(self.env.srcdir, d) for d in self.config.locale_dirs],
                                     self.config.language, docname_to_domain(self.env.docname,
                                                                            self.config.gettext_compact))
        for node, msg in todo if found else []:
            msgstr = catalog.gettext(msg)
            if not msgstr.strip() or msgstr == msg:
                continue
            patch = publish_msgstr(self.app, re.sub(r"^(\d+)([.)])", r"\1\\\2", msgstr), self.document["source"],
                                   node.line, self.config, self.document.settings)
            if isinstance(patch, nodes.paragraph):
                updater = _NodeUpdater(node, patch, self.document, False)
                updater.update_pending_xrefs()
                updater.update_leaves()
                node["translated"] = True


def _glue_from_own_page() -> None:
    """In a translated paragraph, ``{glue:text}`key``` reads the page's own glue data."""
    from myst_nb.ext.glue import roles

    for cls in (roles.PasteRoleAny, roles.PasteTextRole, roles.PasteMarkdownRole):
        if getattr(cls.run, "_own_page", False):
            continue
        original = cls.run

        def run(self, _original=original):
            env = getattr(self.document.settings, "env", None)
            if "nb_renderer" not in self.document and env is not None and "::" not in self.text:
                # glue:text reads "path::key:format" (split at the last colon): keep a format
                fmt = ":s" if isinstance(self, roles.PasteTextRole) and ":" not in self.text else ""
                self.text = f"/{env.doc2path(env.docname, False)}::{self.text}{fmt}"
            return _original(self)

        run._own_page = True
        cls.run = run


def _zh_fixes(app: Sphinx, config) -> None:
    if is_zh(config):
        _glue_from_own_page()
        # Jupyter Book sets the search field's placeholder itself, in English; the themes'
        # catalogues translate the rest of their words
        config.html_theme_options["search_bar_text"] = "搜索本书……"


def setup(app: Sphinx):
    app.connect("config-inited", _config_inited)
    app.add_css_file("editions.css")
    app.connect("config-inited", _zh_fixes)
    app.add_transform(DocstringLocale)
    app.add_transform(TableCellSources)
    app.add_transform(TocCaptions)
    app.add_transform(NumberedTitles)
    app.connect("html-page-context", _edition_link)
    app.connect("html-page-context", _launch_buttons, priority=502)
    app.connect("doctree-resolved", _chapter_links)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
