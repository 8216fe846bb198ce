"""freeze_gc_at_exit: the collector is frozen once the program ends, and exit still runs
every atexit handler (the ones registered after it, which run before it, too)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROGRAM = """
import atexit, gc, sys
from pathlib import Path
out = Path(sys.argv[1])
# Registered first, so it runs last: it sees what the exit handlers left behind.
atexit.register(lambda: out.write_text(out.read_text() + f"frozen={gc.get_freeze_count()}\\n"))
from driftloop.fast_exit import freeze_gc_at_exit
freeze_gc_at_exit()
freeze_gc_at_exit()  # idempotent: one handler
atexit.register(lambda: out.write_text("later handler ran\\n"))
print(atexit._ncallbacks())
"""


def test_the_collector_is_frozen_at_exit_and_other_handlers_still_run(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(out)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    lines = out.read_text().splitlines()
    assert lines[0] == "later handler ran"
    frozen = int(lines[1].removeprefix("frozen="))
    assert frozen > 1000  # every tracked object of the program was frozen
    assert int(done.stdout) == 3  # the two lambdas and one freeze handler


def test_duckdb_loaded_at_exit_reports_no_leaks() -> None:
    """DuckDB's bindings report objects alive at shutdown as leaks; frozen ones would be."""
    program = (
        "import duckdb\n"
        "from driftloop.fast_exit import freeze_gc_at_exit\n"
        "freeze_gc_at_exit()\n"
        "print(duckdb.connect().execute('select 42').fetchall()[0][0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.stdout.strip() == "42"
    assert "leaked" not in done.stderr, done.stderr
