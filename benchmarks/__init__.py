"""driftloop's benchmark suite: our path beside its baseline, in the same run.

`uv run python -m benchmarks [--quick] [--only drift,load]` runs every case module in
`benchmarks/cases/` (each exposes `run(quick: bool) -> list[dict]`), prints a table and
writes `benchmarks/results/latest.json`.

Each side of a case runs in its own child process (`run_child`), so one side's imports,
caches and memory never leak into the other's figures. Peak memory is the child's own
maximum resident set size as the kernel reports it to `os.wait4` for that very child
(not `RUSAGE_CHILDREN`, which is a maximum over every child ever reaped). Sides that are
repeated alternate (A B A B ...) so a burst of load on this shared 2-core machine hits
both sides alike; the figures are medians.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
RESULT_PREFIX = "BENCHMARK_RESULT "

# The keys every result row carries (the runner fills in what a case leaves out).
ROW_KEYS = (
    "case",
    "figure",
    "unit",
    "baseline",
    "ratio",
    "peak_memory_mb",
    "size",
    "target",
    "met",
    "note",
)


@dataclass
class ChildRun:
    """One finished child process: wall time, peak RSS and what it reported."""

    seconds: float
    peak_memory_mb: float
    returncode: int
    result: dict[str, Any] = field(default_factory=dict)
    log: str = ""


# This machine's environment sets PYTHONDONTWRITEBYTECODE=1 and the virtualenv holds no
# bytecode, so every process would compile dagster, mlflow, pandas... from source, several
# times slower than importing them compiled. Children get a bytecode cache of their own
# (outside the project and the virtualenv), as any normal installation has one.
PYCACHE = Path(tempfile.gettempdir()) / "driftloop-bench-pycache"


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: ours, the project on the path, a bytecode cache, `extra`."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in [str(PROJECT_ROOT), env.get("PYTHONPATH", "")] if p
    )
    env.setdefault("PYTHONWARNINGS", "ignore")
    env.update(extra or {})
    return env


def run_child(
    args: list[str],
    env: dict[str, str] | None = None,
    timeout: float = 3600,
    cwd: Path = PROJECT_ROOT,
) -> ChildRun:
    """Run a command to the end; wall time and the peak RSS of that process.

    The peak is the child's own high-water mark (VmHWM), read from /proc while it runs:
    os.wait4's ru_maxrss starts from the parent's high-water mark, carried across fork and
    exec, so a child of a runner that once held a prepared data set reported the runner's
    peak. (Only the child's last 20 ms can escape the reading; ru_maxrss is the fallback.)
    A child that prints a line `BENCHMARK_RESULT {json}` hands that JSON back (its own
    in-process timings). Output goes to a temporary file, so a chatty child cannot block.
    """
    with tempfile.TemporaryFile(mode="w+") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            args, cwd=cwd, env=env or child_env(), stdout=log, stderr=subprocess.STDOUT
        )
        deadline = started + timeout
        high_water_kb = 0
        while True:
            high_water_kb = max(high_water_kb, high_water_kb_of(process.pid))
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        text = log.read()
    result: dict[str, Any] = {}
    for line in text.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
    # Both in kilobytes on Linux.
    peak_kb = high_water_kb or usage.ru_maxrss
    return ChildRun(seconds, peak_kb / 1024, process.returncode, result, text)


def high_water_kb_of(pid: int | str = "self") -> int:
    """VmHWM (peak RSS of its own address space) of a running process, or of this one, in
    kB; 0 once it is gone or where /proc is absent."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def python_child(
    module: str,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 3600,
    check: bool = True,
) -> ChildRun:
    """`python -m <module> <args>` as a measured child; fails loudly if the child failed
    (unless `check` is false: then the caller reads `returncode`; -9 = killed at timeout)."""
    run = run_child([sys.executable, "-m", module, *args], env=env, timeout=timeout)
    if check and run.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{run.log[-4000:]}")
    return run


def report(result: dict[str, Any]) -> None:
    """Called in a child: hand `result` back to the parent (see run_child)."""
    print(RESULT_PREFIX + json.dumps(result, default=float), flush=True)


def self_peak_mb() -> float:
    """Peak RSS of this process so far, in MB: its own VmHWM (ru_maxrss, the fallback where
    /proc is absent, carries the parent's peak across fork and exec; see run_child)."""
    import resource

    own_kb = high_water_kb_of()
    return (own_kb or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def current_rss_mb() -> float:
    """Resident set size of this process now, in MB (from /proc)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def print_rows(rows: list[dict[str, Any]]) -> None:
    """A case's result rows as progress lines: met or not, its seconds, its note."""
    for item in rows:
        line = f"   {item['case']}: met={item['met']} ({item['case_seconds']} s) {item['note']}"
        print(line, flush=True)


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def pair_ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    """numerator / denominator of each alternating pair, in run order."""
    if len(numerators) != len(denominators):
        raise ValueError(f"{len(numerators)} against {len(denominators)} runs: not pairs")
    return [n / d for n, d in zip(numerators, denominators, strict=True)]


def paired_ratio(numerators: list[float], denominators: list[float]) -> float:
    """Median over alternating pairs of numerator / denominator: each pair ran back to
    back, so a drift of the machine's speed between pairs (on this VM a fifth, over
    minutes) divides out, which the ratio of the two medians does not do."""
    return median(pair_ratios(numerators, denominators))


def row(**values: Any) -> dict[str, Any]:
    """A result row with every key present (None where a case has nothing to say)."""
    out = {key: values.pop(key, None) for key in ROW_KEYS}
    out["met"] = bool(out["met"]) if out["met"] is not None else False
    out.update(values)  # extra detail keys are kept
    return out
