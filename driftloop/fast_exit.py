"""Let a process that loaded the heavy stack exit without the interpreter's final collections.

When CPython shuts down it clears every module and runs full garbage collections over what
is left. With dagster, MLflow, pandas and LightGBM loaded that is about 400,000 tracked
objects, and measured here it takes 1.4-1.8 s of CPU after the last line of the program has
run: in every `dagster` CLI command, every run worker the daemon starts and every backtest
or status command. Freezing the collector at exit moves those objects out of its reach, so
shutdown takes about 0.1 s. Nothing is skipped that a program relies on: atexit handlers
(MLflow's and Dagster's flushes, temporary-directory cleanup) still run, objects are still
released by reference counting, and the operating system reclaims the rest of the memory.

One exception: DuckDB's bindings (nanobind) print a "leaked instances" report at shutdown
for each of their objects still alive, and frozen objects stay alive. When DuckDB was
loaded, its modules are dropped and one full collection frees their objects first (about
0.3 s: shutdown then takes about 0.4 s instead of 1.3 s, and says nothing).
"""

from __future__ import annotations

import atexit
import gc
import sys

_installed = False


def _is_duckdb(module: str) -> bool:
    return module in ("duckdb", "_duckdb") or module.startswith(("duckdb.", "_duckdb."))


def _freeze() -> None:
    duckdb = {name: sys.modules.pop(name) for name in list(sys.modules) if _is_duckdb(name)}
    if duckdb:
        # Also the names other modules bound to them (`import duckdb` at a module's top).
        loaded = {id(module) for module in duckdb.values()}
        for module in list(sys.modules.values()):
            names = getattr(module, "__dict__", {})
            for name in [n for n, value in names.items() if id(value) in loaded]:
                del names[name]
        del duckdb
        gc.collect()
    gc.freeze()


def freeze_gc_at_exit() -> None:
    """Register (once per process) an atexit handler that freezes the garbage collector."""
    global _installed
    if not _installed:
        atexit.register(_freeze)
        _installed = True
