"""prefer_jemalloc: Arrow allocates with jemalloc unless the user chose another pool."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROGRAM = (
    "from driftloop.arrow_memory import prefer_jemalloc\n"
    "prefer_jemalloc()\n"
    "import pyarrow as pa\n"
    "print(pa.default_memory_pool().backend_name)\n"
)


def backend(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    return done.stdout.strip()


def test_jemalloc_unless_the_user_chose() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    assert backend(env) == "jemalloc"
    assert backend({**env, "ARROW_DEFAULT_MEMORY_POOL": "system"}) == "system"
