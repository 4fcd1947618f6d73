"""The Chinese notebooks, ``notebooks/zh/*.ipynb``, for Colab and Kaggle: each chapter with its
Markdown cells translated from its catalogue (``locale/zh_CN/LC_MESSAGES/notebooks/<chapter>.po``)
and everything else, code and stored outputs included, the English notebook's own.

    python book/_ext/zh_notebooks.py            # write notebooks/zh/
    python book/_ext/zh_notebooks.py --check    # exit 1 if a committed one differs (tests/test_zh.py)

A catalogue holds one message per paragraph, heading, list item, table cell, admonition title
and display formula, while a Markdown cell holds several. Each cell is split into those units
by the same parser the book's build uses (MyST's markdown-it, with the extensions of
``_config.yml``), so a unit's text is exactly its message, the one Sphinx extracted; the unit's
lines in the cell are replaced by the translation, keeping list markers, indentation and
directive fences. A unit whose message is missing from the catalogue, untranslated or fuzzy
is an error, as is a directive this script does not know: the English is never kept silently.
A translation identical to its message (a formula, a name) leaves the source as it is.

Then the Markdown is made plain CommonMark by ``plain_notebooks.py``, as for the English
copies in ``notebooks/en/``: Colab and Kaggle show MyST's roles and fences as typed. The
chapter's own Colab and Kaggle links open the Chinese notebook, and relative links become
links to the files on GitHub.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plain_notebooks import PlainError, cli, plain_notebook  # noqa: E402  (a sibling script)

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
OUT = NOTEBOOKS / "zh"
CATALOGUES = ROOT / "locale" / "zh_CN" / "LC_MESSAGES" / "notebooks"

# Directives whose content is MyST (their paragraphs are messages); the admonition's argument
# is its title, a message too. Options-only directives have no text.
PARSED = {"admonition", "note", "tip", "hint", "important", "warning", "caution", "attention",
          "danger", "error", "seealso", "exercise", "solution", "topic", "sidebar", "dropdown"}
TITLED = {"admonition", "exercise", "topic", "sidebar", "dropdown"}   # {solution}'s argument is a label
NO_TEXT = {"solution-start", "solution-end"}
_BLOCK_PREFIX = re.compile(r"[ \t>*+\-#0-9.)]*")


class TranslationError(Exception):
    pass


@dataclass
class Unit:
    """One message of a cell: its source text, the cell lines it is on and how it sits there."""
    text: str          # as in the cell, without list markers and indentation
    line: int          # first line, 0-based, in the cell
    end: int           # one past its last line
    kind: str          # "block" (paragraph, heading), "cell" (table cell), "title", "math"
    keep_last: bool = False   # a setext heading's underline

    @property
    def msgid(self) -> str:
        """The message Sphinx extracts (sphinx.util.nodes.extract_messages): a formula's source
        as it is, any other text on one line."""
        return self.text if self.kind == "math" else self.text.replace("\n", " ").strip()


def _parser():
    import yaml
    from markdown_it.renderer import RendererHTML
    from myst_parser.config.main import MdParserConfig
    from myst_parser.parsers.mdit import create_md_parser

    exts = yaml.safe_load((ROOT / "_config.yml").read_text()).get("parse", {}).get("myst_enable_extensions", [])
    return create_md_parser(MdParserConfig(enable_extensions=set(exts)), RendererHTML)


def _directive(info: str) -> tuple[str, str] | None:
    m = re.match(r"\{([\w:-]+)\}\s*(.*)$", info.strip())
    return (m.group(1), m.group(2).strip()) if m else None


def _split_options(body: str) -> tuple[int, str]:
    """A directive's body without its options (``:key: value`` lines or a ``---`` block):
    the number of option lines and the text that is parsed."""
    lines = body.split("\n")
    n = 0
    if lines and lines[0].strip() == "---":
        n = next(i for i in range(1, len(lines)) if lines[i].strip() == "---") + 1
    else:
        while n < len(lines) and re.match(r"\s*:[\w-]+:", lines[n]):
            n += 1
    return n, "\n".join(lines[n:])


def units(md, text: str, offset: int = 0) -> list[Unit]:
    """The messages of one Markdown text, in order."""
    out: list[Unit] = []
    tokens = md.parse(text)
    row_line = None
    for i, tok in enumerate(tokens):
        if tok.type == "tr_open":
            row_line = tok.map[0] + offset
        elif tok.type in ("heading_open", "paragraph_open"):
            inline = tokens[i + 1]
            a, b = tok.map
            out.append(Unit(inline.content, a + offset, b + offset, "block",
                            keep_last=tok.type == "heading_open" and tok.markup in ("=", "-")))
        elif tok.type in ("th_open", "td_open"):
            inline = tokens[i + 1]
            if inline.content:
                out.append(Unit(inline.content, row_line, row_line + 1, "cell"))
        elif tok.type in ("math_block", "math_block_label", "amsmath"):
            a, b = tok.map
            out.append(Unit(tok.content, a + offset, b + offset, "math"))
        elif tok.type in ("fence", "colon_fence"):
            d = _directive(tok.info)
            if d is None:
                continue   # code: never translated
            name, arg = d
            a, b = tok.map
            if name in NO_TEXT:
                continue
            if name not in PARSED:
                raise TranslationError(f"line {a + offset + 1}: directive {{{name}}} is not known to "
                                       "book/_ext/zh_notebooks.py: add it to PARSED or NO_TEXT")
            if arg and name in TITLED:
                out.append(Unit(arg, a + offset, a + offset + 1, "title"))
            n, body = _split_options(tok.content)
            out += units(md, body, offset + a + 1 + n)
        elif tok.type in ("dl_open", "footnote_reference_open", "footnote_block_open"):
            raise TranslationError(f"line {tok.map[0] + offset + 1 if tok.map else '?'}: {tok.type} in a "
                                   "notebook is not handled by book/_ext/zh_notebooks.py")
    return out


def load_catalogue(path: Path) -> dict[str, tuple[str, bool]]:
    """msgid -> (msgstr, fuzzy), as Sphinx would read it."""
    import polib

    if not path.is_file():
        raise TranslationError(f"{path.relative_to(ROOT)} is missing")
    return {e.msgid: (e.msgstr, "fuzzy" in e.flags) for e in polib.pofile(str(path)) if not e.obsolete}


def _translation(unit: Unit, catalogue: dict, where: str) -> str | None:
    if unit.msgid not in catalogue:
        raise TranslationError(f"{where}: no message for {unit.msgid[:70]!r}: regenerate the catalogues "
                               "(python book/_ext/i18n.py update) and translate it")
    msgstr, fuzzy = catalogue[unit.msgid]
    if not msgstr.strip():
        raise TranslationError(f"{where}: {unit.msgid[:70]!r} is not translated")
    if fuzzy:
        raise TranslationError(f"{where}: the translation of {unit.msgid[:70]!r} is fuzzy: check it and "
                               "remove the flag")
    return None if msgstr == unit.msgid else msgstr


def translate_cell(md, text: str, catalogue: dict, where: str) -> str:
    lines = text.split("\n")
    todo = []
    for u in units(md, text):
        if not u.msgid:
            continue
        msgstr = _translation(u, catalogue, f"{where}, line {u.line + 1}")
        if msgstr is not None:
            todo.append((u, msgstr))
    # bottom-up, and right to left within a line, so that earlier positions stay valid
    cells: dict[int, list] = {}
    for u, msgstr in todo:
        if u.kind == "cell":
            cells.setdefault(u.line, []).append((u, msgstr))
    for line, row in cells.items():
        lines[line] = _replace_row(lines[line], row, where)
    for u, msgstr in sorted((t for t in todo if t[0].kind != "cell"), key=lambda t: -t[0].line):
        if u.kind == "title":
            head = lines[u.line]
            pos = head.rfind(u.text)
            if pos < 0:
                raise TranslationError(f"{where}, line {u.line + 1}: cannot find the title {u.text!r}")
            lines[u.line] = head[:pos] + msgstr + head[pos + len(u.text):]
        elif u.kind == "math":
            lines[u.line:u.end] = _replace_math(lines[u.line:u.end], u.text, msgstr, where)
        else:
            lines[u.line:u.end] = _replace_block(lines[u.line:u.end], u, msgstr, where)
    return "\n".join(lines)


def _replace_row(line: str, row: list, where: str) -> str:
    out, pos = [], 0
    for u, msgstr in row:   # in the order of the row
        at = line.find(u.text, pos)
        if at < 0:
            raise TranslationError(f"{where}: cannot find the table cell {u.text!r}")
        if re.search(r"(?<!\\)\|", msgstr):
            raise TranslationError(f"{where}: the translation of the table cell {u.text!r} has an unescaped |")
        out += [line[pos:at], msgstr]
        pos = at + len(u.text)
    return "".join(out) + line[pos:]


def _replace_block(old: list[str], u: Unit, msgstr: str, where: str) -> list[str]:
    content = u.text.split("\n")
    body = old[:-1] if u.keep_last else old
    if len(body) != len(content):
        raise TranslationError(f"{where}: {u.text[:60]!r} spans {len(body)} lines, its text {len(content)}")
    first = body[0].rstrip()
    at = first.rfind(content[0].rstrip()) if content[0].strip() else len(first)
    prefix = first[:at]
    if at < 0 or not _BLOCK_PREFIX.fullmatch(prefix):
        raise TranslationError(f"{where}: cannot find {content[0][:60]!r} in {first[:60]!r}")
    for src, text in zip(body[1:], content[1:]):
        if not src.rstrip().endswith(text.strip()):
            raise TranslationError(f"{where}: the line {src[:60]!r} is not {text[:60]!r}")
    # a translation on several lines continues at the indentation of the text
    cont = (_BLOCK_PREFIX.match(body[1]).group(0) if len(body) > 1 else
            re.sub(r"[^ \t>]", " ", prefix))
    new = [prefix + l if k == 0 else cont + l for k, l in enumerate(msgstr.split("\n"))]
    return new + (old[-1:] if u.keep_last else [])


def _replace_math(old: list[str], msgid: str, msgstr: str, where: str) -> list[str]:
    text = "\n".join(old)
    at = text.find(msgid)
    if at < 0:
        raise TranslationError(f"{where}: cannot find the formula {msgid[:60]!r}")
    return (text[:at] + msgstr + text[at + len(msgid):]).split("\n")


def _source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _zh_title(url: str, title: str) -> str:
    """A linked page's title in its Chinese catalogue (the English one if it has none)."""
    page = url.split("/blob/", 1)[1].split("/", 1)[1].rsplit(".", 1)[0]   # e.g. book/setup
    po = CATALOGUES.parent / f"{page}.po"
    if not po.is_file():
        return title
    found = load_catalogue(po).get(title)
    return found[0] if found and found[0] and not found[1] else title


def translate_notebook(nb_path: Path, md=None) -> str:
    """The Chinese notebook of ``nb_path``, as the text of its .ipynb file."""
    md = md or _parser()
    nb = json.loads(nb_path.read_text())
    catalogue = load_catalogue(CATALOGUES / f"{nb_path.stem}.po")
    for k, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        where = f"{nb_path.relative_to(ROOT)}, cell {k} ({cell.get('id', '?')})"
        cell["source"] = _lines(translate_cell(md, _source(cell), catalogue, where))
    try:   # then plain Markdown, as Colab and Kaggle show it (the roles and fences were kept)
        nb = plain_notebook(nb, name=nb_path.name, folder=nb_path.parent, launch_to="zh", title_of=_zh_title)
    except PlainError as e:
        raise TranslationError(str(e)) from None
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def chapters() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def generate() -> tuple[dict[Path, str], list[str]]:
    """Every Chinese notebook's text, and the errors of those that could not be made."""
    md, out, errors = _parser(), {}, []
    for nb in chapters():
        try:
            out[OUT / nb.name] = translate_notebook(nb, md)
        except TranslationError as e:
            errors.append(str(e))
    return out, errors


if __name__ == "__main__":
    raise SystemExit(cli(__doc__, generate, OUT, "zh_notebooks.py"))
