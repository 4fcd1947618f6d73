"""The glibc malloc settings the benchmark scripts run under (the Makefile sets them too).

glibc hands big freed blocks back to the OS, so each new 25 MB batch page-faults afresh;
these settings keep the memory, which steadies and speeds up memory-bound nets on a CPU.
glibc reads them at start-up, so a script re-executes itself with them.
"""
import os
import sys

MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}


def reexec_with_malloc_env() -> None:
    """Restart this script under :data:`MALLOC_ENV` unless it already runs under it.
    Values the caller set win."""
    if sys.platform == "linux" and any(k not in os.environ for k in MALLOC_ENV):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**MALLOC_ENV, **os.environ})
