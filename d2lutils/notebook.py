"""Helpers for the chapters' own text: numbers measured in a run, quoted in the prose.

:func:`glue` stores a value in the cell's output the way ``myst_nb.glue`` does, so
the book's Markdown can quote it with ``{glue:text}`name```: the sentence "the run
below took 14.2 min" is then written by the run itself. It does not import
``myst_nb``, so the chapters run in Colab and Kaggle unchanged (outside Jupyter it
does nothing).
"""

from __future__ import annotations

from typing import Any

__all__ = ["glue", "callout", "report_peak_memory", "timed"]

_PREFIX = "application/papermill.record/"   # what myst-nb reads (and does not show)


def glue(name: str, value: Any) -> None:
    """Store ``value`` under ``name`` for ``{glue:text}`name``` in the chapter's Markdown."""
    try:
        from IPython import get_ipython
        from IPython.core.formatters import format_display_data
        from IPython.display import display
    except ImportError:
        return
    if get_ipython() is None:
        return
    bundle, metadata = format_display_data(value)
    metadata["scrapbook"] = {"name": name, "mime_prefix": _PREFIX}
    display({_PREFIX + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)


def callout(text: str, kind: str = "note") -> None:
    """Show ``text`` as a Markdown admonition (printed as plain text outside Jupyter)."""
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        print(text)
        return
    display(Markdown(f":::{{{kind}}}\n{text}\n:::"))


class timed:
    """``with d2l.timed("name"):`` glues the block's wall time as ``name`` (e.g. "2.4 min on
    cpu (2 threads)"), for the chapter's "how long this takes" notes."""

    def __init__(self, name: str, device: Any = None):
        self.name, self.device = name, device

    def __enter__(self) -> "timed":
        import time

        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        import time

        from .devices import device_name, try_gpu

        secs = time.perf_counter() - self.t0
        took = f"{secs / 60:.1f} min" if secs >= 90 else f"{secs:.0f} s"
        glue(self.name, f"{took} on {device_name(self.device if self.device is not None else try_gpu())}")


def report_peak_memory(name: str = "peak_memory") -> float | None:
    """Print (and glue as ``name``) the peak memory of this process so far, in GB."""
    from .profile import peak_memory_gb

    peak = peak_memory_gb()
    if peak is None:
        print("peak memory: not reported on this OS")
        return None
    print(f"peak memory of this notebook's process: {peak:.2f} GB (Colab's CPU runtime has about 12 GB)")
    glue(name, f"{peak:.1f} GB")
    return peak
