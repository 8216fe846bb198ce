"""Let a process that loaded the heavy stack exit without the interpreter's final collections.

When CPython shuts down it clears every module and runs full garbage collections over what
is left. With dagster, MLflow, pandas and LightGBM loaded that is about 400,000 tracked
objects, and measured here it takes 1.4-1.8 s of CPU after the last line of the program has
run: in every `dagster` CLI command, every run worker the daemon starts and every backtest
or status command. Freezing the collector at exit moves those objects out of its reach, so
shutdown takes about 0.1 s. Nothing is skipped that a program relies on: atexit handlers
(MLflow's and Dagster's flushes, temporary-directory cleanup) still run, objects are still
released by reference counting, and the operating system reclaims the rest of the memory.
"""

from __future__ import annotations

import atexit
import gc

_installed = False


def freeze_gc_at_exit() -> None:
    """Register (once per process) an atexit handler that freezes the garbage collector."""
    global _installed
    if not _installed:
        atexit.register(gc.freeze)
        _installed = True
