"""Write the planning rates a speed run measured into the chapters' recipes.

``benchmarks/speed.py`` measures, for each chapter's main recipe at its own ``cpu`` batch, the
images per second ``train_ch5`` trains and tests at (``real_run`` in its report). The plan
line a chapter prints before training is its images over those rates, so it describes the
machine the rates came from: run this right after ``speed.py`` on the machine that will
execute the chapters, then execute them (``make rerun-book`` does the three steps).

In each chapter, the line that carries a recipe's measured rates ends with the comment
``# benchmarks/speed.py, <date>``, in the ``#@save`` cell that defines the recipe (or the
recipe it is derived from, as LeNet's are from ``LENET_SIGMOID``). That line's
``cpu_img_per_s`` and ``cpu_test_img_per_s`` and its date are rewritten; nothing else is.

    python benchmarks/apply_rates.py                   # the newest report in benchmarks/results/speed/
    python benchmarks/apply_rates.py path/to/report.json
    python -m d2lutils.codegen                          # then d2lutils/models.py follows the chapters
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEED = ROOT / "benchmarks" / "results" / "speed"
_MARK = re.compile(r"#\s*benchmarks/speed\.py,\s*\d{4}-\d{2}-\d{2}\s*$")
_DEFINES = r"""(?:d2l\.Recipe\(\s*|\.but\(\s*name=)["']{name}["']"""


def measured(report: dict) -> dict[str, tuple[float, float]]:
    """Recipe name -> (train, test) images per second at the recipe's own batch."""
    out = {}
    for c in report["cells"]:
        if c.get("recipe_batch") and not c.get("variant"):
            out[c["recipe"]] = (c["real_run"]["cpu_img_per_s"], c["real_run"]["cpu_test_img_per_s"])
    return out


def number(v: float) -> str:
    """Three significant figures, written as the chapters write numbers (``10_000``, ``133``, ``22.2``)."""
    v = float(f"{v:.3g}")
    return f"{round(v):_}" if v >= 100 else f"{v:g}"


def _rates_line(src: str, name: str, where: str) -> int:
    """Index of the line in ``src`` (a cell defining ``name``, directly or by its base recipe)
    that carries the measured rates."""
    lines = src.split("\n")
    marked = [i for i, l in enumerate(lines) if _MARK.search(l)]
    if len(marked) != 1:
        raise SystemExit(f"{where}: the cell defining {name!r} has {len(marked)} lines ending in "
                         "'# benchmarks/speed.py, <date>'; it needs exactly one, with its rates")
    return marked[0]


def apply(report: dict, notebooks: Path = ROOT / "notebooks") -> dict[str, str]:
    """Rewrite the rates of every recipe the report measured; recipe -> the new line."""
    date, rates, done = report["date"][:10], measured(report), {}
    for nb_path in sorted(notebooks.glob("*.ipynb")):
        nb, changed = json.loads(nb_path.read_text()), False
        for k, cell in enumerate(nb["cells"]):
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            if cell["cell_type"] != "code" or not src.lstrip().startswith("#@save"):
                continue
            for name, (train, test) in rates.items():
                if name in done or not re.search(_DEFINES.format(name=re.escape(name)), src):
                    continue
                lines = src.split("\n")
                i = _rates_line(src, name, f"{nb_path.name}, cell {k}")
                line = re.sub(r"\bcpu_img_per_s=[\d_.e+]+", f"cpu_img_per_s={number(train)}", lines[i])
                line = re.sub(r"\bcpu_test_img_per_s=[\d_.e+]+", f"cpu_test_img_per_s={number(test)}", line)
                lines[i] = _MARK.sub(f"# benchmarks/speed.py, {date}", line)
                src, done[name], changed = "\n".join(lines), lines[i].strip(), True
            cell["source"] = src.splitlines(keepends=True)
        if changed:
            nb_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    missing = sorted(set(rates) - set(done))
    if missing:
        raise SystemExit(f"no #@save cell defines {missing}: their rates were not written")
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("report", nargs="?", type=Path, help="a speed.py report (default: the newest committed one)")
    args = p.parse_args(argv)
    path = args.report or max(SPEED.glob("*.json"), default=None)
    if path is None or not path.is_file():
        raise SystemExit(f"no speed report at {path or SPEED}: run python benchmarks/speed.py first")
    for name, line in apply(json.loads(path.read_text())).items():
        print(f"{name:12s} {line}")
    print(f"rates from {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}; "
          "now run python -m d2lutils.codegen", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
