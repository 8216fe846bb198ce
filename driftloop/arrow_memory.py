"""Arrow's allocator in pipeline processes: jemalloc where pyarrow ships it (Linux).

pyarrow's default pool is mimalloc. Scoring a 1M-row partition in a fresh step process
spent 0.5-0.8 s of system time with it (memory handed back to the kernel between batches
and faulted in again) against 0.1 s with jemalloc, and took 1.4-1.6 s instead of 1.0-1.2 s
(benchmarks/cases/scoring.py). Arrow reads the choice once, at its first allocation, from
ARROW_DEFAULT_MEMORY_POOL; a value the user set wins.
"""

from __future__ import annotations

import os
import sys

POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"


def prefer_jemalloc() -> None:
    """Ask for jemalloc unless the user chose a pool; call before anything uses Arrow."""
    if sys.platform.startswith("linux"):
        os.environ.setdefault(POOL_VARIABLE, "jemalloc")
