"""driftloop.gc_settings: what is frozen stays out of later collections, the collector is
frozen once the program ends, and exit still runs every atexit handler (the ones registered
after it, which run before it, too) and lets DuckDB's bindings report no leaks."""

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
from driftloop.gc_settings import freeze_gc_at_exit
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
        "from driftloop.gc_settings import freeze_gc_at_exit\n"
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


def _run(program: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )


def test_objects_alive_when_frozen_are_left_out_and_later_ones_are_collected() -> None:
    program = (
        "import gc\n"
        "from driftloop.gc_settings import freeze_loaded_objects\n"
        "loaded = [[] for _ in range(5000)]\n"
        "freeze_loaded_objects()\n"
        "young = {id(x) for x in gc.get_objects()}\n"
        "later = []\n"
        "later.append(later)  # a cycle only the collector can free\n"
        "del later\n"
        "print(gc.get_freeze_count(), any(id(x) in young for x in loaded), gc.collect())\n"
    )
    frozen, loaded_is_tracked, collected = _run(program).stdout.split()
    assert int(frozen) >= 5000
    assert loaded_is_tracked == "False"  # the collector no longer walks them
    assert int(collected) >= 1  # what came after is collected as before


def test_duckdb_frozen_with_the_loaded_objects_still_reports_no_leaks() -> None:
    program = (
        "import duckdb\n"
        "from driftloop.gc_settings import freeze_gc_at_exit, freeze_loaded_objects\n"
        "freeze_gc_at_exit()\n"
        "freeze_loaded_objects()  # DuckDB's module objects are among the frozen\n"
        "print(duckdb.connect().execute('select 42').fetchall()[0][0])\n"
    )
    done = _run(program)
    assert done.stdout.strip() == "42"
    assert "leaked" not in done.stderr, done.stderr


def test_the_code_location_freezes_what_it_imported_and_exits_quietly() -> None:
    program = (
        "import gc\n"
        "import pipelines.definitions as location\n"
        "assert location.defs.resolve_asset_graph().get_all_asset_keys()\n"
        "print(gc.get_freeze_count())\n"
    )
    done = _run(program)
    assert int(done.stdout) > 50_000  # dagster and the location's modules
    assert "leaked" not in done.stderr, done.stderr
