"""Garbage-collector settings for the processes that load the code location.

Two costs come from the number of objects a process holds. With dagster, MLflow, pandas and
LightGBM loaded that is about 400,000 tracked objects, and every full collection walks all
of them.

- During a run. The retrain path through the CLI (benchmarks/cases/orchestration.py) made
  9 full collections costing 1.8 s, against 0.8 s for the same work without Dagster: what
  Dagster and the code location import are walked again at every collection, and they live
  as long as the process. `freeze_loaded_objects`, called once the code location's modules
  are imported, moves them out of the collector's reach (`gc.freeze`): the same run's full
  collections then cost 1.0-1.1 s. Objects made later are collected as before.
- At exit. CPython clears every module and runs full collections over what is left: 1.4-1.8
  s of CPU after the program's last line, in every `dagster` CLI command, every run worker
  and every backtest or status command. `freeze_gc_at_exit` freezes the collector at exit
  instead. Nothing a program relies on is skipped: atexit handlers (MLflow's and Dagster's
  flushes, temporary-directory cleanup) still run, objects are still released by reference
  counting, and the operating system reclaims the rest of the memory.

One exception: DuckDB's bindings (nanobind) print a "leaked instances" report at shutdown
for each of their objects still alive, and frozen objects stay alive. When DuckDB was
loaded, its modules are dropped and one collection frees their objects first (about 0.25 s
when the code location's objects are frozen already; 0.4 s otherwise), and shutdown says
nothing.
"""

from __future__ import annotations

import atexit
import gc
import sys

_installed = False
# Whether DuckDB's objects went into the frozen generation with the code location's.
_duckdb_frozen = False


def _is_duckdb(module: str) -> bool:
    return module in ("duckdb", "_duckdb") or module.startswith(("duckdb.", "_duckdb."))


def _duckdb_loaded() -> bool:
    return any(_is_duckdb(name) for name in sys.modules)


def freeze_loaded_objects() -> None:
    """Exempt every object alive now from later collections (call once imports are done)."""
    global _duckdb_frozen
    _duckdb_frozen = _duckdb_frozen or _duckdb_loaded()
    gc.freeze()


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
        if _duckdb_frozen:
            gc.unfreeze()  # DuckDB's objects are among the frozen: collect them too
        gc.collect()
    gc.freeze()


def freeze_gc_at_exit() -> None:
    """Register (once per process) an atexit handler that freezes the garbage collector."""
    global _installed
    if not _installed:
        atexit.register(_freeze)
        _installed = True
