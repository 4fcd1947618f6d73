"""The notebooks that Colab, Kaggle and Binder open, ``notebooks/en/*.ipynb`` (and, through
``zh_notebooks.py``, ``notebooks/zh/*.ipynb``): each chapter with its Markdown in plain
CommonMark, since those platforms show MyST's markup as it is typed.

    python book/_ext/plain_notebooks.py            # write notebooks/en/
    python book/_ext/plain_notebooks.py --check    # exit 1 if a committed one differs (tests)

What changes, in Markdown cells only (code and its stored outputs stay the chapter's own,
except the glue records, which only the book's build reads and JupyterLab reports as
outputs it cannot show):

* ``{glue:text}`name``` becomes the value the chapter glued, as the site prints it;
* ``{term}`text <entry>``` becomes ``text``; ``{cite}`key``` becomes "(Author Year)" from
  ``book/references.bib``; ``{doc}`page``` and relative links become links to the file on
  GitHub;
* an admonition becomes a quote headed by its title in bold, an exercise "**Exercise N**"
  (numbered in the chapter), a solution "**Solution to exercise N**";
* the chapter's own Colab and Kaggle links open this copy.

A role or a directive this script does not know, or a glue name the chapter did not glue,
is an error: the markup is never passed through silently.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from functools import lru_cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
OUT = NOTEBOOKS / "en"
GLUE = "application/papermill.record/"
ADMONITIONS = {"admonition", "note", "tip", "hint", "important", "warning", "caution", "seealso"}
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}[ \t]*(?P<arg>.*)$")
_OPTION = re.compile(r"^[ \t]*:(?P<key>[\w-]+):[ \t]*(?P<value>.*)$")
_ROLE = re.compile(r"\{(?P<role>[\w:-]+)\}`(?P<body>[^`]*)`")
_TITLED = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.S)
_RELATIVE = re.compile(r"(\]\()(?!https?:|#|mailto:)([^)\s]+)(\))")
_LAUNCH = re.compile(r"(/blob/[^/\s)]+/)notebooks/(?=[\w.-]+\.ipynb)")


class PlainError(Exception):
    pass


def repo_blob() -> str:
    """``https://github.com/ORG/REPO/blob/BRANCH/`` from ``_config.yml``."""
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    return f"{repo['url'].rstrip('/')}/blob/{repo.get('branch', 'main')}/"


@lru_cache(maxsize=1)
def citations() -> dict[str, str]:
    """Bibliography key -> "Author Year" ("A and B", "A et al." for three or more)."""
    from pybtex.database import parse_file

    out = {}
    for key, entry in parse_file(str(ROOT / "book" / "references.bib")).entries.items():
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        last = [" ".join(p.last_names) for p in people] or [entry.fields.get("title", key)]
        who = last[0] if len(last) == 1 else f"{last[0]} and {last[1]}" if len(last) == 2 else f"{last[0]} et al."
        out[key] = f"{who} {entry.fields.get('year', '')}".strip()
    return out


def glued(nb: dict) -> dict[str, str]:
    """Every value the notebook glued, as text (what ``{glue:text}`` shows on the site)."""
    out = {}
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            name = o.get("metadata", {}).get("scrapbook", {}).get("name")
            value = o.get("data", {}).get(GLUE + "text/plain")
            if name and value is not None:
                out[name] = "".join(value).strip("'\"")
    return out


def _page_url(target: str, folder: Path, blob: str) -> tuple[str, str]:
    """(URL on GitHub, title) of a ``{doc}`` target, relative to ``folder`` or absolute."""
    base = ROOT if target.startswith("/") else folder
    stem = (base / target.lstrip("/")).resolve()
    for suffix in (".md", ".ipynb"):
        path = stem.with_suffix(suffix)
        if path.is_file():
            text = path.read_text()
            if suffix == ".ipynb":
                text = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"] if c["cell_type"] == "markdown")
            title = next((l[2:].strip() for l in text.splitlines() if l.startswith("# ")), path.stem)
            return blob + path.relative_to(ROOT).as_posix(), title
    raise PlainError(f"{{doc}} target {target!r} is not a page (no .md or .ipynb at {stem})")


def _roles(text: str, values: dict[str, str], folder: Path, blob: str, where: str, title_of) -> str:
    def one(m: re.Match) -> str:
        role, body = m["role"], m["body"]
        titled = _TITLED.match(body)
        if role == "glue:text":
            if body not in values:
                raise PlainError(f"{where}: {{glue:text}}`{body}` was not glued by the chapter")
            return values[body]
        if role == "term":
            return titled["text"] if titled else body
        if role == "doc":
            url, title = _page_url(titled["target"] if titled else body, folder, blob)
            return f"[{titled['text'] if titled else title_of(url, title)}]({url})"
        if role in ("cite", "cite:p", "cite:t"):
            keys = [k.strip() for k in body.split(",")]
            missing = [k for k in keys if k not in citations()]
            if missing:
                raise PlainError(f"{where}: {{cite}} keys {missing} are not in book/references.bib")
            return "(" + "; ".join(citations()[k] for k in keys) + ")"
        raise PlainError(f"{where}: the role {{{role}}} has no plain form here")

    return _ROLE.sub(one, text)


def _links(text: str, folder: Path, blob: str) -> str:
    def one(m: re.Match) -> str:
        path, _, anchor = m[2].partition("#")
        full = (folder / path).resolve()
        if not full.is_relative_to(ROOT):
            return m[0]
        return m[1] + blob + full.relative_to(ROOT).as_posix() + (f"#{anchor}" if anchor else "") + m[3]

    return _RELATIVE.sub(one, text)


def _directives(lines: list[str], where: str, labels: dict[str, int], count: list[int]) -> list[str]:
    """Replace each directive fence (and its options) by plain Markdown, outermost first."""
    out, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        indent, fence, name, arg = m["indent"], m["fence"], m["name"], m["arg"].strip()
        j = i + 1
        options = {}
        while j < len(lines) and (o := _OPTION.match(lines[j])):
            options[o["key"]] = o["value"].strip()
            j += 1
        depth, k = 1, j
        while k < len(lines):   # the closing fence: the same characters, the same length
            inner = _FENCE.match(lines[k])
            if inner and inner["fence"] == fence:
                depth += 1
            elif lines[k].strip() == fence:
                depth -= 1
                if depth == 0:
                    break
            k += 1
        if k == len(lines):
            raise PlainError(f"{where}: the {{{name}}} fence opened by {lines[i].strip()!r} is not closed")
        body = _directives(lines[j:k], where, labels, count)
        if name in ADMONITIONS:
            title = arg or name.capitalize()
            quoted = [f"{indent}> **{title}**", f"{indent}>"] + [
                f"{indent}> {l[len(indent):] if l.startswith(indent) else l}".rstrip() for l in body]
            out += quoted
        elif name == "exercise":
            count[0] += 1
            if "label" in options:
                labels[options["label"]] = count[0]
            out += [f"{indent}**Exercise {count[0]}**" + (f": {arg}" if arg else ""), ""] + body
        elif name in ("solution", "solution-start"):
            n = labels.get(arg)
            out += [f"{indent}**Solution to exercise {n}**" if n else f"{indent}**Solution**", ""] + body
        elif name == "solution-end":
            pass
        else:
            raise PlainError(f"{where}: the directive {{{name}}} has no plain form here")
        i = k + 1
    return out


def plain_cell(text: str, values: dict[str, str], *, folder: Path = NOTEBOOKS, where: str = "",
               labels: dict[str, int] | None = None, count: list[int] | None = None,
               title_of=lambda url, title: title) -> str:
    """One Markdown cell in plain CommonMark (``labels`` and ``count`` carry the exercise
    numbers from cell to cell; ``title_of(url, title)`` names a linked page, in translation)."""
    blob = repo_blob()
    labels = {} if labels is None else labels
    count = [0] if count is None else count
    lines = _directives(text.split("\n"), where, labels, count)
    text = "\n".join(l for l in lines if not re.fullmatch(r"\([\w-]+\)=\s*", l))
    return _links(_roles(text, values, folder, blob, where, title_of), folder, blob)


_CJK = "\u3000-\u303f\u4e00-\u9fff\uff00-\uffef"
_CJK_SPACE = re.compile(f"(?<=[{_CJK}]) (?=[{_CJK}])")   # left where a role met Chinese text


def plain_notebook(nb: dict, *, name: str, folder: Path = NOTEBOOKS, launch_to: str = "en",
                   title_of=lambda url, title: title) -> dict:
    """The notebook ``nb`` (a chapter in ``folder``, file ``name``) with plain Markdown, no glue
    records, and its Colab and Kaggle links opening ``notebooks/<launch_to>/``. In Chinese text
    a space between two Chinese characters (where a ``{term}`` stood) is dropped."""
    values, labels, count = glued(nb), {}, [0]
    for k, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "markdown":
            text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            text = plain_cell(text, values, folder=folder, where=f"{name}, cell {k} ({cell.get('id', '?')})",
                              labels=labels, count=count, title_of=title_of)
            text = _CJK_SPACE.sub("", text)
            cell["source"] = _LAUNCH.sub(rf"\1notebooks/{launch_to}/", text).splitlines(keepends=True)
        elif cell["cell_type"] == "code":
            cell["outputs"] = [o for o in cell.get("outputs", [])
                               if not (o.get("data") and all(m.startswith(GLUE) for m in o["data"]))]
    return nb


def generate() -> tuple[dict[Path, str], list[str]]:
    """Every English plain notebook's text, and the errors of those that could not be made."""
    out, errors = {}, []
    for nb_path in sorted(NOTEBOOKS.glob("*.ipynb")):
        try:
            nb = plain_notebook(json.loads(nb_path.read_text()), name=nb_path.name)
        except PlainError as e:
            errors.append(str(e))
            continue
        out[OUT / nb_path.name] = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    return out, errors


def write(made: dict[Path, str], errors: list[str], out: Path, check: bool, regenerate: str) -> int:
    """Write (or, with ``check``, compare) ``made`` into ``out``; shared with zh_notebooks.py."""
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if errors:
        return 1
    stale = sorted(set(out.glob("*.ipynb")) - set(made))
    if check:
        differ = [p for p, text in made.items() if not p.is_file() or p.read_text() != text]
        for p in differ + stale:
            print(f"{p.relative_to(ROOT)} is out of date: run `{regenerate}`", file=sys.stderr)
        return 1 if differ or stale else 0
    out.mkdir(exist_ok=True)
    for p in stale:
        p.unlink()
    for p, text in made.items():
        if not p.is_file() or p.read_text() != text:
            p.write_text(text)
            print(f"wrote {p.relative_to(ROOT)}")
    return 0


def cli(doc: str, generate, out: Path, script: str, argv: list[str] | None = None) -> int:
    """The command line of this script and of zh_notebooks.py: write ``out``, or ``--check`` it."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help=f"compare with {out.relative_to(ROOT)}/ instead of writing it")
    args = ap.parse_args(argv)
    return write(*generate(), out, args.check, f"python book/_ext/{script}")


if __name__ == "__main__":
    raise SystemExit(cli(__doc__, generate, OUT, "plain_notebooks.py"))
