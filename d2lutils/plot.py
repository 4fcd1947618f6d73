"""Plots: learning curves (static and live) and how activation shapes change."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .errors import ArgumentError
from .history import History

if TYPE_CHECKING:  # summary imports this module (LayerTable.plot), so only for type hints
    from .summary import LayerTable

__all__ = ["plot_history", "plot_shapes", "set_epoch_ticks", "LiveCurves"]


_SERIES = (("epoch", ("train_loss", "train_acc", "test_acc")),
           ("step_epoch", ("step_loss", "step_acc")), ("probe_epoch", ("probe_acc",)))
_HISTORY_HELP = ("a d2lutils History, the dict that json.load returns for a notebooks/runs/*.json "
                 "file, or a dict of label -> one of those")


def _as_history(h, label: str) -> "History":
    """One run as a History (a JSON dict is converted), or an ArgumentError naming it."""
    where = f"history[{label!r}]" if label else "history"
    if isinstance(h, Mapping):
        h = History.from_dict(dict(h))
    if not isinstance(h, History):
        raise ArgumentError(f"{where} must be {_HISTORY_HELP}; got {type(h).__name__}")
    for x_name, y_names in _SERIES:
        x = getattr(h, x_name)
        for y_name in y_names:
            y = getattr(h, y_name)
            if not isinstance(x, (list, tuple)) or not isinstance(y, (list, tuple)) or len(x) != len(y):
                n = len(x) if isinstance(x, (list, tuple)) else type(x).__name__
                m = len(y) if isinstance(y, (list, tuple)) else type(y).__name__
                raise ArgumentError(f"{where}: {y_name} must be a list with one value per entry of "
                                    f"{x_name}; got {m} value(s) for {n}")
    return h


def _is_one_run(h: Mapping) -> bool:
    """A History's own dict (it has an ``epoch`` list), as opposed to label -> run."""
    return "epoch" in h and isinstance(h["epoch"], (list, tuple))


def _histories(h) -> dict[str, "History"]:
    if isinstance(h, Mapping) and not _is_one_run(h):
        if not h:
            raise ArgumentError(f"history must be {_HISTORY_HELP}; got an empty dict")
        return {str(k): _as_history(v, str(k)) for k, v in h.items()}
    return {"": _as_history(h, "")}


def set_epoch_ticks(ax, epochs, fractional: bool = False) -> None:
    """Label the x axis of ``ax`` with whole epochs.

    Up to 12 epochs get one tick each; matplotlib alone would label a 1-epoch run
    0.96 ... 1.04. With ``fractional`` (curves drawn inside epochs) the axis starts at
    0, and a one- or two-epoch run also gets quarter-epoch ticks. Longer runs get
    integer ticks only.
    """
    epochs = sorted(set(epochs))
    if fractional and epochs:
        last = max(1, int(-(-max(epochs) // 1)))
        step = 0.25 if last <= 2 else 1
        ticks = [k * step for k in range(int(last / step) + 1)] if last <= 12 else None
        if ticks is not None:
            ax.set_xticks(ticks)
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlim(0, last + 0.02 * last)
    elif 0 < len(epochs) <= 12:
        ax.set_xticks(epochs)
        ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)
    else:
        ax.xaxis.get_major_locator().set_params(integer=True)


def plot_history(history: "History | Mapping[str, History]", axes=None, title: str | None = None):
    """Loss (left) and train/test accuracy (right) against epochs.

    Pass one :class:`~d2lutils.history.History` (or the dict ``json.load`` returns for a
    ``notebooks/runs/*.json`` file), or ``{"label": history, ...}`` to compare runs on
    the same axes. Where the history has points inside epochs
    (``step_*`` and ``probe_*``), the curves are drawn against fractional epochs, as
    d2l's ``Animator`` does; the whole test set's accuracy at the end of each epoch
    is marked with a square. Returns the two axes.

    Raises:
        ArgumentError: ``history`` is none of these (``None``, say), or a run's series
            have different lengths; the message names the run and the series.
    """
    import matplotlib.pyplot as plt

    runs = _histories(history)   # checked before a figure is made
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    else:
        fig = axes[0].figure
    ax_loss, ax_acc = axes
    fractional = any(h.step_epoch for h in runs.values())
    probe_n = sorted({h.probe_n for h in runs.values() if h.probe_acc and h.probe_n})
    for i, (label, h) in enumerate(runs.items()):
        color = f"C{i}"
        tag = f"{label}: " if label else ""
        if h.step_epoch:
            ax_loss.plot(h.step_epoch, h.step_loss, "-", color=color, label=f"{tag}train loss")
            ax_acc.plot(h.step_epoch, h.step_acc, "--", color=color, alpha=0.8, label=f"{tag}train acc")
            pts = sorted([*zip(h.probe_epoch, h.probe_acc), *zip(h.epoch, h.test_acc)])
            if pts:
                ax_acc.plot([p[0] for p in pts], [p[1] for p in pts], ".-", color=color, lw=1.5,
                            label=f"{tag}test acc")
            ax_acc.plot(h.epoch, h.test_acc, "s", color=color, ms=6)
        else:
            ax_loss.plot(h.epoch, h.train_loss, "o-", color=color, label=f"{tag}train loss")
            ax_acc.plot(h.epoch, h.train_acc, "o--", color=color, label=f"{tag}train acc")
            ax_acc.plot(h.epoch, h.test_acc, "s-", color=color, label=f"{tag}test acc")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="training loss")
    acc_title = "accuracy"
    if fractional and probe_n:
        acc_title += f" (test: {probe_n[0]:,}-image subset inside epochs, \u25a0 whole test set)"
    ax_acc.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1))
    ax_acc.set_title(acc_title, fontsize=9 if fractional and probe_n else None)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        set_epoch_ticks(ax, [e for h in runs.values() for e in (h.step_epoch or h.epoch)],
                        fractional=fractional)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return axes


def plot_shapes(table: "LayerTable", axes=None, title: str | None = None):
    """Plot each layer's output size: height = width (top) and channels (bottom).

    A 1-D output (after flattening) counts as ``features`` channels of 1 x 1.
    Both axes are logarithmic (base 2), so halving the size is one step down.
    Returns the two axes.

    Raises:
        ArgumentError: ``table`` is not what :func:`~d2lutils.summary.layer_table` returns.
    """
    import matplotlib.pyplot as plt

    if type(table).__name__ != "LayerTable" or not hasattr(table, "rows"):   # (summary imports plot)
        raise ArgumentError(f"table must be a LayerTable, as d2l.layer_table(net, input_shape) returns; "
                            f"got {type(table).__name__}")
    labels = ["input"] + [f"{r.name} {r.type}" for r in table.rows]
    shapes = [table.input_shape] + [r.output_shape for r in table.rows]
    chans = [s[0] if s else 1 for s in shapes]
    side = [s[-1] if len(s) >= 3 else 1 for s in shapes]
    if axes is None:
        width = min(max(6.0, 0.28 * len(labels) + 2), 14)
        _, axes = plt.subplots(2, 1, figsize=(width, 5.2), sharex=True)
    x = range(len(labels))
    for ax, values, color, ylabel in [(axes[0], side, "C0", "height = width (px)"),
                                      (axes[1], chans, "C3", "channels / features")]:
        ax.bar(x, values, color=color, width=0.7)
        ax.set_yscale("log", base=2)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_xticks(list(x), labels, rotation=90, fontsize=7 if len(labels) > 30 else 8)
    axes[1].set_xlabel("output of layer")
    axes[0].set_title(title or "activation shape through the net")
    axes[0].figure.tight_layout()
    return axes


class LiveCurves:
    """Redraw the learning curves in place in a notebook after every epoch."""

    def __init__(self, transient: bool = False):
        self._fig = None
        self._handle = None
        self._transient = transient

    def update(self, history: "History") -> None:
        import matplotlib.pyplot as plt
        from IPython.display import display

        if self._fig is None:
            self._fig, self._axes = plt.subplots(1, 2, figsize=(9, 3.4))
        for ax in self._axes:
            ax.clear()
        plot_history(history, axes=self._axes)
        if self._handle is None:
            self._handle = display(self._fig, display_id=True)
        else:
            self._handle.update(self._fig)

    def close(self) -> None:
        """Keep the last drawing as the cell's output, without a second copy; a transient
        one is removed, since the page draws the finished run itself."""
        if self._fig is not None:
            import matplotlib.pyplot as plt

            plt.close(self._fig)
            if self._transient and self._handle is not None:
                self._handle.update({"text/plain": ""}, raw=True)
