"""`python -m benchmarks [--quick] [--only drift,load] [--lanes N] [--out PATH]`: run the
cases, print a table, write the figures as JSON (default `benchmarks/results/latest.json`, or
`quick.json` with --quick, so a quick run never replaces the full figures) and the same table
as Markdown beside it (`latest.md`, `quick.md`).

The full run takes one case at a time, so no case's figures carry another's load. `--quick`
is a smoke run (does every case still work, roughly where do the figures sit?): it takes
two cases at a time (`--lanes 2`), each in a process of its own, longest first. Each case's
sides still alternate, so its ratio holds roughly, but its absolute figures are noisier;
the published figures are the full run's.

Cases are the modules of `benchmarks/cases/`; each exposes `run(quick: bool) -> list[dict]`
with the keys of `benchmarks.ROW_KEYS`. A case that raises is recorded as not met, with
the error in its note, and the others still run. Cases in OPT_IN (the year-long backfills)
run only when named: `python -m benchmarks --only backfill --out PATH`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import RESULTS_DIR, print_rows, row
from benchmarks.lanes import run_in_lanes

CASES_DIR = Path(__file__).resolve().parent / "cases"
# Cheap cases first; the rest in any order after these.
ORDER = ("load", "drift", "scoring", "orchestration", "serving", "loop_latency", "scale")
# Cases that run only when named with --only: each backfill case takes the better part of an
# hour (a year of flights, three times), beyond a full run's budget.
OPT_IN = ("backfill", "celery_backfill", "many_datasets", "history")


def discover() -> list[str]:
    names = [m.name for m in pkgutil.iter_modules([str(CASES_DIR)]) if not m.name.startswith("_")]
    known = [n for n in ORDER if n in names]
    return known + sorted(n for n in names if n not in known)


def run_case(name: str, quick: bool) -> list[dict[str, Any]]:
    started = time.perf_counter()
    try:
        module = importlib.import_module(f"benchmarks.cases.{name}")
        rows = module.run(quick)
    except Exception as error:  # a broken case must not hide the others
        traceback.print_exc()
        rows = [row(case=name, met=False, note=f"error: {type(error).__name__}: {error}")]
    seconds = time.perf_counter() - started
    for item in rows:
        item.setdefault("case_seconds", round(seconds, 1))
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|")


def table(rows: list[dict[str, Any]]) -> str:
    """The results as a Markdown table (also readable as plain text)."""
    head = ["case", "ours", "baseline", "unit", "ratio", "target", "met", "peak MB", "size"]
    keys = ["case", "figure", "baseline", "unit", "ratio", "target", "met", "peak_memory_mb"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for item in rows:
        cells = [_cell(item.get(k)) for k in keys] + [_cell(item.get("size"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    parser.add_argument("--only", default="", help="comma-separated case names")
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    parser.add_argument(
        "--lanes",
        type=int,
        default=None,
        help="cases run side by side, each in its own process (default: 2 with --quick, else 1)",
    )
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = RESULTS_DIR / ("quick.json" if args.quick else "latest.json")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")

    names = discover()
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            parser.error(f"unknown case(s) {unknown}; known: {names}")
        names = [n for n in names if n in wanted]
    else:
        names = [n for n in names if n not in OPT_IN]
    lanes = args.lanes if args.lanes is not None else (2 if args.quick else 1)
    started = time.perf_counter()
    load_before = os.getloadavg()
    results: list[dict[str, Any]] = []
    if lanes > 1 and len(names) > 1:
        with tempfile.TemporaryDirectory(prefix="bench-lanes-") as folder:
            by_case = run_in_lanes(names, args.quick, lanes, Path(folder))
        for name in names:
            results.extend(by_case[name])
    else:
        lanes = 1
        for name in names:
            print(f"== {name} ({'quick' if args.quick else 'full'})", flush=True)
            rows = run_case(name, args.quick)
            results.extend(rows)
            print_rows(rows)
    total = time.perf_counter() - started
    document = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "seconds": round(total, 1),
        "lanes": lanes,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
        },
        "cases": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2, default=str) + "\n")
    markdown = table(results)
    side_by_side = f", {lanes} cases at a time (figures indicative)" if lanes > 1 else ""
    args.out.with_suffix(".md").write_text(
        f"{document['mode']} run of {document['generated_at']}, {total:.0f} s"
        f"{side_by_side}\n\n{markdown}\n"
    )
    print()
    print(markdown)
    print(f"\n{len(results)} result(s) in {total:.0f} s; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
