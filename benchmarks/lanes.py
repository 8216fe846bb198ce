"""Run benchmark cases side by side: each case in a process of its own, `lanes` at a time.

Used by `--quick`, a smoke run: a case's two sides still alternate inside its own process,
so its ratio roughly holds, but whatever runs in the other lane adds to its absolute
figures. The cases start longest first (LONGEST_FIRST, from measured quick runs), which
keeps the lanes about equally long.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from benchmarks import PROJECT_ROOT, child_env, print_rows, row

# Cases by their seconds in a two-lane quick run, longest first (loop_latency ~58, serving
# ~30, scale ~29, orchestration ~28, scoring ~25, drift ~20, load ~9): taken in this order
# the two lanes end within a few seconds of each other. Unknown cases go last.
LONGEST_FIRST = ("loop_latency", "serving", "scale", "orchestration", "scoring", "drift", "load")


@dataclass
class CaseProcess:
    name: str
    process: subprocess.Popen
    out: Path
    log: IO[str]
    started: float


def schedule(names: list[str]) -> list[str]:
    """`names` in the order the lanes take them: longest first."""
    known = [n for n in LONGEST_FIRST if n in names]
    return known + [n for n in names if n not in known]


def _start(name: str, quick: bool, folder: Path) -> CaseProcess:
    out = folder / f"{name}.json"
    command = [sys.executable, "-m", "benchmarks", "--only", name, "--lanes", "1"]
    command += ["--out", str(out)] + (["--quick"] if quick else [])
    log = (folder / f"{name}.log").open("w+")
    # child_env: the same bytecode cache and path as every benchmark child.
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=child_env(), stdout=log, stderr=subprocess.STDOUT
    )
    return CaseProcess(name, process, out, log, time.perf_counter())


def _collect(case: CaseProcess) -> list[dict[str, Any]]:
    """The rows a finished case process wrote, or one error row with its output's tail."""
    seconds = round(time.perf_counter() - case.started, 1)
    case.log.seek(0)
    output = case.log.read()
    case.log.close()
    if case.process.returncode == 0 and case.out.exists():
        return json.loads(case.out.read_text())["cases"]
    tail = output[-2000:].strip()
    note = f"error: the case's process exited with {case.process.returncode}: {tail}"
    return [row(case=case.name, met=False, note=note, case_seconds=seconds)]


def run_in_lanes(
    names: list[str], quick: bool, lanes: int, folder: Path
) -> dict[str, list[dict[str, Any]]]:
    """Run each case as `python -m benchmarks --only <case>`, `lanes` at a time; the rows of
    each case by name. Progress is printed as cases start and end."""
    waiting = schedule(names)
    running: list[CaseProcess] = []
    rows: dict[str, list[dict[str, Any]]] = {}
    while waiting or running:
        while waiting and len(running) < lanes:
            name = waiting.pop(0)
            print(f"== {name} started ({'quick' if quick else 'full'}, lane run)", flush=True)
            running.append(_start(name, quick, folder))
        for case in [c for c in running if c.process.poll() is not None]:
            running.remove(case)
            rows[case.name] = _collect(case)
            print_rows(rows[case.name])
        time.sleep(0.1)
    return rows
